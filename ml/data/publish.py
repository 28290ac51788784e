"""`modelyard data push`: a validated data file into the environment's MLflow, as an artifact of a
run of the `modelyard-datasets` experiment, where a training Job on the cluster reads it by its
runs:/ URI (ml/data/source.py). In production MLflow keeps artifacts in object storage (S3, GCS...),
so this is that store, behind the credentials the pods already have. A file already pushed (same
content digest) is not pushed again: its URI is returned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts import tags
from modelyard.ml.tracking import experiment_id_of

EXPERIMENT = "modelyard-datasets"
FOLDER = "data"  # the artifact folder of the dataset's run
FILE_NAME = tags.PREFIX + "dataset.file"  # the file's name, under FOLDER
ROWS = tags.PREFIX + "dataset.rows"


@dataclass(frozen=True)
class Pushed:
    uri: str  # runs:/RUN_ID/data/NAME
    run_id: str
    new: bool  # False: the same content was pushed before


def push(path: Path, digest: str, rows: int) -> Pushed:
    """Upload `path` (MLflow pointed at the environment's server) unless its digest is there.
    The run ends FINISHED only once the file is uploaded: a push cut short is never found."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = experiment_id_of(client, EXPERIMENT)
    found = client.search_runs(
        [experiment],
        f"tags.`{tags.Lineage.DATASET_DIGEST}` = '{digest}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found:
        run = found[0]
        return Pushed(_uri(run.info.run_id, run.data.tags[FILE_NAME]), run.info.run_id, False)
    identity = {tags.Lineage.DATASET_DIGEST: digest, FILE_NAME: path.name, ROWS: str(rows)}
    run = client.create_run(experiment, run_name=f"{path.name} {digest[:12]}", tags=identity)
    try:
        client.log_artifact(run.info.run_id, str(path), FOLDER)
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return Pushed(_uri(run.info.run_id, path.name), run.info.run_id, True)


def _uri(run_id: str, name: str) -> str:
    return f"runs:/{run_id}/{FOLDER}/{name}"
