"""Bearer tokens on scoring and /metrics, against the server process as `modelyard serve` and the
images start it: refused without a token, let in with any of several, a rotated folder taken
without a restart, refusals counted, probes open, no token in the log."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from modelyard.contracts.variables import AUTH_METRICS_FILE, AUTH_SCORING_PREFIX

from tests.helpers import DELETE, edit_environment
from tests.serving.helpers import Load, Server, call, records, score

ALICE, BOB, NEXT = "alice-token-0123456789", "bob-token-9876543210", "rotated-token-555"
SCRAPER = "prometheus-token-abcdef"


def write_token(folder: Path, name: str, value: str) -> None:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o400)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_scoring_and_metrics_need_their_own_tokens_and_a_rotation_needs_no_restart(
    server: Callable[..., Server], local_model_a: Path, model_a: tuple[object, pd.DataFrame],
    tmp_path: Path,
) -> None:  # fmt: skip
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    write_token(tokens, AUTH_SCORING_PREFIX + "alice", ALICE)
    write_token(tokens, AUTH_SCORING_PREFIX + "bob", BOB)
    write_token(tokens, AUTH_METRICS_FILE, SCRAPER)
    served = server(str(local_model_a), auth_dir=str(tokens))
    served.wait_ready()
    row = {"dataframe_records": records(model_a[1])[:1]}

    status, answer, head = score(served.url, row)
    assert status == 401 and "no bearer token" in answer["message"]
    assert head["www-authenticate"] == 'Bearer realm="modelyard"'
    status, answer, head = score(served.url, row, bearer("not-a-token"))
    assert status == 401 and 'error="invalid_token"' in head["www-authenticate"]
    status, answer, _ = score(served.url, row, {"Authorization": f"Basic {ALICE}"})
    assert status == 401
    for token in (ALICE, BOB):
        status, answer, _ = score(served.url, row, bearer(token))
        assert status == 200 and len(answer["predictions"]) == 1
    # Probes stay open; /version says the server asks for tokens.
    for path in ("/ping", "/health", "/version"):
        assert call(served.url, "GET", path)[0] == 200, path
    assert json.loads(call(served.url, "GET", "/version")[2])["auth"] == "bearer"
    # /metrics: its own token only (a scoring token is not a scraping token, nor the reverse).
    assert call(served.url, "GET", "/metrics")[0] == 401
    assert call(served.url, "GET", "/metrics", headers=bearer(ALICE))[0] == 401
    assert score(served.url, row, bearer(SCRAPER))[0] == 401
    status, _, exposition = call(served.url, "GET", "/metrics", headers=bearer(SCRAPER))
    assert status == 200
    refused = {
        tuple(re.findall(r'(?:route|reason)="(\w+)"', line)): float(line.split(" ")[1])
        for line in exposition.decode().splitlines()
        if line.startswith("modelyard_unauthorized_requests_total{")
    }
    # No header and a Basic one are missing bearer tokens; a wrong one and the scraper's invalid.
    assert refused == {
        ("missing", "invocations"): 2, ("invalid", "invocations"): 2,
        ("missing", "metrics"): 1, ("invalid", "metrics"): 1,
    }  # fmt: skip

    # Rotation under load: the new token added, clients moved over, the old one removed; no
    # request fails and the server is the same process throughout.
    pid_before = served.process.pid
    workers_before = served.status().get("workers")
    with Load(served.url, records(model_a[1])[:20], threads=2, headers=bearer(BOB)) as load:
        write_token(tokens, AUTH_SCORING_PREFIX + "next", NEXT)
        deadline = time.monotonic() + 10
        while score(served.url, row, bearer(NEXT))[0] != 200:
            assert time.monotonic() < deadline, "the new token was never accepted"
            time.sleep(0.2)
        # The clients move over at once: a worker that had not read the folder yet reads it
        # at the new token's first use.
        load.headers = bearer(NEXT)
        time.sleep(1)
        os.unlink(tokens / (AUTH_SCORING_PREFIX + "bob"))
        deadline = time.monotonic() + 10
        while score(served.url, row, bearer(BOB))[0] != 401:
            assert time.monotonic() < deadline, "the removed token is still accepted"
            time.sleep(0.2)
        time.sleep(1)
    assert load.failures == [] and sum(load.versions.values()) > 0
    assert served.process.poll() is None and served.process.pid == pid_before
    assert served.status().get("workers") == workers_before
    assert score(served.url, row, bearer(ALICE))[0] == 200

    log = served.log()
    assert "tokens read from" in log and "alice" in log  # names are logged, values never
    for token in (ALICE, BOB, NEXT, SCRAPER):
        assert token not in log


def test_a_token_added_is_accepted_at_its_first_use_by_a_worker_that_has_not_read_it_yet(
    tmp_path: Path,
) -> None:
    """What each worker does between its reads of the folder (every second, later when it is
    busy): a caller already moved to a new token is not refused by the worker it lands on."""
    from modelyard.ml.serving.auth import Guard

    write_token(tmp_path, AUTH_SCORING_PREFIX + "bob", BOB)
    guard = Guard(str(tmp_path))
    assert guard.check(f"Bearer {NEXT}") is not None
    write_token(tmp_path, AUTH_SCORING_PREFIX + "next", NEXT)
    assert guard.check(f"Bearer {NEXT}") is None and guard.check(f"Bearer {BOB}") is None
    refused = guard.check("Bearer not-a-token")  # the folder is read again only after a change
    assert refused is not None and refused.reason == "invalid"


def test_without_a_token_folder_the_server_is_open_and_says_so(
    server: Callable[..., Server], local_model_a: Path, model_a: tuple[object, pd.DataFrame],
) -> None:  # fmt: skip
    served = server(str(local_model_a))
    served.wait_ready()
    row = {"dataframe_records": records(model_a[1])[:1]}
    assert score(served.url, row)[0] == 200
    assert call(served.url, "GET", "/metrics")[0] == 200
    assert json.loads(call(served.url, "GET", "/version")[2])["auth"] == "open"
    assert "scoring and /metrics are open to anyone" in served.log()


def test_a_token_folder_without_tokens_refuses_every_scoring_request(
    server: Callable[..., Server], local_model_a: Path, model_a: tuple[object, pd.DataFrame],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Fail closed: a Secret mounted empty is not an open server."""
    empty = tmp_path / "empty"
    empty.mkdir()
    served = server(str(local_model_a), auth_dir=str(empty))
    served.wait_ready()
    row = {"dataframe_records": records(model_a[1])[:1]}
    assert score(served.url, row, bearer("anything"))[0] == 401
    assert call(served.url, "GET", "/metrics", headers=bearer("anything"))[0] == 401
    assert "every scoring request is refused" in served.log()


