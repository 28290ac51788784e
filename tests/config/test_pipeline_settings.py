"""The pipeline's Docker settings (pipeline.trainIn, pipeline.package): mistakes are refused
with the key and the fix, and the registry password is only ever a Pulumi secret."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import edit_environment, run_cli


def _refused(environments: Path) -> str:
    result = run_cli("env", "validate", "local")
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(environments / "Pulumi.local.yaml") in result.stderr
    return " ".join(result.stderr.split())


def test_a_registry_needs_its_password_as_a_pulumi_secret(environments: Path) -> None:
    edit_environment(environments, "local", {"pipeline.package": {"registry": "127.0.0.1:5443"}})
    message = _refused(environments)
    assert "modelyard:pipeline.package" in message
    assert "pulumi config set --secret --path modelyard:pipeline.package.password" in message


def test_a_plain_text_registry_password_is_refused_and_not_echoed(environments: Path) -> None:
    edit_environment(environments, "local", {
        "pipeline.package": {"registry": "127.0.0.1:5443", "password": "hunter2"},
    })  # fmt: skip
    message = _refused(environments)
    assert "modelyard:pipeline.package.password" in message and "never plain text" in message
    assert "hunter2" not in message


def test_train_in_names_its_choices(environments: Path) -> None:
    edit_environment(environments, "local", {"pipeline.trainIn": "cloud"})
    message = _refused(environments)
    assert "modelyard:pipeline.trainIn" in message
    assert "'process', 'container' or 'kubernetes'" in message


def test_training_on_kubernetes_needs_a_cluster_and_a_registry(environments: Path) -> None:
    # The embedded default serves with Docker and pushes to no registry: a Job has neither a
    # namespace to run in nor an image the cluster could pull. Both said at once, before any pod.
    edit_environment(environments, "local", {"pipeline.trainIn": "kubernetes"})
    message = _refused(environments)
    assert "modelyard:pipeline.trainIn" in message and "serving.platform is `docker`" in message
    assert "modelyard:pipeline.package.registry" in message and "cluster pulls from" in message


def test_several_training_workers_need_a_training_job_and_at_least_one(environments: Path) -> None:
    edit_environment(environments, "local", {"training.kubernetes": {"workers": 2}})
    message = _refused(environments)
    assert "modelyard:training.kubernetes.workers" in message
    assert "is 2 but pipeline.trainIn is `process`" in message and "workers to 1" in message
    edit_environment(environments, "local", {"training.kubernetes": {"workers": 0}})
    message = _refused(environments)
    assert (
        "modelyard:training.kubernetes.workers" in message
        and "greater than or equal to 1" in message
    )


def test_a_registry_address_with_a_scheme_is_refused(environments: Path) -> None:
    edit_environment(environments, "local", {
        "pipeline.package": {"registry": "https://127.0.0.1:5443", "password": {"secure": "v1:x"}},
    })  # fmt: skip
    message = _refused(environments)
    assert "modelyard:pipeline.package.registry" in message and "host[:port], no scheme" in message
