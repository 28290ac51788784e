"""Where the platform program reads secret stack configuration (once per section).

Environment files hold secrets as `{secure: ...}` (typed as SecretValue, ciphertext only). At
`pulumi up` the engine decrypts them; this module hands them to components as secret Outputs,
so a plain value never exists outside Pulumi's secret tracking.
"""

from __future__ import annotations

from typing import Any

import pulumi
from modelyard.contracts.environment import ConfigError
from modelyard.contracts.environment.environment import NAMESPACE


class StackSecrets:
    """Secret values under one `modelyard:<section>` key, read once from the stack config."""

    def __init__(self, section: str) -> None:
        self.section = section
        self._value = pulumi.Config(NAMESPACE).require_secret_object(section)

    def get(self, *path: str) -> pulumi.Output[str]:
        where = f"{NAMESPACE}:{self.section}." + ".".join(path)

        def pick(document: Any) -> str:
            node = document
            for part in path:
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(
                        f"stack config has no secret at {where}: set it with "
                        f"`pulumi config set --secret --path {where} VALUE`"
                    )
                node = node[part]
            if not isinstance(node, str) or not node:
                raise ConfigError(f"{where} must be a non-empty secret string")
            return node

        return pulumi.Output.secret(self._value.apply(pick))
