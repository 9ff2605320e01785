"""Who may use the app: the --auth users, and whether ingest and drop are open (--read-only, --share)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from searchcore.errors import ConfigError


@dataclass(frozen=True)
class Access:
    """Who may change libraries: writes are closed when read-only, or when shared without --auth."""

    users: tuple[tuple[str, str], ...] = ()
    read_only: bool = False
    share: bool = False

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
