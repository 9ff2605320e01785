"""What every tab's handlers share: the engine, access and metrics they work with, the write check,
toasts and the progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from searchcore.engine import Engine
from searchcore.web.auth import Access
from searchcore.web.metrics import Metrics
from searchcore.web.ui_text import translate


class Handlers:
    """The engine, access and metrics one app's handlers share; each tab's handlers derive from it."""

    def __init__(self, engine: Engine, access: Access | None = None, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.access = access or Access()
        self.metrics = metrics or Metrics()

    def _require_write(self, action: str, lang: str) -> None:
        # The buttons are disabled too, but anyone can call the endpoint directly.
        if self.access.refusal:
            raise gr.Error(translate(lang, "disabled", action=translate(lang, action), reason=self.access.refusal),
                           title=translate(lang, "error_title"))


def warn(lang: str, key: str, **values: Any) -> None:
    """A warning toast, its title and text in the request's language."""
    gr.Warning(translate(lang, key, **values), title=translate(lang, "warning_title"))


def note(lang: str, key: str, **values: Any) -> None:
    """An info toast, its title and text in the request's language."""
    gr.Info(translate(lang, key, **values), title=translate(lang, "info_title"))


def throttled(progress: gr.Progress, lang: str, desc_key: str, unit_key: str,
              every: float = 0.25) -> Callable[[int, int | None], None]:
    """Engine progress (done, total) → the progress bar, at most a few updates a second."""
    last = 0.0
    desc, unit = translate(lang, desc_key), translate(lang, unit_key)

    def update(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            progress((done, total), desc=desc, unit=unit)

    return update
