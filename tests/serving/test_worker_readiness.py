"""A server is called ready only once every worker listens: a client told "ready" is never refused
a connection (a worker used to ack its first routing while its socket was not yet open)."""

from __future__ import annotations

from pathlib import Path

import orjson
from modelyard.ml.serving.app import ScoringApp
from modelyard.ml.serving.routing import Routing, VersionRef, write_routing
from modelyard.ml.serving.worker import RoutingFollower, WorkerConfig


def _ack(config: WorkerConfig) -> dict[str, object] | None:
    acks = list(config.acks_dir.glob("*")) if config.acks_dir.exists() else []
    return orjson.loads(acks[0].read_bytes()) if acks else None


def test_a_worker_acks_its_first_routing_only_once_it_listens(
    local_model_a: Path, tmp_path: Path
) -> None:
    config = WorkerConfig(host="127.0.0.1", port=0, state_dir=str(tmp_path), compile_models=False)
    follower = RoutingFollower(ScoringApp(str(tmp_path / "metrics"), None, 1000), config)
    model = VersionRef(name="churn-a", version="1", path=str(local_model_a))

    write_routing(config.routing_path, Routing(generation=1, stable=model))
    follower.poll()
    assert follower.settled.is_set(), "the model is loaded: the worker may open its socket"
    assert _ack(config) is None, "acked before listening: the server would be called ready"

    follower.now_listening()
    assert _ack(config) == {"generation": 1, "ok": True}

    # Once it listens, each later routing is acked as soon as it is applied.
    write_routing(config.routing_path, Routing(generation=2, stable=model, message="again"))
    follower.poll()
    assert _ack(config) == {"generation": 2, "ok": True}
