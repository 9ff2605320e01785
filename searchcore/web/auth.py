"""Who may use the app: the --auth users, and whether ingest and drop are open (--read-only, --share)."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from searchcore.errors import ConfigError

# How long a video link the UI hands out works: long enough to watch a film in, paused.
VIDEO_LINK_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Access:
    """Who may change libraries: writes are closed when read-only, or when shared without --auth."""

    users: tuple[tuple[str, str], ...] = ()
    read_only: bool = False
    share: bool = False
    # Signs the UI's video links: the page's <video> fetches /api/videos itself, and with --auth the browser holds
    # Gradio's login cookie, not the API's basic-auth credentials. One key per process; a restart voids links.
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False, compare=False)

    @property
    def refusal(self) -> str | None:
        """Why write actions are closed, or None when they are open."""
        if self.read_only:
            return "this app runs read-only (--read-only)"
        if self.share and not self.users:
            return "this app is shared publicly without --auth"
        return None

    def allows(self, user: str, password: str) -> bool:
        """True for one of the configured users; every pair is compared, in constant time."""
        ok = False
        for name, secret in self.users:
            ok |= hmac.compare_digest(name.encode(), user.encode()) & hmac.compare_digest(secret.encode(),
                                                                                          password.encode())
        return ok

    def video_url(self, library: str, video_id: int, *, signed: bool = False, now: float | None = None) -> str:
        """The API's URL of a video file; signed (with --auth), it carries a token that stands in for the login
        for VIDEO_LINK_SECONDS, for this one video only."""
        url = f"/api/videos/{video_id}?library={library}"
        if not (signed and self.users):
            return url
        expires = int((time.time() if now is None else now) + VIDEO_LINK_SECONDS)
        return f"{url}&token={expires}.{self._mac(library, video_id, expires)}"

    def video_token_valid(self, token: str, library: str, video_id: int, now: float | None = None) -> bool:
        """Whether a video URL's token was signed here for this video and has not expired."""
        expires, _, mac = token.partition(".")
        if not (expires.isascii() and expires.isdigit()) or int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(mac, self._mac(library, video_id, int(expires)))

    def _mac(self, library: str, video_id: int, expires: int) -> str:
        return hmac.new(self.key, f"{library}/{video_id}/{expires}".encode(), "sha256").hexdigest()


def read_credentials(entries: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """user:password pairs from --auth values; "@FILE" reads one pair a line (# comments and blanks skipped)."""
    pairs = []
    for entry in entries:
        if entry.startswith("@"):
            path = Path(entry[1:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError("auth_file_unreadable", path=path, reason=exc.strerror) from None
            lines = [(f"{path} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)
                     if line.strip() and not line.strip().startswith("#")]
        else:
            lines = [("--auth", entry)]
        for where, line in lines:
            user, colon, password = line.partition(":")
            if not colon or not user or not password:
                raise ConfigError("auth_line_invalid", where=where)  # never echo what may be a password
            pairs.append((user, password))
    return tuple(pairs)
