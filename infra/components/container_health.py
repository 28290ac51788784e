"""The health check the platform's containers share: their port answers a TCP connection.

The images carry no curl; bash's /dev/tcp needs nothing else, and a port that accepts
connections is what the restart policy and the policy pack's probe rule care about."""

from __future__ import annotations

from typing import Any


def port_open(port: int, start_period: str = "60s") -> dict[str, Any]:
    return {
        "test": ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
        "interval": "15s",
        "timeout": "5s",
        "retries": 3,
        "start_period": start_period,
    }
