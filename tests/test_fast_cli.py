"""A text query on the cached OpenVINO path answers without importing torch or cn_clip, compiling the text
tower alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, TINY_MODEL

QUERY = """
import json, sys
from searchcore import cli
from searchcore.models.openvino.towers import OpenVINOTowers
served = []
serve = OpenVINOTowers._serve
OpenVINOTowers._serve = lambda self, tower, *rest: served.append(tower) or serve(self, tower, *rest)
code = cli.main(["search", "红色的圆形", "--json", "--top-k", "5"])
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "cn_clip": "cn_clip" in sys.modules,
                  "compiled": served}), file=sys.stderr)
"""


def _query(env: dict[str, str]) -> tuple[list[dict], dict]:
    done = subprocess.run([sys.executable, "-c", QUERY], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


@pytest.fixture()
def library(tmp_path: Path, dataset: Path) -> dict[str, str]:
    """A library of the valid split, built by the CLI in a fresh process with fresh model caches."""
    model = tmp_path / "tiny.pt"
    shutil.copy(TINY_MODEL, model)
    env = {**os.environ, "SEARCHCORE_MODEL": str(model), "SEARCHCORE_MODEL_DIR": str(tmp_path / "models"),
           "SEARCHCORE_MILVUS_URI": str(tmp_path / "milvus.db"), "SEARCHCORE_DB_URL": str(tmp_path / "images.db"),
           "SEARCHCORE_BACKEND": "openvino", "SEARCHCORE_PRECISION": "auto", "SEARCHCORE_DEVICE": "cpu",
           "SEARCHCORE_LIBRARY": "fast"}
    done = subprocess.run([sys.executable, "-m", "searchcore.cli", "ingest", str(dataset), "--split", "valid"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return env


def test_cached_text_query_does_not_import_torch(library: dict[str, str]) -> None:
    first, loaded = _query(library)
    second, fast = _query(library)
    assert loaded["code"] == fast["code"] == 0
    assert fast == {"code": 0, "torch": False, "cn_clip": False, "compiled": ["text"]}
    assert loaded["compiled"] == ["text"]  # the image tower is compiled only for image work (search, ingest)
    assert [hit["image_id"] for hit in second] == [hit["image_id"] for hit in first]
    assert [hit["score"] for hit in second] == pytest.approx([hit["score"] for hit in first], abs=1e-6)
    assert all(hit["captions"] == ["红色的圆形"] for hit in second)


def test_changed_weights_are_loaded_again(library: dict[str, str], tmp_path: Path) -> None:
    _query(library)  # now cached
    model = Path(library["SEARCHCORE_MODEL"])
    model.write_bytes(model.read_bytes())  # same content, new mtime: the spec can no longer be trusted
    results, state = _query(library)
    assert state["torch"] is True  # the weights were read again to learn their spec
    assert results and results[0]["captions"] == ["红色的圆形"]
    _, again = _query(library)
    assert again["torch"] is False
