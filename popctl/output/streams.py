"""The formats written record by record as they arrive: JSON (one array), NDJSON (a line each),
CSV (a header row first). Nothing is kept of a record once it is written."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from popctl.output.values import Record, _csv_cell, _json, _json_object, _project

# --- flushing -------------------------------------------------------------------------------------
# On a terminal every record is flushed as it is written: a person watches it come. Into a pipe
# or a file each flush is a write(2) call, and one per line made 100,002 calls for a 100,000-
# message listing (issue 13); there the records are flushed every FLUSH_RECORDS, at most half
# the session's pipelining window (exchange.MAX_IN_FLIGHT, 1,000 commands, refilled when half
# answered), so a consumer (jq, a script) sees each window's records as the next one is read.
# A record written FLUSH_SECONDS or more after the last flush goes out at once, so the rare
# matches of a filter over a large mailbox are not held back until hundreds more come.
FLUSH_RECORDS = 500
FLUSH_SECONDS = 0.5


class _Flusher:
    """Flushes ``out`` after each record on a terminal, else after every FLUSH_RECORDS or when
    FLUSH_SECONDS have passed since the last flush."""

    __slots__ = ("_every", "_last", "_out", "_unflushed")

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._every = 1 if _isatty(out) else FLUSH_RECORDS
        self._unflushed = 0
        self._last = time.monotonic()

    def wrote(self) -> None:
        self._unflushed += 1
        if self._unflushed >= self._every or time.monotonic() - self._last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._out.flush()
        self._unflushed = 0
        self._last = time.monotonic()


def _keys(columns: Sequence[str] | None) -> list[str] | None:
    return None if columns is None else list(columns)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a stream without a file, or closed
        return False


# --- renderers ------------------------------------------------------------------------------------


def _render_json(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    # Streamed, yet the same text as json.dumps(list_of_records, indent=2): each object indented
    # one level inside the array. JSON strings never hold a raw newline, so this is safe.
    count, flusher, keys = 0, _Flusher(out), _keys(columns)
    for record in records:
        out.write("[\n  " if count == 0 else ",\n  ")
        out.write(_json_object(_project(record, keys)).replace("\n", "\n  "))
        count += 1
        flusher.wrote()
    out.write("\n]\n" if count else "[]\n")
    flusher.flush()
    return count


def _render_ndjson(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    count, flusher, keys = 0, _Flusher(out), _keys(columns)
    write, wrote = out.write, flusher.wrote
    for record in records:
        write(_json(_project(record, keys)) + "\n")
        count += 1
        wrote()
    flusher.flush()
    return count


def _render_csv(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None) -> int:
    """The header row is ``columns``, or else the first record's keys (printed even with no rows
    when ``columns`` is given, so a script always sees the schema)."""
    import csv  # only for CSV: the other formats need not pay its import

    writer = csv.writer(out, lineterminator="\n")
    keys: Sequence[str] | None = columns
    if keys is not None:
        writer.writerow(keys)
    count, flusher = 0, _Flusher(out)
    for record in records:
        if keys is None:
            keys = list(record)
            writer.writerow(keys)
        writer.writerow([_csv_cell(record.get(key)) for key in keys])
        count += 1
        flusher.wrote()
    flusher.flush()
    return count

