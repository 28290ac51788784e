"""Kubernetes resource quantities as numbers: the stack sizes quotas with them, the train stage
compares a Job's requests with what the nodes can give."""

from __future__ import annotations

import math
import re

_MEMORY_UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def cpu_millis(quantity: str) -> int:
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return math.ceil(float(quantity) * 1000)


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"([0-9]+)([KMGT]i?)?", quantity)
    if match is None:
        raise ValueError(f"memory quantity {quantity!r} is not a Kubernetes quantity like 512Mi")
    return int(match[1]) * _MEMORY_UNITS[match[2] or ""]
