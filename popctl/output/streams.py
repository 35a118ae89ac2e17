"""The formats written record by record as they arrive: JSON (one array), NDJSON (a line each,
flushed), CSV (a header row first)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import TextIO

from popctl.output.values import Record, _csv_cell, _json, _json_object, _project

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

