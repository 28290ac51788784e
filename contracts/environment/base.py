"""Building blocks shared by every section of an environment file."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from modelyard.contracts import variables
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema


class Section(BaseModel):
    """A block of an environment file: camelCase keys, unknown keys rejected, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def secret_env_var(key: str) -> str:
    """The variable that carries a secret's plain value at run time, one convention for every
    secret: modelyard:notify.email.password -> MODELYARD_SECRET_NOTIFY_EMAIL_PASSWORD."""
    return variables.SECRET_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", key).upper().strip("_")


class SecretValue:
    """A Pulumi secret (`{secure: ...}` in the stack file). Never rendered in plain text.

    The ciphertext belongs to Pulumi's secrets provider; the kit only needs the plain value at
    run time, which it takes from an environment variable the caller sets (in Jenkins, from
    `withCredentials`). Plain strings are refused so no secret is ever committed.
    """

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "[secret]"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def parse(value: Any) -> SecretValue:
            if isinstance(value, SecretValue):
                return value
            if isinstance(value, dict) and set(value) == {"secure"} and value["secure"]:
                return cls(str(value["secure"]))
            raise ValueError(
                "secrets must be Pulumi secrets, never plain text: "
                "set it with `pulumi config set --secret KEY VALUE` (it becomes {secure: ...})"
            )

        return core_schema.no_info_plain_validator_function(
            parse, serialization=core_schema.plain_serializer_function_ser_schema(repr)
        )


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_RULE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|>|<)\s*(-?[0-9]*\.?[0-9]+(?:[eE]-?\d+)?)\s*$"
)


class MetricRule:
    """A gate written as `metric OP threshold`, e.g. `roc_auc >= 0.85` or `latency_p99_ms <= 50`."""

    __slots__ = ("metric", "op", "threshold")

    def __init__(self, metric: str, op: str, threshold: float) -> None:
        self.metric, self.op, self.threshold = metric, op, threshold

    @classmethod
    def parse(cls, text: str) -> MetricRule:
        match = _RULE.match(text)
        if not match:
            raise ValueError(
                f"{text!r} is not a metric rule: write it as `metric >= number`, e.g. `roc_auc >= 0.85`"
            )
        return cls(match[1], match[2], float(match[3]))

    @property
    def higher_is_better(self) -> bool:
        return self.op.startswith(">")

    def passes(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def gap(self, value: float) -> float:
        """How far `value` is from passing (0 when it passes)."""
        return 0.0 if self.passes(value) else abs(self.threshold - value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetricRule) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def parse(value: Any) -> MetricRule:
            if isinstance(value, MetricRule):
                return value
            if not isinstance(value, str):
                raise ValueError("write the rule as a string, e.g. `roc_auc >= 0.85`")
            return cls.parse(value)

        return core_schema.no_info_plain_validator_function(
            parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )
