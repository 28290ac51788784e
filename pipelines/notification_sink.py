"""A local webhook receiver: where the embedded default's notifications land (and the tests')."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class NotificationSink:
    """Records every JSON body POSTed to it, in memory and optionally as JSON lines in a file."""

    def __init__(self, port: int = 0, journal: Path | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_error(400, "expected a JSON body")
                    return
                sink.bodies.append(body)
                if journal is not None:
                    with journal.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(body) + "\n")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # quiet: the journal is the log
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/modelyard"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
