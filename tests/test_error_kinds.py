"""Errors with an identity: every error searchcore raises is a kind from one table, worded in both languages.

The table is checked whole (both languages, the same fields), the source is scanned so that no raise can pass
a bare message instead of a kind and its fields, and real errors from a real engine are rendered in both.
"""

from __future__ import annotations

import ast
import pickle
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from searchcore.engine import Engine
from searchcore.errors import MESSAGES, LibraryError, MassRemovalError, QueryError, SearchcoreError
from searchcore.web.api import create_app
from searchcore.web.ui_text import error_text

PACKAGE = Path(__file__).resolve().parent.parent / "searchcore"


def fields(template: str) -> set[str]:
    """The names a str.format template fills in."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_every_kind_is_worded_in_english_and_chinese(kind: str) -> None:
    english, chinese = MESSAGES[kind]
    assert english.strip() and english != chinese, f"{kind}: the English wording is missing"
    assert has_chinese(chinese), f"{kind}: the Chinese wording is missing or not Chinese: {chinese!r}"
    # The Chinese may leave a field out, but must not need one that a raise of the kind does not give.
    assert fields(chinese) <= fields(english), f"{kind}: Chinese uses fields the English lacks"


def error_classes(trees: dict[Path, ast.Module]) -> dict[str, ast.ClassDef]:
    """SearchcoreError and every class that derives from it, across the package, by name."""
    every = {node.name: node for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    known = {"SearchcoreError"}
    while True:
        found = {name for name, node in every.items()
                 if any(isinstance(base, ast.Name) and base.id in known for base in node.bases)}
        if found <= known:
            return {name: every[name] for name in known}
        known |= found


def own_constructor(node: ast.ClassDef) -> ast.FunctionDef | None:
    """A subclass's own __init__, which takes its fields and passes a kind to super().__init__ (the base's own
    __init__ is the one that takes a kind)."""
    if node.name == "SearchcoreError":
        return None
    return next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)


def kind_calls(tree: ast.Module, classes: dict[str, ast.ClassDef]) -> Iterator[ast.Call]:
    """Every call that names a kind: a class's constructor (unless the class has its own, which takes fields),
    and super().__init__ inside such an own constructor."""
    constructors = {own_constructor(node) for node in classes.values()} - {None}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in classes and not own_constructor(classes[node.func.id]):
            yield node
    for function in constructors:
        if function is not None and function in set(ast.walk(tree)):
            for node in ast.walk(function):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "__init__" and isinstance(node.func.value, ast.Call)
                        and isinstance(node.func.value.func, ast.Name) and node.func.value.func.id == "super"):
                    yield node


def kinds_named(node: ast.expr) -> list[str] | None:
    """The kinds a kind argument can be: a string literal, or a conditional between two; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = kinds_named(node.body), kinds_named(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def test_every_error_raised_in_searchcore_is_a_kind_with_its_fields() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}
    classes = error_classes(trees)
    problems, used = [], set()
    for path, tree in trees.items():
        where = path.relative_to(PACKAGE.parent)
        for raised in ast.walk(tree):
            if isinstance(raised, ast.Raise) and isinstance(raised.exc, ast.Name) and raised.exc.id in classes:
                problems.append(f"{where}:{raised.lineno}: raise {raised.exc.id} without a kind")
        for node in kind_calls(tree, classes):
            kinds = kinds_named(node.args[0]) if len(node.args) == 1 else None
            if kinds is None:
                problems.append(f"{where}:{node.lineno}: {ast.unparse(node)[:100]} is given no literal kind")
                continue
            given = {keyword.arg for keyword in node.keywords}
            for kind in kinds:
                used.add(kind)
                if kind not in MESSAGES:
                    problems.append(f"{where}:{node.lineno}: kind {kind!r} has no entry in errors.MESSAGES")
                elif lacking := fields(MESSAGES[kind][0]) - given:
                    problems.append(f"{where}:{node.lineno}: {kind} lacks the fields {sorted(lacking)}")
    assert not problems, "\n".join(problems)
    assert len(used) > 50, "the scan found too few raises: is it reading the package?"
    assert not set(MESSAGES) - used, f"table entries no code raises: {sorted(set(MESSAGES) - used)}"


