"""Where the team hears about a ready model or a failed pipeline."""

from __future__ import annotations

from typing import Literal

from modelyard.contracts.environment.base import SecretValue, Section
from pydantic import Field

Event = Literal["success", "failure"]


def _every_event() -> list[Event]:
    return ["success", "failure"]


class Webhook(Section):
    url: str | SecretValue  # a secret when the URL carries a token (Slack, Teams)
    on: list[Event] = Field(default_factory=_every_event)


class Email(Section):
    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretValue | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[str] = Field(min_length=1)
    on: list[Event] = Field(default_factory=_every_event)


class NotifySettings(Section):
    webhooks: list[Webhook] = Field(default_factory=list)
    email: Email | None = None
