"""What the training Job on Kubernetes and the stack that prepares its namespace share: the names
of the objects, the pods' labels, where things are mounted. The stack (infra/components/
model_training.py) makes the objects; the train stage (pipelines/pipeline/training_job.py) names
them in each Job."""

from __future__ import annotations

SERVICE_ACCOUNT = "modelyard-training"
# The Job's state (checkpoints, staged datasets, the run's context): outlives every pod.
STATE_CLAIM = "modelyard-training-state"
MLFLOW_SECRET = "modelyard-training-mlflow"  # ~/.mlflow/credentials, when MLflow asks for them
PULL_SECRET = "modelyard-training-pull"  # the package registry's, when it asks for a login
LABELS = {"app.kubernetes.io/name": "modelyard-training", "app.kubernetes.io/part-of": "modelyard"}

STATE_MOUNT = "/var/lib/modelyard"
# Under STATE_MOUNT (and any state folder): a streamed file per digest, a URI's copy per run.
DATASETS = "datasets"
HOME = "/home/modelyard"  # the credentials file's folder is mounted under it
UID = 10001
# The pod's result (the MLflow run and its metrics) as Kubernetes reads it when the container ends.
RESULT_FILE = "/dev/termination-log"
# Where the stage keeps that result on the finished Job once it has removed the Job's pods (a
# finished pod would pin the volume, and `pulumi destroy` would wait on it for ever).
RESULT_ANNOTATION = "modelyard.io/training-result"
# The ports the workers of a training Job of several pods talk on (LightGBM's network, from its
# default port): one per fit a process makes, and a process makes at most training.budget.trials.
NETWORK_PORT = 12400
NETWORK_PORTS = 1000
# Where Kubernetes writes an Indexed Job pod's index: the worker's rank.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# Exit code of a mistake the kit reported (bad data, a gate not met): retrying cannot help.
USER_ERROR_EXIT = 2


def access_mode(workers: int) -> str:
    """The claim's: one worker's pods use it from one node at a time; several workers at once,
    from whichever nodes they run on."""
    return "ReadWriteOnce" if workers <= 1 else "ReadWriteMany"
