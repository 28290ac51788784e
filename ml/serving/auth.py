"""Bearer tokens for scoring and for /metrics, read from files and read again when they change.

The tokens live in one folder (a Kubernetes Secret mounted into the pod, files uploaded into the
container): `scoring.NAME` files hold the tokens callers score with, several at once so one
rotates without downtime, and `metrics` holds the token Prometheus scrapes with. Each worker
re-reads the folder every second, and at once when a token it does not know arrives after the
folder changed, so a rotated Secret takes effect without a restart. Only
SHA-256 digests are kept in memory and compared in constant time; no token is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts.variables import AUTH_METRICS_FILE, AUTH_SCORING_PREFIX

log = logging.getLogger("modelyard.serving")

REALM = "modelyard"


@dataclass(frozen=True)
class Tokens:
    """What the folder held when it was last read: token digests, by purpose."""

    scoring: tuple[bytes, ...] = ()
    metrics: tuple[bytes, ...] = ()
    names: tuple[str, ...] = ()  # the scoring tokens' names, for the log (never the values)


@dataclass(frozen=True)
class Refusal:
    """Why a request is not let in: `missing` (no bearer token) or `invalid` (a wrong one)."""

    reason: str

    @property
    def message(self) -> str:
        if self.reason == "missing":
            return "no bearer token: send `Authorization: Bearer TOKEN`"
        return "the bearer token is not one this server accepts"

    @property
    def challenge(self) -> bytes:
        """The WWW-Authenticate value RFC 6750 asks for."""
        if self.reason == "missing":
            return f'Bearer realm="{REALM}"'.encode()
        return f'Bearer realm="{REALM}", error="invalid_token"'.encode()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_tokens(folder: Path) -> Tokens:
    """The tokens in `folder`; an unreadable or empty file counts as no token."""
    scoring: list[bytes] = []
    names: list[str] = []
    metrics: list[bytes] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        log.error("cannot read the token folder %s: %s", folder, exc)
        return Tokens()
    for path in entries:
        name = path.name
        if name != AUTH_METRICS_FILE and not name.startswith(AUTH_SCORING_PREFIX):
            continue  # a Secret volume's ..data links, anything else
        try:
            token = path.read_text().strip()
        except OSError as exc:
            log.error("cannot read token file %s: %s", path, exc)
            continue
        if not token:
            continue
        if name == AUTH_METRICS_FILE:
            metrics.append(_digest(token))
        else:
            scoring.append(_digest(token))
            names.append(name.removeprefix(AUTH_SCORING_PREFIX))
    return Tokens(tuple(scoring), tuple(metrics), tuple(names))


class Guard:
    """Lets a request in when it carries a valid bearer token; open without a folder."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder) if folder else None
        self._read: Tokens | None = None  # None: never read yet (the first read is logged)
        self._read_at: int | None = None  # the folder's mtime when it was last read
        self.refresh()

    @property
    def tokens(self) -> Tokens:
        return self._read or Tokens()

    @property
    def open(self) -> bool:
        return self.folder is None

    def refresh(self) -> None:
        """Read the folder again; say so when what it holds changed (names, never values)."""
        if self.folder is None:
            return
        self._read_at = _mtime(self.folder)  # before reading: a change meanwhile reads again
        tokens = read_tokens(self.folder)
        if tokens == self._read:
            return
        self._read = tokens
        log.info(
            "tokens read from %s: scoring %s; metrics %s",
            self.folder,
            ", ".join(tokens.names) or "none (every scoring request is refused)",
            "set" if tokens.metrics else "none (every /metrics request is refused)",
        )

    def check(self, authorization: str | None, for_metrics: bool = False) -> Refusal | None:
        """None when the request may go on, else why not."""
        if self.folder is None:
            return None
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return Refusal("missing")
        digest = _digest(presented.strip())
        if self._accepts(digest, for_metrics):
            return None
        # A token added since the last read: its callers may move over as soon as one worker
        # took it, so every worker reads the folder again at the token's first use rather than at
        # its next periodic read (a worker busy swapping in a compiled model gets there late).
        if _mtime(self.folder) != self._read_at:
            self.refresh()
            if self._accepts(digest, for_metrics):
                return None
        return Refusal("invalid")

    def _accepts(self, digest: bytes, for_metrics: bool) -> bool:
        allowed = self.tokens.metrics if for_metrics else self.tokens.scoring
        # Compare with every token, in constant time each: no early exit tells which matched.
        matched = False
        for known in allowed:
            matched |= hmac.compare_digest(digest, known)
        return matched


def _mtime(folder: Path) -> int | None:
    """Changes when a file is added to or removed from the folder, or a Kubernetes Secret
    volume swaps in a new version (it renames its `..data` link)."""
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return None
