"""On Milvus Lite, keyword searches answered from the in-process copy of the text index (stores/text_copy.py) are
Lite's own BM25 results, and the copy follows every write.

Lite scores each segment with that segment's own statistics, so the comparison with Lite is made on a library of
one segment; across segments, replacements and deletions the copy is compared with BM25 computed here from the
rows that remain, the textbook way (the whole library's statistics, as a Milvus server keeps them).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from searchcore.errors import BackendUnavailableError
from searchcore.stores.filters import Filters
from searchcore.stores.text_copy import K1, B
from searchcore.stores.text_index import TextHit, TextIndex, _encoded, contains_all, index_terms, normalise, query_terms
from searchcore.stores.vectors import MilvusVectorStore

LIB = "words"
WORDS = ["会议室", "三楼", "火锅", "食材", "超市", "小心", "地滑", "WiFi", "密码", "iPhone 15", "出口", "營業", "時間",
         "咖啡", "特价", "欢迎", "光临", "停车场", "B2", "电梯", "禁止", "吸烟", "8折", "早餐", "会員"]


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.sample(WORDS, rng.randint(2, 5))) + ("\n" + "".join(rng.sample(WORDS, 2)) if i % 3 else "")
            for i in range(n)]


def attrs(n: int) -> list[tuple[str, int]]:
    return [(f"{'ab'[i % 2]}/{i:04d}.jpg", 0 if i % 5 == 0 else 1_600_000_000 + 86_400 * i) for i in range(n)]


def fragments(library: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = rng.choice(library).replace("\n", "")
        start = rng.randrange(len(text) - 1)
        out.append(text[start:start + rng.randint(2, 6)])
    return [*out, "wifi 密码", "營業時間", "b2 电梯", "没有这句话", "15"]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[TextIndex, TextIndex]]:
    """The text index searched from its copy, and one on the same Lite file that always asks Milvus."""
    uri = str(tmp_path / "milvus.db")
    store, lite = MilvusVectorStore(uri), MilvusVectorStore(uri, exact_copy=False)
    yield TextIndex(store), TextIndex(lite)
    lite.close()
    store.close()


def by_id(hits: list[TextHit]) -> dict[int, tuple[float, bool]]:
    return {h.image_id: (h.score, h.full) for h in hits}


def assert_same(mine: list[TextHit], theirs: dict[int, tuple[float, bool]] | list[TextHit]) -> None:
    """The same ids, scores within float rounding (Lite scores in float32), the same full matches; and the copy's
    order is full matches first, then by score."""
    expected = theirs if isinstance(theirs, dict) else by_id(theirs)
    got = by_id(mine)
    assert got.keys() == expected.keys()
    for image_id, (score, full) in got.items():
        assert score == pytest.approx(expected[image_id][0], rel=1e-5), image_id
        assert full == expected[image_id][1], image_id
    keys = [(not h.full, -h.score) for h in mine]
    assert all(a <= (b[0], b[1] + 1e-9) for a, b in zip(keys, keys[1:]))


def textbook_bm25(rows: dict[int, str], query: str) -> dict[int, tuple[float, bool]]:
    """BM25 over the rows as they stand (k1, b and IDF as Milvus Lite defines them), whole-library statistics."""
    docs = {i: Counter(_encoded(index_terms(t)).split()) for i, t in rows.items()}
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    words = normalise(query).split()
    out = {}
    for term, weight in Counter(_encoded(query_terms(query)).split()).items():
        holders = [i for i, c in docs.items() if term in c]
        idf = math.log((len(docs) - len(holders) + 0.5) / (len(holders) + 0.5) + 1)
        for i in holders:
            tf, dl = docs[i][term], sum(docs[i].values())
            score = out.get(i, (0.0, False))[0] + weight * idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))
            out[i] = (score, contains_all(rows[i], words))
    return out


def test_copy_scores_as_lite_on_one_segment(stores: tuple[TextIndex, TextIndex]) -> None:
    index, lite = stores
    library = texts(400, 1)
    for start in range(0, 400, 100):
        index.upsert(LIB, list(range(start, start + 100)), library[start:start + 100], attrs(400)[start:start + 100])
    index.flush(LIB)
    assert index.copy_status(LIB) == "ready" and lite.copy_status(LIB) == "off"
    queries = fragments(library, 80, 2)
    mine, theirs = index.search_many(LIB, queries, 1000), lite.search_many(LIB, queries, 1000)
    assert sum(len(h) for h in mine) > 2000  # the queries do find things
    for query, got, expected in zip(queries, mine, theirs):
        assert_same(got, expected)
        assert got[:1] == expected[:1] or got[0].score == pytest.approx(expected[0].score, rel=1e-5), query
    folder = Filters.parse(folder="a", since="2020-09-14")
    for query in queries[:20]:
        got, expected = index.search(LIB, query, 1000, folder), lite.search(LIB, query, 1000, folder)
        assert_same(got, expected)
        assert all(h.image_id % 2 == 0 and h.image_id % 5 for h in got)


def test_copy_follows_writes_as_textbook_bm25(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    store = MilvusVectorStore(uri)
    index = TextIndex(store)
    rows: dict[int, str] = {}
    library = texts(600, 3)
    for n, start in enumerate(range(0, 600, 150)):  # several segments and a memtable
        ids = list(range(start, start + 150))
        index.upsert(LIB, ids, library[start:start + 150], attrs(600)[start:start + 150])
        rows.update(zip(ids, library[start:start + 150]))
        if n % 2 == 0:
            index.flush(LIB)
    replaced = texts(60, 4)
    index.upsert(LIB, list(range(0, 600, 10)), replaced, attrs(60))
    rows.update(zip(range(0, 600, 10), replaced))
    index.upsert(LIB, [3, 7], ["", "   "], attrs(2))  # empty text: removed
    index.delete(LIB, list(range(1, 600, 7)))
    for gone in [3, 7, *range(1, 600, 7)]:
        rows.pop(gone, None)
    assert sorted(store.text_copies.ready(LIB).ids()) == sorted(rows)  # type: ignore[union-attr]
    assert index.count(LIB) == len(rows)
    queries = fragments(list(rows.values()), 60, 5)
    for query, got in zip(queries, index.search_many(LIB, queries, 1000)):
        assert_same(got, textbook_bm25(rows, query))
    store.close()

    again = MilvusVectorStore(uri)  # a new process loads the copy back from Milvus: the same answers
    try:
        reloaded = TextIndex(again)
        assert reloaded.copy_status(LIB) == "absent"
        assert reloaded.wait_for_copy(LIB, timeout=120)
        for query, got in zip(queries, reloaded.search_many(LIB, queries, 1000)):
            assert_same(got, textbook_bm25(rows, query))
    finally:
        again.close()


def test_searches_use_the_copy_and_a_failed_write_forgets_it(stores: tuple[TextIndex, TextIndex],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    index, lite = stores
    library = texts(200, 6)
    index.upsert(LIB, list(range(200)), library, attrs(200))
    client = index._store._client  # type: ignore[attr-defined]
    expected = lite.search(LIB, "火锅食材", 50)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Milvus is not asked while the copy is ready")

    monkeypatch.setattr(client, "search", refuse)
    assert_same(index.search(LIB, "火锅食材", 50), expected)
    monkeypatch.setattr(client, "upsert", refuse)
    with pytest.raises(BackendUnavailableError):
        index.upsert(LIB, [1], ["停车场"], attrs(1))
    assert index.copy_status(LIB) != "ready"  # the write's outcome is unknown: the copy is forgotten
    monkeypatch.undo()
    assert index.wait_for_copy(LIB, timeout=120)
    assert_same(index.search(LIB, "火锅食材", 50), lite.search(LIB, "火锅食材", 50))


def test_dropping_the_index_forgets_its_copy(stores: tuple[TextIndex, TextIndex]) -> None:
    index, _ = stores
    index.upsert(LIB, [1, 2], ["会议室三楼", "火锅食材超市"], attrs(2))
    assert [h.image_id for h in index.search(LIB, "议室三", 10)] == [1]
    index.drop(LIB)
    assert index.copy_status(LIB) == "absent"
    assert index.search(LIB, "议室三", 10) == []
    index.upsert(LIB, [5], ["议室三号"], attrs(1))
    assert [h.image_id for h in index.search(LIB, "议室三", 10)] == [5]


def test_check_finds_a_copy_that_drifted_and_loads_it_again(stores: tuple[TextIndex, TextIndex]) -> None:
    index, lite = stores
    index.upsert(LIB, list(range(50)), texts(50, 8), attrs(50))
    assert index.check_copy(LIB) is None
    copies = index._store.text_copies
    assert copies is not None
    drifted = copies.ready(LIB)
    assert drifted is not None
    drifted.delete([3])  # as if a write had reached Milvus and not the copy
    drifted.upsert([4], ["停车场"], [["x"]], [("a/0004.jpg", 0)])
    problem = index.check_copy(LIB)
    assert problem is not None and "1 missing from the copy" in problem and "1 differ" in problem
    assert copies.ready(LIB) is not drifted and index.check_copy(LIB) is None
    assert_same(index.search(LIB, "火锅", 100), lite.search(LIB, "火锅", 100))
    assert lite.check_copy(LIB) is None  # no copy to check where searches go to Milvus
