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
from types import ModuleType
from typing import TextIO

from popctl.display import safe
from popctl.errors import UsageError

__all__ = ["FORMATS", "MAX_CELL_WIDTH", "human_size", "render", "render_one"]

FORMATS = ("table", "json", "ndjson", "csv")

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
# Laid out by tabulate ("simple" for listings, "plain" for one record), imported only when a table
# is written. A listing is measured once over compact rows (tuples of cells, numbers kept as the
# record's int objects), then handed to tabulate TABLE_CHUNK rows at a time with every column
# forced to its width over the whole table: the text is the same as one tabulate call over all
# the rows, but a 100,000-message listing never holds tabulate's formatted copies of every cell.

TABLE_CHUNK = 2000


def _tabulate() -> ModuleType:
    import tabulate

    if getattr(tabulate, "wcwidth", None) is None:
        # No wcwidth (tabulate's optional extra): measure wide characters with ours, through
        # tabulate's own hook, rather than let CJK and emoji push rows out of line.
        from popctl import textwidth

        setattr(tabulate, "wcwidth", textwidth)  # noqa: B010
        setattr(tabulate, "WIDE_CHARS_MODE", True)  # noqa: B010
    return tabulate


def _width_function(module: ModuleType) -> Callable[[str], int]:
    """tabulate's own measure of a cell: wcwidth's when tabulate uses it, else the length."""
    wcwidth = getattr(module, "wcwidth", None)
    if wcwidth is not None and getattr(module, "WIDE_CHARS_MODE", False):
        wcswidth: Callable[[str], int] = wcwidth.wcswidth
        return lambda text: len(text) if text.isascii() else max(wcswidth(text), 0)
    return len


def _number_text(value: int | float) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _tabulate_chunk(tabulate: ModuleType, cells: list[list[str]], headers: list[str],
                    aligns: list[str]) -> str:
    def call() -> str:
        return str(tabulate.tabulate(cells, headers=headers, tablefmt="simple",
                                     colalign=aligns, disable_numparse=True))

    wide = getattr(tabulate, "WIDE_CHARS_MODE", False)
    if not wide or not all(c.isascii() for row in cells for c in row):
        return call()
    # Printable ASCII is one column a character either way; tabulate's documented switch skips
    # wcwidth, which measures every cell twice (a third of a 1,000-row table's time).
    setattr(tabulate, "WIDE_CHARS_MODE", False)  # noqa: B010
    try:
        return call()
    finally:
        setattr(tabulate, "WIDE_CHARS_MODE", wide)  # noqa: B010


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
    tabulate = _tabulate()
    width = _width_function(tabulate)
    min_padding = tabulate.MIN_PADDING
    widths = [width(name) + min_padding for name in columns]
    numbers, texts = [False] * len(columns), [False] * len(columns)
    for row in rows:
        for i, cell in enumerate(row):
            if cell is None:
                continue
            if isinstance(cell, str):
                texts[i] = True
                cell_width = width(cell)
            else:
                numbers[i] = True
                cell_width = len(_number_text(cell))  # type: ignore[arg-type]
            if cell_width > widths[i]:
                widths[i] = cell_width
    aligns = ["right" if n and not t else "left" for n, t in zip(numbers, texts, strict=True)]
    # tabulate makes a column at least as wide as its header plus MIN_PADDING: a header padded
    # on the side it is aligned away from fixes each chunk's column at the whole table's width.
    headers = [" " * (w - min_padding - width(name)) + name if align == "right"
               else name + " " * (w - min_padding - width(name))
               for name, w, align in zip(columns, widths, aligns, strict=True)]
    for start in range(0, len(rows), TABLE_CHUNK):
        cells = [["" if c is None else c if isinstance(c, str) else _number_text(c)  # type: ignore[arg-type]
                  for c in row] for row in rows[start:start + TABLE_CHUNK]]
        text = _tabulate_chunk(tabulate, cells, headers, aligns)
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
            pairs = [(key, _table_text(_text(value, booleans=("yes", "no"))))
                     for key, value in record.items()]
            out.write(_tabulate().tabulate(pairs, tablefmt="plain", disable_numparse=True) + "\n")
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
