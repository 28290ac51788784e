"""The check that MLflow answers finds the credentials where MLflow's own client does: the
variables, else ~/.mlflow/credentials (how training and serving pods get them, from a Secret)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from modelyard.ml.tracking import TrackingUnavailable, check_server

EXPECTED = "Basic " + base64.b64encode(b"trainer:s3cret").decode()


class _AuthenticatedMlflow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == EXPECTED
        body = b'{"experiments": []}' if ok else b"{}"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _AuthenticatedMlflow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    return tmp_path


def test_the_credentials_file_is_used_when_no_variable_is_set(server: str, home: Path) -> None:
    with pytest.raises(TrackingUnavailable, match="refused the credentials"):
        check_server(server)
    (home / ".mlflow").mkdir()
    (home / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = trainer\nmlflow_tracking_password = s3cret\n"
    )
    check_server(server)


def test_the_variables_win_over_the_file(
    server: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / ".mlflow").mkdir()
    (home / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = someone\nmlflow_tracking_password = else\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    check_server(server)
