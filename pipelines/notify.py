"""Telling the team: a JSON webhook and/or an email, to the channels the environment lists."""

from __future__ import annotations

import json
import os
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any, Literal

from modelyard.contracts.environment import ConfigError, Environment, SecretValue, secret_env_var

Event = Literal["success", "failure"]


@dataclass(frozen=True)
class Delivery:
    channel: str  # "webhook #1", "email"
    ok: bool
    detail: str  # never contains a secret


def reveal(value: str | SecretValue, key: str, environment: Environment) -> str:
    if not isinstance(value, SecretValue):
        return value
    variable = secret_env_var(key)
    plain = os.environ.get(variable)
    if not plain:
        raise ConfigError(
            f"{environment.path}: modelyard:{key} is a secret; set {variable} to its value "
            "(in Jenkins, bind it with withCredentials)."
        )
    return plain


def notify(
    environment: Environment, event: Event, subject: str, payload: dict[str, Any]
) -> list[Delivery]:
    """Send to every channel that listens for `event`; one failing channel does not stop the others."""
    settings = environment.notify
    body = {"event": event, "environment": environment.name, "subject": subject, **payload}
    deliveries: list[Delivery] = []
    for index, hook in enumerate(settings.webhooks):
        if event not in hook.on:
            continue
        channel = f"webhook #{index + 1}"
        try:
            url = reveal(hook.url, f"notify.webhooks[{index}].url", environment)
            deliveries.append(_post(channel, url, body))
        except ConfigError as exc:
            deliveries.append(Delivery(channel, False, str(exc)))
    email = settings.email
    if email is not None and event in email.on:
        try:
            password = (
                reveal(email.password, "notify.email.password", environment)
                if email.password
                else None
            )
            # Long subjects stay on one line (RFC 5322 allows 998) instead of folding oddly.
            message = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
            message["Subject"] = f"[modelyard {environment.name}] {subject}"
            message["From"] = email.sender
            message["To"] = ", ".join(email.recipients)
            message.set_content(_as_text(body))
            with smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=15) as smtp:
                if email.starttls:
                    smtp.starttls()
                if email.username and password:
                    smtp.login(email.username, password)
                smtp.send_message(message)
            deliveries.append(
                Delivery("email", True, f"sent to {len(email.recipients)} recipient(s)")
            )
        except (ConfigError, OSError, smtplib.SMTPException) as exc:
            deliveries.append(Delivery("email", False, f"{type(exc).__name__}: {exc}"))
    return deliveries


def _post(channel: str, url: str, body: dict[str, Any]) -> Delivery:
    request = urllib.request.Request(
        url,
        data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "modelyard"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Delivery(channel, True, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        return Delivery(channel, False, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        # The URL may carry a token: report the reason, never the address.
        return Delivery(channel, False, f"unreachable ({getattr(exc, 'reason', exc)})")


def _as_text(body: dict[str, Any]) -> str:
    lines = [str(body.get("subject", ""))]
    lines += [
        f"{key}: {json.dumps(value, default=str)}"
        for key, value in body.items()
        if key != "subject"
    ]
    return "\n".join(lines) + "\n"
