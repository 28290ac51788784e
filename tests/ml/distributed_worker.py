"""One worker of a training Job of several pods, run as a process of its own: the train stage as a
pod runs it (inside the training image, its rank and address in variables.TRAINING_*), with the
`local` environment's training set to that many workers. A cluster is not needed to meet over
LightGBM's network: the workers listen on 127.0.0.1, each on its own port.

    python -m tests.ml.distributed_worker DATA   (the MODELYARD_* variables say the rest)
"""

from __future__ import annotations

import json
import os
import sys

from modelyard.contracts import variables
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.errors import USER_ERRORS, report_user_error
from modelyard.pipelines.pipeline.context import PipelineContext
from modelyard.pipelines.pipeline.stages import train


def main(data: str) -> None:
    environment = load_environment("local")
    workers = int(os.environ[variables.TRAINING_WORKERS])
    # What the pods read from their environment file (trainIn kubernetes; `local` trains here).
    on_kubernetes = environment.training.kubernetes.model_copy(update={"workers": workers})
    training = environment.training.model_copy(update={"kubernetes": on_kubernetes})
    environment = environment.model_copy(update={"training": training})
    ctx = PipelineContext(run_id=os.environ[variables.PIPELINE_RUN_ID], env="local", data=data,
                          model="churn")  # fmt: skip
    try:
        train(ctx, environment, lambda line: print(line, flush=True))
    except USER_ERRORS as exc:  # as the command line ends on them (pipelines/cli.py)
        report_user_error(exc)
        sys.exit(2)
    print(json.dumps({"run_id": ctx.training_run_id, "metrics": ctx.metrics}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
