"""`modelyard monitor drift ENV`: live traffic against the training profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from modelyard.contracts.environment import load_environment
from modelyard.contracts.state import logs_dir, state_dir

monitor = typer.Typer(help="Watch what an environment serves.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(monitor, name="monitor")


@monitor.command("drift")
def drift_command(
    environment: Annotated[str, typer.Argument(help="Environment whose live traffic is checked.")],
    samples: Annotated[
        Path | None,
        typer.Option(
            help="Live samples folder (default: the environment's pods on Kubernetes, copied "
            "out; otherwise the local deploy's)."
        ),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Where to write the HTML report.")] = None,
    retrain_data: Annotated[
        Path | None, typer.Option(help="Training data for a local retraining on drift.")
    ] = None,
    rows: Annotated[
        int | None, typer.Option(min=10, help="Judge only the newest N live rows.")
    ] = None,
    textfile_dir: Annotated[
        Path | None,
        typer.Option(
            help="node-exporter's textfile directory: the result is written there as "
            "modelyard-drift-ENV.prom (another model's: modelyard-drift-ENV-MODEL.prom), "
            "labelled by environment and model, for Prometheus (monitoring/prometheus/alerts.yml)."
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Reference profile (file or runs:/ID); default: the "
            "profile of the version the environment's alias serves."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Which served model (default: training.model; others: modelyard:models)."
        ),
    ] = None,
) -> None:
    """Compare live inputs and predictions with the training profile; exit 1 on drift."""
    from modelyard.ml.monitoring.check import check_drift, default_report_path
    from modelyard.ml.monitoring.retrain import trigger_retraining
    from modelyard.pipelines.deploy import other_model, serving_dir, use_tracking_of

    env = load_environment(environment)
    extra = other_model(env, model)
    use_tracking_of(env)
    samples_dir = samples or serving_dir(environment, extra)
    if samples is None and env.serving.platform == "kubernetes":
        from modelyard.pipelines.pod_samples import pods_folder, refresh_pod_samples

        copied = refresh_pod_samples(env, extra)
        typer.echo(f"{copied} sample files copied from the pods of {env.serving.namespace}")
        samples_dir = pods_folder(environment, extra)
    named = f"{environment}-{extra}" if extra else environment
    report_path = report or default_report_path(state_dir(), named)
    check = check_drift(env, samples_dir, report_path, profile, rows, extra)
    result = check.result
    for feature in sorted(result.features, key=lambda f: -f.psi)[:10]:
        mark = "DRIFT" if feature.drifted else "ok   "
        typer.echo(f"  {mark} {feature.name:<24} PSI {feature.psi:7.3f}  {feature.test} "
                   f"p={feature.p_value:.2g}")  # fmt: skip
    if result.prediction is not None:
        typer.echo(f"  {'DRIFT' if result.prediction.drifted else 'ok   '} predictions{'':<13} "
                   f"PSI {result.prediction.psi:7.3f}")  # fmt: skip
    typer.echo(f"report: {check.report}")
    if textfile_dir is not None:
        import time

        from modelyard.ml.monitoring.exposition import write_drift_textfile

        written = write_drift_textfile(
            textfile_dir / f"modelyard-drift-{named}.prom", environment, extra or env.served_model,
            result.drifted, {f.name: f.psi for f in result.features}, time.time(),
        )  # fmt: skip
        typer.echo(f"metrics: {written}")
    if not result.drifted:
        typer.echo(f"{environment}: no drift in {result.rows} live rows")
        return
    names = ", ".join(f.name for f in result.drifted_features) or "predictions"
    typer.echo(f"{environment}: DRIFT in {names} ({result.rows} live rows)")
    if env.monitoring.on_drift == "retrain":
        reason = f"drift in {environment}: {names} (report {check.report})"
        typer.echo(trigger_retraining(environment, reason, logs_dir(), retrain_data, extra))
    raise typer.Exit(1)
