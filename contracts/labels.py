"""The labels the kit puts on what it deploys (Kubernetes objects, Docker containers), read back by
the policy pack, `infra diff` and the cluster path."""

ENVIRONMENT_LABEL = "modelyard.io/environment"
VERSION_LABEL = "modelyard.io/model-version"  # the model version a server or pod runs
# The candidate version a pod loads beside VERSION_LABEL's (canary, A/B, shadow).
CANDIDATE_LABEL = "modelyard.io/candidate-version"
TRACK_LABEL = "modelyard.io/track"  # which Deployment: blue/green names one per version
MODEL_LABEL = "modelyard.io/model"  # the registered model a server runs: one set of objects each

# The labels of every serving object on Kubernetes; `SERVING_SELECTOR` finds its pods and Deployments.
SERVING_APP_LABELS = {
    "app.kubernetes.io/name": "modelyard-serving",
    "app.kubernetes.io/part-of": "modelyard",
}
SERVING_SELECTOR = ",".join(f"{k}={v}" for k, v in SERVING_APP_LABELS.items())


def serving_selector(model: str | None = None) -> str:
    """`kubectl --selector` for the serving pods and Deployments of one model, or of every one."""
    return SERVING_SELECTOR + (f",{MODEL_LABEL}={model}" if model else "")
