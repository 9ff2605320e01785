"""What an ingest did (IngestReport): every stage adds to it, the runner hands it back, the front ends show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from searchcore.records import BadRecord


@dataclass
class IngestReport:
    """What an ingest did: added, already present, and every bad record with its reason; for a folder also
    what a re-scan found: files changed, unchanged (skipped unread), moved, removed (--sync) and missing."""

    library: str
    added: int = 0
    present: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    seconds: float = 0.0
    folder: bool = False
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    missing: int = 0
    videos: int = 0  # videos added or changed (each counted once in added or changed too)
    frames: int = 0  # their sampled frames, now searchable

    def summary(self) -> str:
        """One line: "library L: N added, M already present, K bad (T s)", with a folder's re-scan counts."""
        if not self.folder:
            return (f"library {self.library}: {self.added} added, {self.present} already present, "
                    f"{len(self.bad)} bad ({self.seconds:.1f}s)")
        line = (f"library {self.library}: {self.added} added, {self.changed} changed, {self.unchanged} unchanged, "
                f"{self.moved} moved, {self.removed} removed, {len(self.bad)} bad")
        if self.videos:
            line += f" ({self.videos} videos: {self.frames} frames)"
        if self.present:
            line += f", {self.present} copies of images already stored"
        if self.missing:
            line += f"; {self.missing} files missing from the folder (kept; --sync removes them)"
        return f"{line} ({self.seconds:.1f}s)"

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        data: dict[str, Any] = {"library": self.library, "added": self.added, "present": self.present,
                                "bad": [b.to_json() for b in self.bad], "seconds": round(self.seconds, 3)}
        if self.folder:
            data.update(changed=self.changed, unchanged=self.unchanged, moved=self.moved, removed=self.removed,
                        missing=self.missing, videos=self.videos, frames=self.frames)
        return data
