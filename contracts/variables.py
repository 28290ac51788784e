"""Every `MODELYARD_*` environment variable the kit's parts pass to each other, named once.
Plain names only: the model server's image carries this file."""

from __future__ import annotations

# Where local state lives (default: `.modelyard/` of the checkout; see contracts/state.py).
STATE_DIR = "MODELYARD_STATE_DIR"
# Where the environment files are read from (default: `environments/` of the checkout).
ENVIRONMENTS_DIR = "MODELYARD_ENVIRONMENTS_DIR"
# The pipeline run a stage belongs to (Jenkins: BUILD_TAG).
PIPELINE_RUN_ID = "MODELYARD_PIPELINE_RUN_ID"
# Why the pipeline run started: push, nightly, or the drift check that asked for it with its
# report (Jenkins: the REASON parameter); kept on the versions it registers.
PIPELINE_REASON = "MODELYARD_PIPELINE_REASON"
# Set by the training image: the train stage is already inside its container.
TRAINING_CONTAINER = "MODELYARD_TRAINING_CONTAINER"
# Where the train stage inside a Job writes its result (the run and its metrics, JSON): the train
# container's termination message, which the stage that started the Job reads back.
TRAINING_RESULT_FILE = "MODELYARD_TRAINING_RESULT_FILE"
# A training Job of several workers (training.kubernetes.workers; ml/training/distributed.py): how
# many, which Job (its uid), this pod's rank (0 leads), and the ADDRESS:PORT its LightGBM network
# listens on.
TRAINING_WORKERS = "MODELYARD_TRAINING_WORKERS"
TRAINING_JOB = "MODELYARD_TRAINING_JOB"
TRAINING_RANK = "MODELYARD_TRAINING_RANK"
TRAINING_LISTEN = "MODELYARD_TRAINING_LISTEN"
# Who promotes (Jenkins: BUILD_USER_ID; elsewhere the login name).
ACTOR = "MODELYARD_ACTOR"
# The private key file release commits are pushed with over SSH (Jenkins binds the credential
# modelyard-git here in the stages that promote or roll back; pipelines/promotion/release_git.py).
GIT_SSH_KEY = "MODELYARD_GIT_SSH_KEY"
# Crash injection for the promotion's safety tests (pipelines/promotion/faults.py).
FAULT_AT = "MODELYARD_FAULT_AT"
LEASE_SETTLE_SECONDS = "MODELYARD_LEASE_SETTLE_SECONDS"
# The name of `modelyard demo --cluster`'s platform stack (default `demo`): its Docker objects are
# modelyard-<name>-*, so a test's demo never meets a user's.
DEMO_STACK = "MODELYARD_DEMO_STACK"
# A secret's run-time value: SECRET_PREFIX + its key (contracts.environment.secret_env_var).
SECRET_PREFIX = "MODELYARD_SECRET_"

# The model server's options, as a container or pod receives them (contracts/serving_options.py
# maps an environment's settings onto them; ml/serving/__main__.py reads them).
MODEL_URI = "MODELYARD_MODEL_URI"
# A candidate served beside MODEL_URI at a weight set from outside (a Kubernetes canary, A/B or
# shadow: `pulumi up` sets both on the pods; the server does not step the weight itself).
CANDIDATE_URI = "MODELYARD_CANDIDATE_URI"
CANDIDATE_WEIGHT = "MODELYARD_CANDIDATE_WEIGHT"
# On Kubernetes the weight is a file instead (a mounted ConfigMap), read again every second: a
# canary step changes it without restarting a pod.
CANDIDATE_WEIGHT_FILE = "MODELYARD_CANDIDATE_WEIGHT_FILE"
# A server that rolls a candidate back by itself runs this (a JSON list: the start of a command;
# `--to-version V --reason TEXT` are appended) so the rollback outlives it: a local deploy sets it
# to the kit's `modelyard rollback MODEL --env ENV` (alias, file and history go back).
ROLLBACK_COMMAND = "MODELYARD_ROLLBACK_COMMAND"
# The folder of the server's bearer tokens (a mounted Secret: scoring.NAME files and `metrics`,
# AUTH_SCORING_PREFIX / AUTH_METRICS_FILE); unset: scoring and /metrics are open (the embedded
# default). The kit's own callers send the token of SERVING_TOKEN / METRICS_TOKEN.
AUTH_DIR = "MODELYARD_AUTH_DIR"
AUTH_SCORING_PREFIX = "scoring."
AUTH_METRICS_FILE = "metrics"
SERVING_TOKEN = "MODELYARD_SERVING_TOKEN"
METRICS_TOKEN = "MODELYARD_METRICS_TOKEN"
HOST = "MODELYARD_HOST"
PORT = "MODELYARD_PORT"
WORKERS = "MODELYARD_WORKERS"
POLL_SECONDS = "MODELYARD_POLL_SECONDS"
ENVIRONMENT = "MODELYARD_ENVIRONMENT"
IMAGE_DIGEST = "MODELYARD_IMAGE_DIGEST"
ROLLOUT = "MODELYARD_ROLLOUT"
CANARY_STEPS = "MODELYARD_CANARY_STEPS"
CANARY_STEP_SECONDS = "MODELYARD_CANARY_STEP_SECONDS"
CANARY_MIN_REQUESTS = "MODELYARD_CANARY_MIN_REQUESTS"
AB_SPLIT = "MODELYARD_AB_SPLIT"
MAX_ERROR_RATE = "MODELYARD_MAX_ERROR_RATE"
MAX_LATENCY_P99_MS = "MODELYARD_MAX_LATENCY_P99_MS"
SAMPLE_RATE = "MODELYARD_SAMPLE_RATE"
SAMPLE_MAX_ROWS = "MODELYARD_SAMPLE_MAX_ROWS"
# "false": score with LightGBM only, never compile the models (ml/serving/compiled.py).
COMPILE_MODELS = "MODELYARD_COMPILE_MODELS"
# Registry the Jenkins agents push to (infra/components/jenkins.py).
REGISTRY = "MODELYARD_REGISTRY"
