"""Tables are tabulate's "simple" (listings) and "plain" (single records); a listing is handed to
tabulate in chunks with the columns forced to the whole table's widths, which must give the same
text as one tabulate call over all the rows."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import tabulate as tabulate_module
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.output import render, render_one, textwidth
from popctl.output import table as table_module


def tabulate(*args: object, **kwargs: object) -> object:
    """tabulate with the display widths popctl promises (CJK and emoji two columns), whether or
    not the optional wcwidth package is installed: without it tabulate counts characters, and
    the reference would be wrong where popctl is right (a fresh venv has no wcwidth)."""
    saved = tabulate_module.wcwidth, tabulate_module.WIDE_CHARS_MODE
    tabulate_module.wcwidth, tabulate_module.WIDE_CHARS_MODE = textwidth, True
    try:
        return tabulate_module.tabulate(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        tabulate_module.wcwidth, tabulate_module.WIDE_CHARS_MODE = saved

# Letters, digits, punctuation, accented Latin, CJK, a few emoji: what mail headers hold.
TEXT = st.text(st.sampled_from(list("abcXYZ019 .,:@<>-_éüßÑçø中文字日本語한국어📦🎉✉")),
               max_size=12)
KEYS = ["number", "size", "uid", "from", "subject", "date"]


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[dict[str, object]]]:
    columns = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    kinds = {c: draw(st.sampled_from(["int", "text"])) for c in columns}
    value = {"int": st.one_of(st.none(), st.integers(0, 10**12)),
             "text": st.one_of(st.none(), TEXT)}
    records = draw(st.lists(st.fixed_dictionaries({c: value[kinds[c]] for c in columns}),
                            min_size=1, max_size=6))
    return columns, records


def _tabulate_simple(columns: list[str], records: list[dict[str, object]]) -> str:
    cells = [[record.get(key) for key in columns] for record in records]
    text_columns = [i for i in range(len(columns)) if any(isinstance(r[i], str) for r in cells)]
    return str(tabulate(cells, headers=columns, tablefmt="simple", missingval="",
                        disable_numparse=text_columns or False)) + "\n"


@settings(max_examples=300, deadline=None)
@given(tables())
def test_listing_table_is_tabulate_simple(table: tuple[list[str], list[dict[str, object]]]
                                          ) -> None:
    columns, records = table
    out = io.StringIO()
    render(records, "table", out, columns=columns)
    assert out.getvalue() == _tabulate_simple(columns, records)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*KEYS, "implementation", "sasl"]),
                       st.one_of(st.none(), st.integers(0, 10**9), TEXT), min_size=1))
def test_single_record_table_is_tabulate_plain(record: dict[str, object]) -> None:
    out = io.StringIO()
    render_one(record, "table", out)
    pairs = [(k, "" if v is None else str(v)) for k, v in record.items()]
    assert out.getvalue() == str(tabulate(pairs, tablefmt="plain", disable_numparse=True)) + "\n"


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(1, 4))
def test_chunked_table_is_one_tabulate_call(table: tuple[list[str], list[dict[str, object]]],
                                            chunk: int) -> None:
    columns, records = table
    records = records * 3  # rows in several chunks, the widest anywhere
    out = io.StringIO()
    old, table_module.TABLE_CHUNK = table_module.TABLE_CHUNK, chunk
    try:
        render(records, "table", out, columns=columns)
    finally:
        table_module.TABLE_CHUNK = old
    assert out.getvalue() == _tabulate_simple(columns, records)


def test_large_listing_spans_chunks() -> None:
    records = [{"number": n, "size": n * 37 % 100_003, "uid": f"u{n:x}"}
               for n in range(1, 2 * table_module.TABLE_CHUNK + 10)]
    records[-1]["uid"] = "the-longest-uid-of-all"
    out = io.StringIO()
    assert render(records, "table", out) == len(records)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(records) + 2
    assert lines[-1].endswith("the-longest-uid-of-all")
    assert len({len(line.rstrip()) for line in lines[2:-1]}) > 1  # uids are left-aligned, unpadded
    assert lines[1].split()[-1] == "-" * len("the-longest-uid-of-all")
    assert out.getvalue() == _tabulate_simple(["number", "size", "uid"], records)


def test_ascii_tables_skip_wcwidth_and_restore_the_switch() -> None:
    records = [{"number": 1, "subject": "plain"}, {"number": 2, "subject": "中文 wide"}]
    before = tabulate_module.WIDE_CHARS_MODE
    render(records[:1], "table", io.StringIO())
    assert before == tabulate_module.WIDE_CHARS_MODE
    out = io.StringIO()
    render(records, "table", out)
    assert out.getvalue() == _tabulate_simple(["number", "subject"], records)


PRELOAD = """
import sys, time
from popctl.app import runner
names = sys.argv[3:]
runner.preload(sys.argv[1], scan=sys.argv[2] == "scan")
deadline = time.monotonic() + 20
while not all(n in sys.modules for n in names) and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.2)
print(" ".join(sorted(n for n in ("tabulate", "popctl.output", "popctl.headers",
                                  "popctl.cache") if n in sys.modules)))
"""


@pytest.mark.parametrize(("fmt", "scan", "imported"), [
    # A listing's table is written without tabulate: only a single record (stat, capa) uses it.
    ("table", "scan", "popctl.cache popctl.headers popctl.output"),
    ("table", "-", "popctl.output tabulate"),
    ("json", "scan", "popctl.cache popctl.headers popctl.output"),
    ("csv", "-", "popctl.output"),
])
def test_preload_imports_what_the_command_will_need(fmt: str, scan: str, imported: str) -> None:
    result = subprocess.run([sys.executable, "-c", PRELOAD, fmt, scan, *imported.split()],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == imported
