"""`make demo`'s other sample models, served beside churn: segment (multiclass) and demand
(regression). Each is trained to local's gate for its task, promoted to staging and production
under their rules for its task, and served by a server of its own (`modelyard:models` of the
demo's environment copies), so its promotions never touch churn's or each other's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelyard.contracts.environment import load_environment
from modelyard.pipelines.errors import PipelineError
from rich.console import Console
from rich.table import Table

# Each sample model's local port per environment: churn's (8180-8182) plus 10 and 20.
PORTS = {"segment": 10, "demand": 20}
ENVIRONMENTS = ("local", "staging", "production")
SMOKE_ROWS = 300  # staging's live rows: production's maxDrift rule needs 100 at least


def models_section(env: str) -> dict[str, dict[str, Any]]:
    """`modelyard:models` of the demo's copy of `env`: each sample model on its own port."""
    base = 8180 + ENVIRONMENTS.index(env)
    return {name: {"localPort": base + offset} for name, offset in PORTS.items()}


def serve_sample_models(folder: Path, console: Console) -> dict[str, dict[str, str]]:
    """Train, promote and serve each model; {model: {environment: URL}}."""
    from modelyard.ml.data.sample import SAMPLES
    from modelyard.pipelines.demo import DEMO_ROWS

    served: dict[str, dict[str, str]] = {}
    for name in PORTS:
        console.rule(f"[bold]model {name}")
        data = folder / "data" / f"{name}.csv"
        SAMPLES[name](DEMO_ROWS, seed=0).to_csv(data, index=False)
        trained = _train(name, data, console)
        served[name] = {}
        for env in ("staging", "production"):
            url = _promote_and_serve(name, env, trained, console)
            if url is None:
                break
            served[name][env] = url
            if env == "staging":
                _smoke(name, url, data, console)
    _print_table(served, console)
    return served


def _train(name: str, data: Path, console: Console) -> int:
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    done = subprocess.run(
        [modelyard, "train", "local", "--model", name, "--data", str(data), "--json",
         "--no-notify"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise PipelineError(f"training {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    gate = result["gate"]
    console.print(
        f"  {name}: a {result['task']} model, version {result['model_version']}, gate "
        f"`{gate['rule']}` passed with {gate['value']:.4f} ({result['trials']} trial(s))"
    )
    return int(result["model_version"])


def _promote_and_serve(name: str, env: str, version: int, console: Console) -> str | None:
    """Promote under the environment's rules, then deploy; the URL, or None when refused (what
    it serves keeps serving, as production does for churn)."""
    from modelyard.pipelines.deploy import deploy
    from modelyard.pipelines.promotion import promote

    approvers = load_environment("local").pipeline.approvers if env == "production" else []
    try:
        outcome = promote(name, env, str(version), approvers)
    except PipelineError as exc:
        if "already serves" not in str(exc):
            raise
        console.print(f"  {env} already serves {name} v{version}")
    else:
        if not outcome.promoted:
            failed = "; ".join(f"{g.name}: {g.evidence}" for g in outcome.gates if not g.passed)
            console.print(f"  [yellow]{env} keeps its version of {name}[/yellow]: {failed}")
            if outcome.from_version is None:
                return None
        else:
            console.print(f"  {env}: promoted {name} v{version} ({len(outcome.gates)} rules)")
    deployed = deploy(env, model=name)
    console.print(f"  {env}: {deployed.message} at {deployed.url}")
    return deployed.url


def _smoke(name: str, url: str, data: Path, console: Console) -> None:
    """Staging's traffic: the rows production's drift rule compares with the training data."""
    import pandas as pd
    import requests
    from modelyard.ml.spec import load_model_spec

    rows = pd.read_csv(data).drop(columns=[load_model_spec(name).target]).head(SMOKE_ROWS)
    session = requests.Session()
    for start in range(0, len(rows), 50):
        batch = json.loads(rows.iloc[start : start + 50].to_json(orient="split", index=False))
        session.post(f"{url}/invocations", json={"dataframe_split": batch},
                     timeout=30).raise_for_status()  # fmt: skip
    console.print(f"  {SMOKE_ROWS} rows sent to staging's {name} server")


def _print_table(served: dict[str, dict[str, str]], console: Console) -> None:
    import requests

    table = Table(title="the sample models beside churn", title_justify="left")
    for column in ("model", "environment", "version", "answer to one row"):
        table.add_column(column)
    for name, urls in served.items():
        for env, url in urls.items():
            identity = requests.get(f"{url}/version", timeout=5).json()
            table.add_row(name, env, str(identity.get("model_version")),
                          _one_answer(name, url))  # fmt: skip
    console.print(table)


def _one_answer(name: str, url: str) -> str:
    import requests
    from modelyard.ml.data.sample import SAMPLES
    from modelyard.ml.spec import load_model_spec

    row = SAMPLES[name](1, seed=5).drop(columns=[load_model_spec(name).target])
    answer = requests.post(f"{url}/invocations", timeout=10, json={
        "dataframe_split": json.loads(row.to_json(orient="split", index=False))}).json()  # fmt: skip
    if "labels" in answer:
        return f"{answer['labels'][0]} (p={max(answer['predictions'][0]):.2f})"
    return f"{answer['predictions'][0]:.1f}"


def stop_sample_models() -> None:
    from modelyard.pipelines.deploy import stop

    for env in ("staging", "production"):
        for name in PORTS:
            stop(env, name)
