"""Records (dicts whose keys are the JSON schema) written as a table, JSON, NDJSON or CSV.

One renderer per format, chosen by name from a registry. json, ndjson and csv write each record
as it arrives (ndjson also flushes it); only the table, which must measure its columns, waits for
all of them. JSON and NDJSON carry values exactly; the table shortens long text and replaces
control and bidirectional characters (display.safe); CSV puts a ``'`` before text that a
spreadsheet would run as a formula. Values are str, int, float, bool, None, lists of those, or
dicts (in table and CSV cells a dict is compact JSON). Bytes are never written raw: in every
format they are decoded as UTF-8, with invalid sequences replaced by U+FFFD, and so are lone
surrogates in str values, so JSON output is always valid UTF-8.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TextIO

from popctl.defaults import FORMATS
from popctl.display import safe
from popctl.errors import UsageError

__all__ = ["FORMATS", "MAX_CELL_WIDTH", "human_size", "render", "render_one"]


# Table cells longer than this are cut with an ellipsis: with number, size, UID, From and Date
# beside it, a 60-character Subject keeps a listing row within a wide terminal and readable.
MAX_CELL_WIDTH = 60

Record = Mapping[str, object]

_SURROGATE = re.compile("[\ud800-\udfff]")
# Line breaks and tabs would break a table's row, so they become spaces; display.safe then
# replaces what a terminal must not get (C0/C1 controls, DEL, bidirectional controls).
_TABLE_SPACES: dict[int, str] = {ord("\t"): " ", ord("\n"): " ", ord("\r"): " "}

# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula
# (=HYPERLINK(...), +cmd|...); a leading ' makes it text. Only text values: numbers stay numbers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _table_text(text: str) -> str:
    if text.isascii() and text.isprintable():  # nearly every cell: nothing to replace
        return text.strip()
    return safe(text.translate(_TABLE_SPACES)).strip()


def _csv_cell(value: object) -> str:
    text = _text(value)
    if text.startswith(_FORMULA_START) and not isinstance(value, int | float | bool):
        return "'" + text
    return text


# --- values ---------------------------------------------------------------------------------------


def _valid_text(text: str) -> str:
    """``text`` without lone surrogates, which cannot be encoded as UTF-8."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(value: object, *, indent: int | None = None) -> str:
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators,
                      default=_json_default)
    return _valid_text(text)


_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
_CONSTANTS = {None: "null", True: "true", False: "false"}


def _json_scalar(value: object) -> str:
    """One JSON value as json.dumps(value, ensure_ascii=False) writes it."""
    if type(value) is str:
        return json.encoder.encode_basestring(value)
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float:
        return json.dumps(value)  # NaN and Infinity as json writes them
    return _CONSTANTS[value]  # type: ignore[index]


def _json_object(record: Record) -> str:
    """``_json(record, indent=2)``, faster for a flat record: with an indent, json runs its
    pure-Python encoder over every value (about a third of a 1,000-row JSON listing's
    rendering). Anything nested goes the general way."""
    if record and all(type(key) is str for key in record) \
            and all(type(value) in _SCALAR_TYPES for value in record.values()):
        body = ",\n  ".join(f"{json.encoder.encode_basestring(key)}: {_json_scalar(value)}"
                            for key, value in record.items())
        return _valid_text("{\n  " + body + "\n}")
    return _json(record, indent=2)


def _text(value: object, *, booleans: tuple[str, str] = ("true", "false")) -> str:
    """A value as one line of text for a CSV or table cell; None is ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return booleans[0] if value else booleans[1]
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return " ".join(_text(item, booleans=booleans) for item in value)
    if isinstance(value, Mapping):
        return _json(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _cell(value: object, *, shorten: bool = True) -> object:
    """A table cell: numbers stay numbers (right-aligned), text is made safe for a terminal and
    (in listings, not in a single record) shortened."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    text = _table_text(_text(value, booleans=("yes", "no")))
    if shorten and len(text) > MAX_CELL_WIDTH:
        text = text[:MAX_CELL_WIDTH - 1] + "…"
    return text


def _project(record: Record, columns: Sequence[str] | None) -> Record:
    return record if columns is None else {key: record.get(key) for key in columns}


# --- renderers ------------------------------------------------------------------------------------


