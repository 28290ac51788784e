"""The pipeline: one list of stages, run by Jenkins (pipelines/Jenkinsfile) or by the local runner."""

from modelyard.pipelines.pipeline.stages import STAGES

__all__ = ["STAGES"]