def test_a_local_server_of_an_environment_with_tokens_gets_them_from_their_variables(
    environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process platform: the secrets' values come from their variables (secret_env_var),
    written as 0400 files the server reads; a missing one is named, nothing is started."""
    from modelyard.contracts.environment import load_environment, secret_env_var
    from modelyard.pipelines.deploy import serve_options
    from modelyard.pipelines.errors import PipelineError

    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    edit_environment(environments, "staging", {
        "serving.platform": "process",
        "serving.auth": {"tokens": {"ci": {"secure": "v1:a"}, "web": {"secure": "v1:b"}},
                         "metricsToken": {"secure": "v1:c"}},
    })  # fmt: skip
    staging = load_environment("staging")
    carriers = {
        "scoring.ci": secret_env_var("serving.auth.tokens.ci"),
        "scoring.web": secret_env_var("serving.auth.tokens.web"),
        "metrics": secret_env_var("serving.auth.metricsToken"),
    }
    assert carriers["scoring.ci"] == "MODELYARD_SECRET_SERVING_AUTH_TOKENS_CI"
    monkeypatch.setenv(carriers["scoring.ci"], ALICE)
    with pytest.raises(PipelineError) as refused:
        serve_options(staging)
    assert carriers["scoring.web"] in str(refused.value) and carriers["metrics"] in str(
        refused.value
    )
    assert "Pulumi.staging.yaml" in str(refused.value)
    monkeypatch.setenv(carriers["scoring.web"], BOB)
    monkeypatch.setenv(carriers["metrics"], SCRAPER)
    folder = Path(serve_options(staging).auth_dir)
    assert {p.name: (p.read_text(), p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        "scoring.ci": (ALICE, 0o400), "scoring.web": (BOB, 0o400), "metrics": (SCRAPER, 0o400),
    }  # fmt: skip
    # A token taken out of the file stops working: its file goes at the next start.
    edit_environment(environments, "staging", {"serving.auth.tokens.web": DELETE})
    serve_options(load_environment("staging"))
    assert sorted(p.name for p in folder.iterdir()) == ["metrics", "scoring.ci"]