def _render_json(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    # Streamed, yet the same text as json.dumps(list_of_records, indent=2): each object indented
    # one level inside the array. JSON strings never hold a raw newline, so this is safe.
    count = 0
    for record in records:
        out.write("[\n  " if count == 0 else ",\n  ")
        out.write(_json_object(_project(record, columns)).replace("\n", "\n  "))
        count += 1
    out.write("\n]\n" if count else "[]\n")
    return count


def _render_ndjson(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    count = 0
    for record in records:
        out.write(_json(_project(record, columns)) + "\n")
        out.flush()  # a consumer (jq, a pipe to another script) sees each message as it is read
        count += 1
    return count


def _render_csv(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    """The header row is ``columns``, or else the first record's keys (printed even with no rows
    when ``columns`` is given, so a script always sees the schema)."""
    writer = csv.writer(out, lineterminator="\n")
    keys: Sequence[str] | None = columns
    if keys is not None:
        writer.writerow(keys)
    count = 0
    for record in records:
        if keys is None:
            keys = list(record)
            writer.writerow(keys)
        writer.writerow([_csv_cell(record.get(key)) for key in keys])
        count += 1
    return count


# --- tables ---------------------------------------------------------------------------------------
# Laid out by tabulate ("simple" for listings, "plain" for one record) through its one public
# function, imported only when a table is written. tabulate measures a cell with len(), or with
# wcwidth when that optional package is installed: the two disagree on CJK and emoji, and neither
# is ours to switch. So tabulate sees ASCII only: a cell with any other character goes in as a
# stand-in of as many _SLOT characters as it takes columns on a terminal (textwidth.py), which
# both measures count alike, and the text is put back into the finished lines.
#
# A listing is measured once over compact rows (tuples of cells, numbers kept as the record's int
# objects), then handed to tabulate TABLE_CHUNK rows at a time with every column forced to its
# width over the whole table: the text is the same as one tabulate call over all the rows, but a
# 100,000-message listing never holds tabulate's formatted copies of every cell.

TABLE_CHUNK = 2000
# tabulate makes a column at least as wide as its header plus two (the "simple" format's rule).
_HEADER_PADDING = 2
# A private-use character: one column for len() and wcwidth alike, and never in a stand-in's
# neighbourhood otherwise (a cell holding one is itself replaced by a stand-in).
_SLOT = "\ue000"
_SLOTS = re.compile(_SLOT + "+")


def _number_text(value: int | float) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _stand_in(cell: str, originals: list[str]) -> str:
    """``cell`` as tabulate may see it: itself if ASCII, else a stand-in of its width (kept in
    ``originals`` for _put_back). A cell of zero width shows nothing, and goes in empty."""
    if cell.isascii():
        return cell
    from popctl.textwidth import wcswidth

    width = wcswidth(cell)
    if width:
        originals.append(cell)
    return _SLOT * width


def _put_back(text: str, originals: list[str]) -> str:
    """tabulate's lines with each stand-in replaced by its cell, in order (tabulate keeps the
    cells' order, and separates them by at least a space)."""
    if not originals:
        return text
    cells = iter(originals)
    return _SLOTS.sub(lambda _match: next(cells), text)


def _tabulate(rows: list[list[str]], **options: Any) -> str:
    from tabulate import tabulate

    originals: list[str] = []
    cells = [[_stand_in(cell, originals) for cell in row] for row in rows]
    return _put_back(tabulate(cells, disable_numparse=True, **options), originals)


def _render_table(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    """Nothing at all for no records: the command says "no messages" on stderr itself.

    Each column is as wide as its widest cell or its name plus two, two spaces apart; all-number
    columns right-aligned, the others left-aligned.
    """
    if columns is None:
        kept = list(records)
        columns = list(dict.fromkeys(key for record in kept for key in record))
        rows = [tuple(_cell(record.get(key)) for key in columns) for record in kept]
        del kept
    else:
        rows = [tuple(_cell(record.get(key)) for key in columns) for record in records]
    if not rows:
        return 0
    from popctl.textwidth import wcswidth  # unicodedata: only tables measure text

    widths = [len(name) + _HEADER_PADDING for name in columns]
    numbers, texts = [False] * len(columns), [False] * len(columns)
    for row in rows:
        for i, cell in enumerate(row):
            if cell is None:
                continue
            if isinstance(cell, str):
                texts[i] = True
                cell_width = wcswidth(cell)
            else:
                numbers[i] = True
                cell_width = len(_number_text(cell))  # type: ignore[arg-type]
            if cell_width > widths[i]:
                widths[i] = cell_width
    aligns = ["right" if n and not t else "left" for n, t in zip(numbers, texts, strict=True)]
    # A header padded on the side it is aligned away from fixes each chunk's column at the whole
    # table's width.
    headers = [" " * (w - _HEADER_PADDING - len(name)) + name if align == "right"
               else name + " " * (w - _HEADER_PADDING - len(name))
               for name, w, align in zip(columns, widths, aligns, strict=True)]
    for start in range(0, len(rows), TABLE_CHUNK):
        cells = [["" if c is None else c if isinstance(c, str) else _number_text(c)  # type: ignore[arg-type]
                  for c in row] for row in rows[start:start + TABLE_CHUNK]]
        text = _tabulate(cells, headers=headers, tablefmt="simple", colalign=aligns)
        if start:
            text = text.split("\n", 2)[2]  # the header and its rule are written once
        out.write(text + "\n")
    return len(rows)


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
           columns: Sequence[str] | None = None) -> int:
    """Write ``records`` to ``out`` in format ``fmt``; return how many were written.

    ``columns`` selects and orders the keys (a missing key is null/empty); by default every key
    is written (table: every key any record has; csv: the first record's keys).
    """
    return _renderer(fmt)(records, out, columns)


def render_one(record: Record, fmt: str, out: TextIO) -> None:
    """Write a single result (stat, capa): a JSON object rather than an array, one NDJSON line,
    a CSV header and row, or a two-column table of keys and values."""
    if fmt == "json":
        out.write(_json(record, indent=2) + "\n")
    elif fmt == "table":
        if record:
            pairs = [[key, _table_text(_text(value, booleans=("yes", "no")))]
                     for key, value in record.items()]
            out.write(_tabulate(pairs, tablefmt="plain") + "\n")
    else:
        _renderer(fmt)([record], out, None)


# --- sizes for people -----------------------------------------------------------------------------


def human_size(n: int) -> str:
    """A byte count for people, 1024-based like parse_size: ``512``, ``4.2K``, ``17M``, ``1.0G``.

    One decimal below 10 of a unit, none above; parse_size reads the result back (approximately).
    """
    if n < 0:
        raise ValueError(f"a size cannot be negative: {n}")
    if n < 1024:
        return str(n)
    value = float(n)
    for suffix in "KMGTPE":
        value /= 1024
        if round(value, 1) < 10:
            return f"{value:.1f}{suffix}"
        if round(value) < 1024 or suffix == "E":
            return f"{value:.0f}{suffix}"
    raise AssertionError("unreachable")
