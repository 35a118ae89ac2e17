"""Records (dicts whose keys are the JSON schema) written as a table, JSON, NDJSON or CSV.

One renderer per format, chosen by name from a registry. json, ndjson and csv write each record
as it arrives and keep none (flushed per record on a terminal, else once per FLUSH_RECORDS: see
streams.py); only the table, which must measure its columns, waits for all of them. JSON and
NDJSON carry values exactly; the table shortens long text and replaces control and
bidirectional characters (display.safe); CSV puts a ``'`` before text that a spreadsheet would
run as a formula. Values are str, int, float, bool, None, lists of those, or
dicts (in table and CSV cells a dict is compact JSON). Bytes are never written raw: in every
format they are decoded as UTF-8, with invalid sequences replaced by U+FFFD, and so are lone
surrogates in str values, so JSON output is always valid UTF-8.

``values`` makes values into JSON and cell text, ``streams`` writes JSON, NDJSON and CSV as the
records come, ``table`` lays tables out with tabulate, ``registry`` chooses by format name.
"""

from popctl.defaults import FORMATS
from popctl.output.registry import render, render_one
from popctl.output.table import Layout
from popctl.output.values import MAX_CELL_WIDTH, human_size, short_date

__all__ = ["FORMATS", "MAX_CELL_WIDTH", "Layout", "human_size", "render", "render_one",
           "short_date"]
