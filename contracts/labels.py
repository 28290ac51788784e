"""The labels the kit puts on what it deploys (Kubernetes objects, Docker containers), read back by
the policy pack, `infra diff` and the cluster path."""

ENVIRONMENT_LABEL = "modelyard.io/environment"
VERSION_LABEL = "modelyard.io/model-version"  # the model version a server or pod runs
TRACK_LABEL = "modelyard.io/track"  # stable or candidate, for strategies with two releases
