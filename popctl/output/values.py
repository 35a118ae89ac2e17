"""Values as each format writes them: JSON text (valid UTF-8 whatever the input), a line of
text for a CSV or table cell, a table cell made safe and shortened; byte counts and dates for
people."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime

from popctl.display import safe

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


# One line of NDJSON per record: json.dumps with options builds a new encoder at every call,
# which cost more than encoding a listing's record; this one is built once.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)
# And for a record (a dict), json's C encoder itself, made once: JSONEncoder.encode makes a new
# one at every call, with a dict for detecting reference cycles, which a record built here
# cannot have; that was a third of encoding a listing's line. The same options, the same text.
_C_COMPACT = getattr(json.encoder, "c_make_encoder", None)
_COMPACT_RECORD = _C_COMPACT(None, _json_default, json.encoder.encode_basestring, None, ":", ",",
                             False, False, True) if _C_COMPACT is not None else None


def _json(value: object, *, indent: int | None = None) -> str:
    if indent is None:
        if type(value) is dict and _COMPACT_RECORD is not None:
            return _valid_text("".join(_COMPACT_RECORD(value, 0)))
        return _valid_text(_COMPACT.encode(value))
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=(",", ": "),
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


def _project(record: Record, columns: list[str] | None) -> Record:
    """``record`` with the keys ``columns`` names, in that order (a missing one is None).

    A listing's jobs name the keys their records already have (so that an empty CSV still
    gets its header row): then the record is itself, without a copy."""
    if columns is None or list(record) == columns:
        return record
    return {key: record.get(key) for key in columns}


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


# --- dates for people -----------------------------------------------------------------------------


def short_date(iso: str, now: datetime) -> str:
    """An ISO 8601 date in the local time zone, short: ``Dec 05 14:03`` in ``now``'s year,
    ``2025-11-30`` otherwise (``ls -l``'s idea, by calendar year). Text that is not an ISO date
    is returned as it is."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    local = when.astimezone(now.tzinfo) if when.tzinfo else when
    if local.year == now.year:
        return f"{_MONTHS[local.month - 1]} {local.day:02d} {local.hour:02d}:{local.minute:02d}"
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}"


# English month names whatever the locale (strftime's %b follows LC_TIME once a program sets it).
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
