"""popctl's own table layout (formatters.py) is tabulate's "simple" (listings) and "plain"
(single records), which it replaced to save ~45 ms of start-up per table and most of a large
table's memory: compared with tabulate itself on generated records, where it is installed."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.formatters import _width, render, render_one

tabulate = pytest.importorskip("tabulate").tabulate

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


@pytest.mark.parametrize(("text", "width"), [
    ("plain", 5), ("Grüße", 5), ("e\u0301", 1), ("中文", 4), ("📦 Paket", 8), ("✉\ufe0f", 2),
    ("👩\u200d💻", 2), ("a\u200bb", 2), ("\u00ad", 1)])
def test_width(text: str, width: int) -> None:
    assert _width(text) == width
