"""Promotion records, kept in MLflow next to the aliases they explain.

Each promotion or rollback is one run of the experiment `modelyard-promotions`: its fields are
run tags (searchable in the MLflow UI and API by any auditor, from any machine) and the whole
record is the run's artifact `record.json`. The run is written *before* the alias moves, with
`modelyard.promotion.status = pending`: it is the write-ahead log every machine can see, so an
interrupted promotion is found and repaired by the next command wherever it runs. It ends as
`committed` (the change took effect) or `aborted` (nothing changed).
"""

from __future__ import annotations

import contextlib
import json
from functools import partial
from typing import Any

from mlflow.entities import Run, RunStatus, ViewType
from modelyard.contracts import artifacts
from modelyard.contracts.tags import PROMOTION_PREFIX
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion.registry import Registry

EXPERIMENT = "modelyard-promotions"
RECORD_FILE = artifacts.PROMOTION_RECORD
PREFIX = PROMOTION_PREFIX
PENDING, COMMITTED, ABORTED = "pending", "committed", "aborted"
# Fields copied to tags so the record can be found and repaired without its artifact.
# The commit that wrote the record's release keys to the repository (modelyard:promotion.git),
# and the keys as the last rollout step wrote them.
COMMIT, RELEASE = "commit", "release"
TAGGED = ("model", "env", "action", "from_version", "to_version", "image", "actor", "at")


def _tag(name: str) -> str:
    return f"{PREFIX}{name}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class RecordStore:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._experiment_id: str | None = None

    def experiment_id(self, create: bool) -> str | None:
        if self._experiment_id is None:
            client = self.registry.client
            found = self.registry.call(
                f"find experiment {EXPERIMENT}", lambda: client.get_experiment_by_name(EXPERIMENT)
            )
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    raise PipelineError(
                        f"the promotion history experiment {EXPERIMENT!r} was deleted in MLflow at "
                        f"{self.registry.shown_uri}: restore it (`mlflow experiments restore`) "
                        "before promoting; records are never silently recreated."
                    )
                self._experiment_id = found.experiment_id
            elif create:
                self._experiment_id = self.registry.call(
                    f"create experiment {EXPERIMENT}",
                    lambda: client.create_experiment(
                        EXPERIMENT,
                        tags={"mlflow.note.content": "One run per promotion or rollback."},
                    ),
                )
        return self._experiment_id

    def begin(self, record: dict[str, Any]) -> str:
        """Write the record as pending; returns its id (the MLflow run id)."""
        experiment = self.experiment_id(create=True)
        assert experiment is not None
        tags = {_tag(name): _text(record.get(name)) for name in TAGGED}
        tags[_tag("status")] = PENDING
        name = f"{record['action']} {record['model']} v{record['to_version']} to {record['env']}"
        client = self.registry.client
        run = self.registry.call(
            "write the promotion record",
            lambda: client.create_run(experiment, tags=tags, run_name=name),
        )
        run_id = run.info.run_id
        record["id"] = run_id
        try:
            self.registry.call(
                "write the promotion record",
                lambda: client.log_text(run_id, json.dumps(record, indent=2), RECORD_FILE),
            )
        except PipelineError:
            # Nothing moved yet: close the attempt now rather than leave it for repair.
            with contextlib.suppress(PipelineError):
                self.finish(run_id, ABORTED, "the record could not be written")
            raise
        return run_id

    def finish(
        self, run_id: str, status: str, note: str | None = None, commit: str | None = None
    ) -> None:
        client = self.registry.client

        def close() -> None:
            if note:
                client.set_tag(run_id, _tag("repair"), note[:4000])
            if commit:
                client.set_tag(run_id, _tag(COMMIT), commit)
            client.set_tag(run_id, _tag("status"), status)
            ended = RunStatus.FINISHED if status == COMMITTED else RunStatus.KILLED
            client.set_terminated(run_id, RunStatus.to_string(ended))

        self.registry.call(f"mark the promotion record {status}", close)

    def step(self, run_id: str, release: dict[str, Any], commit: str | None) -> None:
        """A rollout step (a canary's weight) wrote the release keys again after the record."""
        client = self.registry.client

        def tag() -> None:
            client.set_tag(run_id, _tag(RELEASE), json.dumps(release, sort_keys=True))
            if commit:
                client.set_tag(run_id, _tag(COMMIT), commit)

        self.registry.call("note the rollout step on the promotion record", tag)

    def _search(self, where: list[str]) -> list[Run]:
        experiment = self.experiment_id(create=False)
        if experiment is None:
            return []
        query = " and ".join(where)
        client = self.registry.client
        runs: list[Run] = []
        token: str | None = None
        while True:
            page = self.registry.call("read the promotion history", partial(
                client.search_runs, [experiment], query, run_view_type=ViewType.ALL,
                order_by=["attributes.start_time ASC"], page_token=token,
            ))  # fmt: skip
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def runs(self, model: str, env: str | None = None, status: str | None = None) -> list[Run]:
        where = [f"tags.`{_tag('model')}` = '{model}'"]
        if env:
            where.append(f"tags.`{_tag('env')}` = '{env}'")
        if status:
            where.append(f"tags.`{_tag('status')}` = '{status}'")
        return self._search(where)

    def record(self, run: Run) -> dict[str, Any]:
        """The full record: the artifact, with the run's final status and any repair note."""
        body = self.registry.json_artifact(run.info.run_id, RECORD_FILE)
        record: dict[str, Any] = body if isinstance(body, dict) else fields(run)
        record["id"] = run.info.run_id
        record["status"] = run.data.tags.get(_tag("status"), PENDING)
        note = run.data.tags.get(_tag("repair"))
        if note:
            record["repair"] = note
        record["commit"] = run.data.tags.get(_tag(COMMIT))
        # What the file says for the model now: the record's keys, or a later rollout step's.
        stepped = run.data.tags.get(_tag(RELEASE))
        record["release"] = json.loads(stepped) if stepped else record.get("serving")
        # Deleting the run in MLflow does not erase the history: it shows, flagged.
        if run.info.lifecycle_stage == "deleted":
            record["deleted_in_mlflow"] = True
        return record

    def history(self, model: str, env: str | None = None) -> list[dict[str, Any]]:
        """Every promotion and rollback that took effect, oldest first."""
        return [self.record(run) for run in self.runs(model, env, COMMITTED)]


def fields(run: Run) -> dict[str, Any]:
    """The record's key fields from the run's tags (when the artifact never got written)."""
    tags = run.data.tags
    record: dict[str, Any] = {name: tags.get(_tag(name)) or None for name in TAGGED}
    for name in ("from_version", "to_version"):
        record[name] = int(record[name]) if record[name] else None
    return record
