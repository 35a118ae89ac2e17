"""One renderer per format, chosen by name from a registry; ``render`` and ``render_one``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from popctl.defaults import FORMATS
from popctl.errors import UsageError
from popctl.output.streams import _render_csv, _render_json, _render_ndjson
from popctl.output.table import Layout, _render_table, _tabulate, human_cell, is_size
from popctl.output.values import Record, _json, _table_text, _text

Renderer = Callable[[Iterable[Record], TextIO, Sequence[str] | None], int]

_RENDERERS: dict[str, Renderer] = {
    "table": _render_table,
    "json": _render_json,
    "ndjson": _render_ndjson,
    "csv": _render_csv,
}


def _renderer(fmt: str) -> Renderer:
    try:
        return _RENDERERS[fmt]
    except KeyError:
        raise UsageError(f"unknown output format {fmt!r}: expected one of "
                         f"{', '.join(FORMATS)}") from None


def render(records: Iterable[Record], fmt: str, out: TextIO, *,
           columns: Sequence[str] | None = None, layout: Layout | None = None) -> int:
    """Write ``records`` to ``out`` in format ``fmt``; return how many were written.

    ``columns`` selects and orders the keys (a missing key is null/empty); by default every key
    is written (table: every key any record has; csv: the first record's keys). ``layout``
    fits a table to a terminal (other formats ignore it).
    """
    if fmt == "table":
        return _render_table(records, out, columns, layout)
    return _renderer(fmt)(records, out, columns)


def render_one(record: Record, fmt: str, out: TextIO, *, layout: Layout | None = None) -> None:
    """Write a single result (stat, capa): a JSON object rather than an array, one NDJSON line,
    a CSV header and row, or a two-column table of keys and values (on a terminal, ``layout``
    shows sizes for people; the lines are not cut)."""
    if fmt == "json":
        out.write(_json(record, indent=2) + "\n")
    elif fmt == "table":
        if record:
            human = layout is not None and layout.human
            pairs = [[key, _table_text(_text(human_cell(value) if human and is_size(key)
                                             else value, booleans=("yes", "no")))]
                     for key, value in record.items()]
            out.write(_tabulate(pairs, tablefmt="plain") + "\n")
    else:
        _renderer(fmt)([record], out, None)

