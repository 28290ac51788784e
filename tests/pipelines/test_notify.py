"""Notifications reach a real local HTTP receiver and a real local SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from modelyard.contracts.environment import load_environment, secret_env_var
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.notification_sink import NotificationSink
from modelyard.pipelines.notify import notify

from tests.helpers import edit_environment


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(BytesParser(policy=policy.default).parsebytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_success_and_failure_reach_webhook_and_email(
    environments: Path, webhook: NotificationSink, smtp: tuple[int, _Inbox]
) -> None:
    port, inbox = smtp
    email = {"smtpHost": "127.0.0.1", "smtpPort": port, "sender": "ci@example.test",
             "recipients": ["team@example.test"]}  # fmt: skip
    edit_environment(
        environments, "local", {"notify.webhooks": [{"url": webhook.url}], "notify.email": email}
    )
    environment = load_environment("local")

    ready = notify(environment, "success", "the best model is ready: churn version 3, roc_auc 0.8100",
                   {"model_version": 3})  # fmt: skip
    failed = notify(
        environment, "failure", "training churn did not pass its gate", {"reason": "0.01 short"}
    )

    assert all(d.ok for d in ready + failed), ready + failed
    assert [b["event"] for b in webhook.bodies] == ["success", "failure"]
    assert webhook.bodies[0]["model_version"] == 3 and webhook.bodies[0]["environment"] == "local"
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects == [
        "[modelyard local] the best model is ready: churn version 3, roc_auc 0.8100",
        "[modelyard local] training churn did not pass its gate",
    ]
    assert "0.01 short" in inbox.messages[1].get_content()


def test_channels_listen_only_to_their_events(
    environments: Path, webhook: NotificationSink
) -> None:
    edit_environment(
        environments, "local", {"notify.webhooks": [{"url": webhook.url, "on": ["failure"]}]}
    )
    environment = load_environment("local")
    assert notify(environment, "success", "ready", {}) == []
    assert webhook.bodies == []


def test_secret_webhook_url_comes_from_its_variable_and_is_never_reported(
    environments: Path, webhook: NotificationSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = load_environment("staging")  # its webhook URL is a Pulumi secret
    variable = secret_env_var("notify.webhooks[0].url")
    assert variable == "MODELYARD_SECRET_NOTIFY_WEBHOOKS_0_URL"
    [missing] = notify(environment, "failure", "x", {})
    assert not missing.ok and variable in missing.detail

    monkeypatch.setenv(variable, webhook.url)
    [sent] = notify(environment, "failure", "x", {})
    assert sent.ok and webhook.bodies[0]["subject"] == "x"
    assert webhook.url not in sent.detail


def test_an_unreachable_channel_does_not_stop_the_others(
    environments: Path, webhook: NotificationSink
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    edit_environment(
        environments, "local", {"notify.webhooks": [{"url": dead}, {"url": webhook.url}]}
    )
    first, second = notify(load_environment("local"), "failure", "pipeline failed", {})
    assert not first.ok and "unreachable" in first.detail and dead not in first.detail
    assert second.ok and len(webhook.bodies) == 1
