"""`make demo`: the whole loop on this machine (the embedded default).

A real `mlflow server` on SQLite, the sample data, the pipeline's stages in the Jenkinsfile's
order (gate loop, registration, staging, smoke test, production), the other sample models
(segment, multiclass; demand, regression) trained, promoted and served beside churn
(pipelines/demo_models.py), drifted traffic caught by the monitor, the promotion history. Everything it creates lives in .modelyard/demo (ignored by git):
the repository's tracked files are left as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from modelyard.contracts import variables
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.environment import load_environment, project_root
from modelyard.contracts.state import demo_dir
from modelyard.pipelines.demo_models import (
    PORTS,
    models_section,
    serve_sample_models,
    stop_sample_models,
)
from modelyard.pipelines.errors import PipelineError
from rich.console import Console

DEMO_ROWS = 20_000
DRIFT_ROWS = 1_500
DRIFT_BATCH = 50  # the server samples up to 50 rows of each request


DEMO_MLFLOW_PORT = 5000


@dataclass
class DemoOutcome:
    mlflow_url: str = ""
    serving: dict[str, str] = field(default_factory=dict)
    drift_report: str = ""
    notifications: str = ""
    production_refusal: str = ""
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> env -> URL


def prepare_workspace(folder: Path, console: Console) -> Path:
    """A private copy of environments/ the demo may write to (promotions record the desired
    version there), adjusted where a one-machine demo cannot wait as a real team would."""
    environments = folder / "environments"
    created = not environments.is_dir()
    if created:
        shutil.copytree(project_root() / "environments", environments)
    else:
        _refresh(environments, project_root() / "environments")
    # Applied on every run (they only set keys), so a copy an older kit made gets them too.
    # The demo's own MLflow server, apart from the one `pulumi up --stack local` runs.
    _adjust(environments / "Pulumi.local.yaml", {
        "mlflow": {"trackingUri": f"http://127.0.0.1:{DEMO_MLFLOW_PORT}"},
    })  # fmt: skip
    for env in ("local", "staging", "production"):
        _serve_sample_models(environments / f"Pulumi.{env}.yaml", models_section(env))
    # The copies live in the state folder, in no repository: promotions write them in place.
    # Their servers are open (no bearer tokens) on 127.0.0.1; the addresses printed say so.
    no_git = {"git": {"enabled": False}}
    _adjust(environments / "Pulumi.staging.yaml", {
        "promotion": {"trainedFor": ["local"], **no_git},
        "monitoring": {"sampleRate": 1.0},
        "serving": {"platform": "process", "auth": None},
    })  # fmt: skip
    _adjust(environments / "Pulumi.production.yaml", {
        "promotion": {"soakMinutes": 0, **no_git},
        "monitoring": {"sampleRate": 1.0, "onDrift": "report"},
        "serving": {"platform": "process", "auth": None},
    })  # fmt: skip
    if created:
        console.print(
            f"demo copy of the environment files in {environments}: staging takes models trained "
            "on this machine, production's 60-minute soak is waived, staging and production "
            "sample every request and are served by local processes, drift is reported (not "
            "retrained on), and promotions write these copies without committing them (they are "
            "in no repository; `make demo-cluster` commits each one)"
        )
    return environments


def _refresh(copies: Path, shipped: Path) -> None:
    """The shipped files again, keeping what the demo's promotions wrote into the copies (each
    served model's version and image): a kit upgrade's new settings reach an existing demo."""
    from modelyard.pipelines.promotion.envfile import KEYS

    for source in sorted(shipped.glob("Pulumi.*.yaml")):
        copy = copies / source.name
        kept: dict[str, Any] = {}
        models: dict[str, Any] = {}
        if copy.is_file():
            config = yaml.safe_load(copy.read_text())["config"]
            serving = config.get("modelyard:serving") or {}
            kept = {key: serving[key] for key in KEYS if key in serving}
            models = {
                name: {key: entry[key] for key in KEYS if key in entry}
                for name, entry in (config.get("modelyard:models") or {}).items()
            }
        document = yaml.safe_load(source.read_text())
        document["config"].setdefault("modelyard:serving", {}).update(kept)
        if models:
            document["config"]["modelyard:models"] = models  # ports: prepare_workspace's
        write_atomic(copy, yaml.safe_dump(document, sort_keys=False))


def _adjust(path: Path, changes: dict[str, dict[str, Any]]) -> None:
    document = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        block = document["config"].setdefault(f"modelyard:{section}", {})
        block.update(values)
        for key in [k for k, v in values.items() if v is None]:
            del block[key]  # None removes a key
    write_atomic(path, yaml.safe_dump(document, sort_keys=False))


def _serve_sample_models(path: Path, ports: dict[str, dict[str, Any]]) -> None:
    """List the sample models under `modelyard:models`, keeping what promotions wrote there."""
    document = yaml.safe_load(path.read_text())
    models = document["config"].setdefault("modelyard:models", {})
    for name, settings in ports.items():
        models.setdefault(name, {}).update(settings)
    write_atomic(path, yaml.safe_dump(document, sort_keys=False))


def run_demo(keep_serving: bool, console: Console) -> DemoOutcome:
    from modelyard.pipelines.local_mlflow import start_mlflow_server
    from modelyard.pipelines.notification_sink import NotificationSink

    folder = demo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[variables.STATE_DIR] = str(folder)
    os.environ[variables.ENVIRONMENTS_DIR] = str(prepare_workspace(folder, console))
    local = load_environment("local")
    outcome = DemoOutcome(notifications=str(folder / "notifications.jsonl"))

    console.rule("[bold]MLflow tracking server")
    server = start_mlflow_server(folder / "mlflow", port=DEMO_MLFLOW_PORT)
    os.environ["MLFLOW_TRACKING_URI"] = outcome.mlflow_url = server.url
    console.print(f"mlflow server on SQLite at {server.url} (log {server.log_path})")
    sink_url = str(local.notify.webhooks[0].url) if local.notify.webhooks else ""
    sink_port = int(sink_url.split(":")[2].split("/")[0]) if sink_url else 0
    sink = NotificationSink(port=sink_port, journal=Path(outcome.notifications))
    try:
        data = sample_data(folder, console)
        _pipeline(data, outcome, console)
        outcome.models = serve_sample_models(folder, console)
        _drift(folder, outcome, console)
        show_history(console, ("churn", *PORTS))
    finally:
        sink.close()
        if not keep_serving:
            _stop_everything(server, console)
    return outcome


def sample_data(folder: Path, console: Console) -> Path:
    from modelyard.ml.data.sample import generate_churn

    console.rule("[bold]sample data")
    path = folder / "data" / "churn.csv"
    path.parent.mkdir(exist_ok=True)
    generate_churn(DEMO_ROWS, seed=0).to_csv(path, index=False)
    console.print(f"{DEMO_ROWS} customers written to {path} (deterministic, nothing downloaded)")
    return path


def _pipeline(data: Path, outcome: DemoOutcome, console: Console) -> None:
    outcome.serving, outcome.production_refusal = run_demo_pipeline("local", data, console)
    from modelyard.pipelines.deploy import deploy

    # Production keeps serving its champion when it refused the new version (a second run).
    for env in ("staging", "production"):
        if env not in outcome.serving:
            outcome.serving[env] = deploy(env).url


def run_demo_pipeline(env: str, data: Path, console: Console) -> tuple[dict[str, str], str]:
    """Every stage, a rule per stage and the summary table; (where each environment serves, why
    production refused the version, if it did: a second run on the same data keeps its champion)."""
    from modelyard.pipelines.commands.pipeline import print_summary
    from modelyard.pipelines.pipeline.runner import run_pipeline

    timings: list[tuple[str, str, float]] = []

    def on_stage(name: str, status: str, seconds: float) -> None:
        if status == "running":
            console.rule(f"[bold]stage {name}")
        else:
            timings.append((name, status, seconds))

    try:
        ctx = run_pipeline(
            env, data, lambda line: console.print(f"  {line}", highlight=False), on_stage
        )
        return dict(ctx.serving), ""
    except PipelineError as exc:
        if not timings or timings[-1][0] != "promote-production":
            raise
        console.print(f"[yellow]production keeps its current version[/yellow]: {exc}")
        return {}, str(exc)
    finally:
        print_summary(console, timings)


def _drift(folder: Path, outcome: DemoOutcome, console: Console) -> None:
    import requests
    from modelyard.ml.data.sample import generate_churn
    from modelyard.ml.monitoring.check import check_drift, live_samples
    from modelyard.pipelines.deploy import serving_dir

    console.rule("[bold]drifted traffic to production")
    url = outcome.serving.get("production")
    if not url:
        console.print("production is not serving: no drift check")
        return
    frame = generate_churn(DRIFT_ROWS, seed=99, drift=0.8).drop(columns=["churned"])
    session = requests.Session()
    for start in range(0, DRIFT_ROWS, DRIFT_BATCH):
        batch = json.loads(
            frame.iloc[start : start + DRIFT_BATCH].to_json(orient="split", index=False)
        )
        session.post(
            f"{url}/invocations", json={"dataframe_split": batch}, timeout=30
        ).raise_for_status()
    console.print(
        f"{DRIFT_ROWS} live rows sent to {url} from a drifted population (drift knob 0.8)"
    )
    production = load_environment("production")
    # The servers write their samples in the background: give them a moment to land.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            len(live_samples(serving_dir("production"), None, 10**6))
            >= production.monitoring.min_rows
        ):
            break
        time.sleep(1)
    report = folder / "reports" / "drift-production.html"
    check = check_drift(production, serving_dir("production"), report)
    outcome.drift_report = str(check.report)
    drifted = [f.name for f in check.result.drifted_features]
    verdict = f"DRIFT caught in {', '.join(drifted)}" if check.result.drifted else "no drift found"
    console.print(f"{verdict}; report {check.report}")


def show_history(console: Console, models: tuple[str, ...] = ("churn",)) -> None:
    from modelyard.pipelines.commands.promote import print_history
    from modelyard.pipelines.promotion import history

    for model in models:
        console.rule(f"[bold]promotion history of {model}")
        print_history(history(model), console)


def _stop_everything(server: Any, console: Console) -> None:
    from modelyard.pipelines.deploy import stop

    for env in ("staging", "production"):
        stop(env)
    stop_sample_models()
    server.stop()
    console.print(
        "stopped the model servers and the mlflow server (pass --keep-serving to keep them)"
    )


def print_addresses(outcome: DemoOutcome, keep_serving: bool, console: Console) -> None:
    console.rule("[bold]where to look")
    state = "" if keep_serving else " (stopped; `make demo KEEP=1` keeps them running)"
    rows = [("MLflow UI:", f"{outcome.mlflow_url}{state}")]
    rows += [(f"{env} serving:", f"{url}/invocations{state}")
             for env, url in sorted(outcome.serving.items())]  # fmt: skip
    rows += [(f"{model} in {env}:", f"{url}/invocations{state}")
             for model, urls in outcome.models.items() for env, url in sorted(urls.items())]  # fmt: skip
    if outcome.drift_report:
        rows.append(("drift report:", str(outcome.drift_report)))
    rows.append(("notifications:", str(outcome.notifications)))
    rows.append(("authentication:", "none: these servers are open on 127.0.0.1 (the shipped "
                 "staging and production ask for bearer tokens: modelyard:serving.auth)"))  # fmt: skip
    width = max(len(label) for label, _ in rows) + 1  # one column of addresses
    for label, value in rows:
        console.print(f"{label:<{width}}{value}")