def test_a_missing_library_from_a_real_engine_in_both_languages(engine: Engine) -> None:
    with pytest.raises(LibraryError) as raised:
        engine.search_text("红色的圆形", 5, library="nowhere")
    error = raised.value
    assert (error.kind, error.params) == ("library_empty", {"library": "nowhere"})
    assert str(error) == "library 'nowhere' does not exist or is empty; ingest images into it first"
    assert error_text("en", error) == str(error)
    assert error_text("zh", error) == "图库 nowhere 不存在或为空：请先在“建库”中导入图片"


@pytest.mark.parametrize("query, top_k, kind, params, english, chinese", [
    ("   ", 5, "query_empty", {}, "the query is empty: type a description, e.g. 红色的圆形",
     "搜索内容为空：请输入描述，例如 红色的圆形"),
    ("猫", 5000, "top_k_range", {"max_top_k": 1000, "top_k": 5000}, "top_k must be from 1 to 1000, got 5000",
     "结果数必须是 1 到 1000 之间的整数，收到 5000"),
    ("猫", "many", "top_k_not_whole", {"max_top_k": 1000, "value": "many"},
     "top_k must be a whole number from 1 to 1000, got 'many'", "结果数必须是 1 到 1000 之间的整数，收到 'many'"),
])
def test_a_bad_query_in_both_languages(engine: Engine, query: str, top_k: object, kind: str,
                                       params: dict[str, object], english: str, chinese: str) -> None:
    with pytest.raises(QueryError) as raised:
        engine.search_text(query, top_k)
    assert (raised.value.kind, raised.value.params) == (kind, params)
    assert (raised.value.render("en"), raised.value.render("zh")) == (english, chinese)


def test_an_error_inside_an_error_is_worded_in_the_same_language(engine: Engine) -> None:
    with pytest.raises(QueryError) as raised:
        engine.search_image(b"GIF89a but not really", 5)
    assert str(raised.value) == "the query image cannot be used: data is not an image of a known format"
    assert raised.value.render("zh") == "无法使用这张查询图片：数据不是已知格式的图片"
    assert raised.value.to_json() == {"kind": "query_image_unusable", "params": {
        "reason": {"kind": "image_unknown_format", "params": {}}}}


def test_the_api_returns_the_kind_and_its_fields_beside_the_message(engine: Engine) -> None:
    with TestClient(create_app(engine)) as http:
        missing = http.post("/api/search", json={"text": "红色的圆形", "library": "nosuch"})
        invalid = http.get("/api/images/bad_name__text/1")
        date = http.post("/api/search", json={"text": "红色的圆形", "since": "2024-02-30"})
    assert missing.status_code == 404 and missing.json() == {
        "detail": "library 'nosuch' does not exist or is empty; ingest images into it first",
        "kind": "library_empty", "params": {"library": "nosuch"}}
    assert invalid.status_code == 400 and invalid.json()["kind"] == "library_name_reserved"
    assert invalid.json()["params"] == {"name": "bad_name__text", "suffix": "__text"}
    assert date.status_code == 400 and date.json() == {
        "detail": "since must be a date as YYYY-MM-DD, got '2024-02-30'", "kind": "since_invalid",
        "params": {"value": "2024-02-30"}}


def test_an_error_keeps_its_kind_through_pickling() -> None:
    # A Ray worker's error crosses a process boundary pickled; the driver must see the same kind and fields.
    error = LibraryError("image_not_in_library", image_id=7, library="photos")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is LibraryError
    assert (copy.kind, copy.params, str(copy)) == (error.kind, error.params, "image 7 is not in library 'photos'")
    # A kind whose class takes its fields in a constructor of its own comes back whole, attributes and all.
    refused = pickle.loads(pickle.dumps(MassRemovalError("/photos", 40, 40, 0, 0.5)))
    assert (refused.kind, refused.gone, refused.found) == ("mass_removal_empty", 40, 0)
    assert refused.render("zh").startswith("拒绝删除：/photos 中记录的 40 张图片有 40 张不见了，而文件夹是空的")


def test_a_kind_missing_from_the_table_is_refused_when_raised() -> None:
    with pytest.raises(KeyError, match="no_such_kind"):
        SearchcoreError("no_such_kind")
