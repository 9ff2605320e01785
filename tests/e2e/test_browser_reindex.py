"""Moving a library to another model from the Build tab, in a real headless Chromium: the progress line shows,
and the Search tab keeps answering with the old model until the library switches."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.web.auth import Access
from tests.support import Served, browser_page, write_tiny_checkpoint

pytestmark = pytest.mark.browser


class HeldEngine(Engine):
    """An engine whose reindex waits once it has encoded a few pictures, until the test lets it go on (so that
    the browser searches while it runs, however fast the machine)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.half_way, self.go_on = threading.Event(), threading.Event()

    def reindex(self, model: str, library: str | None = None, **kwargs: Any) -> Any:
        shown = kwargs.pop("progress", None)

        def hold(done: int, total: int | None) -> None:
            if shown is not None:
                shown(done, total)
            if done >= 8 and not self.half_way.is_set():
                self.half_way.set()
                self.go_on.wait(120)

        return super().reindex(model, library, progress=hold, **kwargs)


def test_the_build_tab_reindexes_while_the_search_tab_answers(settings: Settings, torch_encoder: Encoder,
                                                              dataset: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    model_b = write_tiny_checkpoint(tmp_path / "tiny_b.pt", 48, seed=3)
    engine = HeldEngine(settings.replace(library="shapes"), encoder=torch_encoder)
    served = Served(engine, Access())
    try:
        engine.ingest(dataset, split="train")
        old_top = engine.search_text("红色的圆形", 10)[0].image_id  # as the Search tab asks
        with browser_page(served.url, viewport={"width": 1280, "height": 1200}) as page:
            page.get_by_role("tab", name="Build").click()
            page.get_by_role("combobox", name="Library to move to another model").click()
            page.get_by_role("option", name="shapes").click()
            page.get_by_label("Model (name or checkpoint path)").fill(str(model_b))
            page.get_by_role("button", name="Reindex", exact=True).click()
            assert engine.half_way.wait(120), "the reindex started"
            status = page.locator("#reindex-status")
            expect(status).to_contain_text("Reindexing shapes to tiny_b@")
            expect(status).to_contain_text("encoding, 8/36 images (22%)")
            expect(status).to_contain_text("Searches still use tiny_clip@")

            page.get_by_role("tab", name="Search").click()
            query = page.get_by_label("Describe the picture")
            query.fill("红色的圆形")
            query.press("Enter")
            expect(page.locator("#status")).to_contain_text("36 results for “红色的圆形” in library shapes")
            assert f" · {old_top} · " in page.locator("#results .caption-label").first.inner_text()

            engine.go_on.set()
            page.get_by_role("tab", name="Build").click()
            expect(status).to_contain_text("Library shapes now uses tiny_b@")
            meta = engine.vectors.meta(engine.settings.library)
            assert meta is not None and meta.dim == 48
    finally:
        engine.go_on.set()
        served.stop()
        engine.close()
