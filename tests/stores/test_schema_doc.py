"""docs/ARCHITECTURE.md's image-database schema is written from the code's `CREATE TABLE` statements.

The section between the schema markers is generated: `PYTHONPATH=. python -m tests.stores.test_schema_doc`
rewrites it, and the test fails, naming what differs, when a table, column, type or key in stores/sql.py is
not what the doc says (or the doc names one the code lacks).
"""

from __future__ import annotations

import difflib
import re
import sqlite3
import sys
from dataclasses import dataclass, field

from searchcore.stores.sql import ADDED_COLUMNS, FRAMES_INDEX, TABLE, MySQLDatabase, SQLiteDatabase
from tests.support import ROOT

DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN = "<!-- schema: written from stores/sql.py by `python -m tests.stores.test_schema_doc`; do not edit -->"
END = "<!-- schema end -->"
# What each table holds; a table the code adds fails the generation until it is described here.
PURPOSE = {
    "searchcore_images": "each image's bytes (a folder picture's thumbnail), metadata, captions, date, OCR text; "
                         "a video's frames (`video_id`, `time_s`) — `stores/images.py`",
    "searchcore_files": "each folder file as last ingested and the image it holds; the folders (`root`) a library "
                        "came from — `stores/folder_files.py`",
    "searchcore_videos": "each video file of a folder library, as ingested — `stores/videos.py`",
    "searchcore_library_state": "when each library last changed — `stores/sql.py`",
}


@dataclass
class Table:
    """One table as one dialect's statements define it."""

    columns: dict[str, str] = field(default_factory=dict)  # name -> its definition after the name, as written
    primary_key: tuple[str, ...] = ()
    indexes: list[str] = field(default_factory=list)  # "name (columns)"


def split_top(body: str) -> list[str]:
    """A column list split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    return [" ".join(p.split()) for p in [*parts, body[start:]] if p.strip()]


def parse(statements: list[str]) -> dict[str, Table]:
    """Tables, columns, keys and indexes of `CREATE TABLE` and `CREATE INDEX` statements."""
    tables: dict[str, Table] = {}
    for statement in (s.strip() for s in statements if s.strip()):
        if index := re.fullmatch(r"CREATE INDEX IF NOT EXISTS (\w+) ON (\w+) \((.*)\)", statement, re.S):
            tables[index[2]].indexes.append(f"{index[1]} ({index[3]})")
            continue
        create = re.fullmatch(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\)(?: CHARACTER SET \w+)?", statement, re.S)
        assert create, f"a statement this parser does not know: {statement[:60]}"
        table = tables[create[1]] = Table()
        for item in split_top(create[2]):
            if key := re.fullmatch(r"PRIMARY KEY \((.*)\)", item):
                table.primary_key = tuple(c.strip() for c in key[1].split(","))
            elif key := re.fullmatch(r"KEY (\w+) \((.*)\)", item):
                table.indexes.append(f"{key[1]} ({key[2]})")
            else:
                name, definition = item.split(" ", 1)
                if definition.endswith(" PRIMARY KEY"):
                    definition = definition.removesuffix(" PRIMARY KEY")
                    table.primary_key = (name,)
                table.columns[name] = definition
    return tables


def sqlite_statements() -> list[str]:
    return [*SQLiteDatabase.schema.split(";"), FRAMES_INDEX]


def mysql_statements() -> list[str]:
    return [MySQLDatabase.schema, *MySQLDatabase.extra_tables]


def schema_section(sqlite: list[str], mysql: list[str]) -> str:
    """The doc's schema section, from each dialect's statements."""
    lite, my = parse(sqlite), parse(mysql)
    lines = [BEGIN]
    for name, table in lite.items():
        other = my.get(name, Table())
        lines += ["", f"`{name}`: {PURPOSE[name]}. Primary key ({', '.join(table.primary_key)})."]
        indexes = [f"SQLite `{i}`" for i in table.indexes] + [f"MySQL `{i}`" for i in other.indexes]
        if indexes:
            lines[-1] += f" Indexes: {', '.join(indexes)}."
        lines += ["", "| column | SQLite | MySQL | older tables |", "|---|---|---|---|"]
        for column in [*table.columns, *(c for c in other.columns if c not in table.columns)]:
            added = f"added as {ADDED_COLUMNS[column]}" if name == TABLE and column in ADDED_COLUMNS \
                else ""
            cells = [f"`{column}`", table.columns.get(column, "—"), other.columns.get(column, "—"), added]
            lines.append(f"| {' | '.join(cells)} |")
    for name in my.keys() - lite.keys():
        lines += ["", f"`{name}`: MySQL only."]
    return "\n".join([*lines, "", END])


def doc_section(doc: str) -> str:
    """The doc's generated section, markers included ("" when it has none)."""
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), doc, re.S)
    return found[0] if found else ""


def drift(doc: str, sqlite: list[str], mysql: list[str]) -> list[str]:
    """How the doc's schema section differs from the one the statements give: the lines to add (+) and drop (-)."""
    have, want = doc_section(doc), schema_section(sqlite, mysql)
    if not have:
        return ["docs/ARCHITECTURE.md has no schema section (its markers are missing)"]
    return [line for line in difflib.unified_diff(have.splitlines(), want.splitlines(), "doc", "code", n=0, lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_schema_section_is_the_code_s_tables() -> None:
    problems = drift(DOC.read_text(), sqlite_statements(), mysql_statements())
    assert not problems, "run `python -m tests.stores.test_schema_doc`:\n" + "\n".join(problems)


def test_a_column_missing_from_the_doc_or_the_code_is_found() -> None:
    doc = DOC.read_text()
    without_thumb = "\n".join(line for line in doc.splitlines() if not line.startswith("| `thumb` |"))
    assert without_thumb != doc
    assert drift(without_thumb, sqlite_statements(), mysql_statements()) == [
        "+| `thumb` | INTEGER | INTEGER | added as INTEGER |"]

    grown = [s.replace("updated REAL NOT NULL", "updated REAL NOT NULL, note TEXT") for s in sqlite_statements()]
    assert drift(doc, grown, mysql_statements()) == ["+| `note` | TEXT | — |  |"]
    assert drift(doc.replace(END, ""), sqlite_statements(), mysql_statements()) == [
        "docs/ARCHITECTURE.md has no schema section (its markers are missing)"]


def test_both_dialects_define_the_same_tables_and_columns() -> None:
    lite, my = parse(sqlite_statements()), parse(mysql_statements())
    assert {n: (list(t.columns), t.primary_key) for n, t in lite.items()} == \
        {n: (list(t.columns), t.primary_key) for n, t in my.items()}
    assert set(ADDED_COLUMNS) <= set(lite[TABLE].columns)


def test_the_parser_reads_the_columns_sqlite_creates() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(";".join(sqlite_statements()))
    for name, table in parse(sqlite_statements()).items():
        info = conn.execute(f"PRAGMA table_info({name})").fetchall()
        assert [(r[1], r[2]) for r in info] == [(c, d.split()[0]) for c, d in table.columns.items()]
        assert tuple(r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]) == table.primary_key
    conn.close()


def write() -> None:
    """Put the generated section into the doc, in place of the one there."""
    doc, section = DOC.read_text(), schema_section(sqlite_statements(), mysql_statements())
    old = doc_section(doc)
    if not old:
        sys.exit(f"{DOC}: put the markers {BEGIN!r} and {END!r} where the schema goes")
    DOC.write_text(doc.replace(old, section))


if __name__ == "__main__":
    write()
