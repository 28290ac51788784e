"""What an environment serves, and on which address when served on this machine."""

from __future__ import annotations

from pydantic import Field

from infra.config.base import Section


class ServingSettings(Section):
    # Written by `modelyard promote` / `rollback`: what the next `pulumi up` rolls out.
    desired_version: int | None = Field(default=None, ge=1)
    image: str | None = None
    # The embedded default serves each environment as local processes on 127.0.0.1.
    local_port: int = Field(ge=1024, le=65535)
    replicas: int = Field(default=1, ge=1, le=100)
