"""How a served model version is written for people, in commits, records and tables alike."""

from __future__ import annotations


def shown_version(version: object) -> str:
    """`v3`, or `nothing` where no version serves (before the first promotion)."""
    return f"v{version}" if version is not None else "nothing"
