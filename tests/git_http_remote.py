"""A real git remote for the tests: a bare repository served by git's own `git http-backend` (smart
HTTP) on 127.0.0.1, behind Basic authentication, that a test can stop, start again, and make
refuse pushes with a pre-receive hook. Never a mock of git."""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

NAME = "project.git"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class GitRemote:
    """The bare repository `root/project.git`, served at `url` while running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / NAME
        self.username = "modelyard-bot"
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{NAME}"

    def auth_env(self) -> dict[str, str]:
        """What makes `git` send the credentials, kept out of the URL and of .git/config."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
        }

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self._app, _Server, _QuietHandler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def refuse_pushes(self, message: str) -> None:
        hook = self.bare / "hooks" / "pre-receive"
        hook.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 1\n")
        hook.chmod(0o755)

    def move_under_every_push(self) -> None:
        """Another agent's commit lands on main just before each push is applied, so every push
        finds the branch moved (what two busy agents do to each other, made certain)."""
        hook = self.bare / "hooks" / "pre-receive"
        hook.write_text(
            "#!/bin/sh\n"
            "unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n"
            "tip=$(git rev-parse refs/heads/main)\n"
            "new=$(echo 'another agent' | GIT_AUTHOR_NAME=o GIT_AUTHOR_EMAIL=o@example.invalid "
            "GIT_COMMITTER_NAME=o GIT_COMMITTER_EMAIL=o@example.invalid "
            'git commit-tree "$tip^{tree}" -p "$tip")\n'
            'git update-ref refs/heads/main "$new" "$tip"\n'
        )
        hook.chmod(0o755)

    def accept_pushes(self) -> None:
        (self.bare / "hooks" / "pre-receive").unlink(missing_ok=True)

    def branch_log(self, branch: str = "main") -> list[str]:
        """`HASH SUBJECT` of each commit of the branch, newest first."""
        done = subprocess.run(
            ["git", "--git-dir", str(self.bare), "log", "--format=%H %s", branch],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.splitlines()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if environ.get("HTTP_AUTHORIZATION") != f"Basic {expected}":
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'),
                                                ("Content-Length", "0")])  # fmt: skip
            return [b""]
        body = _body(environ)
        cgi = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.username,
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
            "PATH": "/usr/bin:/bin",
        }
        if environ.get("HTTP_CONTENT_ENCODING"):
            cgi["HTTP_CONTENT_ENCODING"] = environ["HTTP_CONTENT_ENCODING"]
        if environ.get("HTTP_GIT_PROTOCOL"):
            cgi["GIT_PROTOCOL"] = environ["HTTP_GIT_PROTOCOL"]
        done = subprocess.run(["git", "http-backend"], input=body, env=cgi, capture_output=True,
                              check=False)  # fmt: skip
        blank = b"\r\n\r\n" if b"\r\n\r\n" in done.stdout else b"\n\n"
        head, _, payload = done.stdout.partition(blank)
        status, headers = "200 OK", []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name.strip(), value.strip()))
        start_response(status, headers)
        return [payload]


def _body(environ: dict[str, Any]) -> bytes:
    """The request body: Content-Length bytes, or a chunked body read to its end."""
    stream = environ["wsgi.input"]
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                stream.readline()
                return b"".join(chunks)
            chunks.append(stream.read(size))
            stream.readline()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return stream.read(length) if length else b""


@contextlib.contextmanager
def git_remote(folder: Path, seed: Path | None = None, branch: str = "main") -> Iterator[GitRemote]:
    """A served bare repository under `folder`, holding `seed`'s HEAD as `branch` if given."""
    folder.mkdir(parents=True, exist_ok=True)
    remote = GitRemote(folder)
    subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(remote.bare)], check=True)
    subprocess.run(["git", "--git-dir", str(remote.bare), "config", "http.receivepack", "true"],
                   check=True)  # fmt: skip
    if seed is not None:
        subprocess.run(["git", "push", "-q", str(remote.bare), f"HEAD:refs/heads/{branch}"],
                       cwd=seed, check=True)  # fmt: skip
    remote.start()
    try:
        yield remote
    finally:
        remote.stop()


class SshServer:
    """An OpenSSH server of the test's own on 127.0.0.1 (its own host key, one authorized client
    key, the machine's accounts): `ssh://USER@127.0.0.1:PORT/PATH` reaches a bare repository."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True)  # fmt: skip
        (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
        config = folder / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {folder / 'sshd.pid'}\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation folder
        self._process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                         stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}")

    def known_hosts_line(self) -> str:
        """What `ssh-keyscan -p PORT 127.0.0.1` prints for this server."""
        kind, key, *_ = (self.folder / "host_ed25519.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {kind} {key}"

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
