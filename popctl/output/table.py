"""Tables: tabulate's "simple" format for listings, "plain" for one record; a listing fitted to
a terminal's width when it is written to one (``Layout``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TextIO

from popctl.output.values import Record, _cell, human_size, short_date

# --- tables ---------------------------------------------------------------------------------------
# A listing is tabulate's "simple" format: each column as wide as its widest cell or its name
# plus two, cells padded to it (numbers to the right, text to the left), two spaces between
# columns, trailing spaces cut. popctl writes those lines itself from the widths it has measured
# once (tests/unit/test_table_layout.py compares them with tabulate over random tables): handed
# the cells, tabulate would measure every one again and guess each one's type (_column_type),
# which cost a 1,000-row listing 20 ms of its 28 (issue 13). Widths are display widths
# (textwidth.py: CJK and emoji take two columns) whether or not wcwidth is installed.
#
# A single record is a two-column "plain" table laid out by tabulate itself, through its one
# public function, imported only then. tabulate measures a cell with len(), or with wcwidth
# when that optional package is installed: the two disagree on CJK and emoji, and neither is
# ours to switch. So tabulate sees ASCII only: a cell with any other character goes in as a
# stand-in of as many _SLOT characters as it takes columns on a terminal, which both measures
# count alike, and the text is put back into the finished lines.

# Lines written to ``out`` at a time: a 100,000-message listing never holds all its lines.
TABLE_CHUNK = 2000
# tabulate makes a column at least as wide as its header plus two (the "simple" format's rule).
_HEADER_PADDING = 2
_SEPARATOR = "  "
# A private-use character: one column for len() and wcwidth alike, and never in a stand-in's
# neighbourhood otherwise (a cell holding one is itself replaced by a stand-in).
_SLOT = "\ue000"

# --- fitting a terminal ---------------------------------------------------------------------------
# On a terminal (and not with --full) a listing keeps one line per message: From and Subject, the
# columns whose length varies, give up width first, down to these minimums (shorter text keeps
# its own width); below them, whole columns are left out in _DROP_ORDER until they fit. A table
# without a flexible column is never cut (uidl's UIDs are what it is for). With every droppable
# column gone and still too wide, the terminal wraps the lines.
FLEXIBLE_MINIMUM = {"from": 16, "subject": 20}
_DROP_ORDER = ("uid", "deleted", "date", "from", "size")


class Layout(NamedTuple):
    """How a listing table is laid out for a person at a terminal; None of it when piped."""

    width: int | None = None  # fit the lines into this many columns
    human: bool = False  # sizes as 2.0M, dates short and in local time


def _number_text(value: int | float) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _stand_in(cell: str, originals: list[str]) -> str:
    """``cell`` as tabulate may see it: itself if ASCII, else a stand-in of its width (kept in
    ``originals`` for _put_back). A cell of zero width shows nothing, and goes in empty."""
    if cell.isascii():
        return cell
    from popctl.output.textwidth import wcswidth

    width = wcswidth(cell)
    if width:
        originals.append(cell)
    return _SLOT * width


def _put_back(text: str, originals: list[str]) -> str:
    """tabulate's lines with each stand-in replaced by its cell, in order (tabulate keeps the
    cells' order, and separates them by at least a space)."""
    if not originals:
        return text
    import re

    cells = iter(originals)
    return re.sub(_SLOT + "+", lambda _match: next(cells), text)


def _tabulate(rows: list[list[str]], **options: Any) -> str:
    from tabulate import tabulate

    originals: list[str] = []
    cells = [[_stand_in(cell, originals) for cell in row] for row in rows]
    return _put_back(tabulate(cells, disable_numparse=True, **options), originals)


def is_size(key: str) -> bool:
    """A column of octets (``size``, retr's ``listed_size``): shown as 2.0M on a terminal."""
    return key == "size" or key.endswith("_size")


def human_cell(value: object) -> object:
    """An octet count as people read it; anything else as it is."""
    return human_size(value) if type(value) is int and value >= 0 else value


def _humanizer(columns: Sequence[str]
               ) -> Callable[[tuple[object, ...]], tuple[object, ...]] | None:
    """What makes a row's sizes read as people read them (2.0M) and its date short and local,
    for a terminal; None when the columns have neither."""
    sizes = [i for i, name in enumerate(columns) if is_size(name)]
    date = columns.index("date") if "date" in columns else -1
    if not sizes and date < 0:
        return None
    from datetime import datetime

    now = datetime.now().astimezone()

    def humane(row: tuple[object, ...]) -> tuple[object, ...]:
        cells = list(row)
        for i in sizes:
            cells[i] = human_cell(cells[i])
        if date >= 0 and isinstance(text := cells[date], str):
            cells[date] = short_date(text, now)
        return tuple(cells)

    return humane


def _fit(columns: Sequence[str], widths: list[int], limit: int) -> tuple[list[int], list[int]]:
    """Which columns to keep (their indexes) and how wide each kept one is, to fit ``limit``."""
    keep = list(range(len(columns)))
    if not any(name in FLEXIBLE_MINIMUM for name in columns):
        return keep, widths
    for drop in (None, *_DROP_ORDER):
        if drop is not None:
            if drop not in columns or not any(columns[i] in FLEXIBLE_MINIMUM
                                              for i in keep if columns[i] != drop):
                continue
            keep.remove(columns.index(drop))
        fitted = _shrink([columns[i] for i in keep], [widths[i] for i in keep], limit)
        if fitted is not None:
            return keep, fitted
    names = [columns[i] for i in keep]
    return keep, [min(w, FLEXIBLE_MINIMUM[name]) if name in FLEXIBLE_MINIMUM else w
                  for name, w in zip(names, (widths[i] for i in keep), strict=True)]


def _shrink(columns: Sequence[str], widths: list[int], limit: int) -> list[int] | None:
    """``widths`` with the flexible columns narrowed, widest first, so that the line fits
    ``limit``; None if they would have to go below their minimums."""
    total = sum(widths) + len(_SEPARATOR) * (len(widths) - 1)
    if total <= limit:
        return widths
    flexible = [i for i, name in enumerate(columns) if name in FLEXIBLE_MINIMUM]
    room = limit - (total - sum(widths[i] for i in flexible))
    least = {i: min(widths[i], FLEXIBLE_MINIMUM[columns[i]]) for i in flexible}
    if room < sum(least.values()):
        return None
    # The widest cap under which the flexible columns fit the room; what is left goes a
    # column at a time to those the cap cut, the first first.
    cap = max(widths[i] for i in flexible)
    while sum(max(least[i], min(widths[i], cap)) for i in flexible) > room:
        cap -= 1
    fitted = list(widths)
    for i in flexible:
        fitted[i] = max(least[i], min(widths[i], cap))
    spare = room - sum(fitted[i] for i in flexible)
    for i in flexible:
        if spare and fitted[i] < widths[i]:
            fitted[i] += 1
            spare -= 1
    return fitted


def _render_table(records: Iterable[Record], out: TextIO, columns: Sequence[str] | None,
                  layout: Layout | None = None) -> int:
    """Nothing at all for no records: the command says "no messages" on stderr itself.

    Each column is as wide as its widest cell or its name plus two, two spaces apart; all-number
    columns right-aligned, the others left-aligned (human sizes stay right-aligned).
    """
    if columns is None:
        records = list(records)
        columns = list(dict.fromkeys(key for record in records for key in record))
    from popctl.output.textwidth import truncate, wcswidth  # unicodedata: only tables measure

    layout = layout or Layout()
    humane = _humanizer(columns) if layout.human else None
    numbers, texts = [False] * len(columns), [False] * len(columns)
    # Every cell as text, a row a tuple, made in one pass over the records (holding the values
    # and each cell's width as well took a 100,000-row listing 470 octets a row); widths
    # measured now, and again for each line as it is written (len() for nearly every cell).
    widths = [len(name) + _HEADER_PADDING for name in columns]
    cells: list[tuple[str, ...]] = []
    for record in records:
        row = tuple([_cell(record.get(key)) for key in columns])
        for i, cell in enumerate(row):
            if cell is not None:
                if isinstance(cell, str):
                    texts[i] = True
                else:
                    numbers[i] = True
        if humane is not None:
            row = humane(row)
        line = tuple(["" if cell is None else cell if isinstance(cell, str)
                      else _number_text(cell) for cell in row])  # type: ignore[arg-type]
        for i, text in enumerate(line):
            width = len(text) if text.isascii() else wcswidth(text)
            if width > widths[i]:
                widths[i] = width
        cells.append(line)
    if not cells:
        return 0
    rights = [n and not t for n, t in zip(numbers, texts, strict=True)]
    keep = list(range(len(columns)))
    if layout.width is not None:
        keep, fitted = _fit(columns, widths, layout.width)
        for at, i in enumerate(keep):
            widths[i] = fitted[at]
    header = [(name.rjust if rights[i] else name.ljust)(widths[i]) for i in keep
              for name in (columns[i],)]
    out.write(_SEPARATOR.join(header).rstrip(" ") + "\n"
              + _SEPARATOR.join("-" * widths[i] for i in keep) + "\n")
    for start in range(0, len(cells), TABLE_CHUNK):
        lines = []
        for line in cells[start:start + TABLE_CHUNK]:
            parts = []
            for i in keep:
                text = line[i]
                width = len(text) if text.isascii() else wcswidth(text)
                if not width:
                    text = ""  # a cell of zero width shows nothing
                elif width > widths[i]:  # fitted to the terminal: cut with an ellipsis
                    text = truncate(text, widths[i])
                    width = wcswidth(text)
                pad = " " * (widths[i] - width)
                parts.append(pad + text if rights[i] else text + pad)
            lines.append(_SEPARATOR.join(parts).rstrip(" "))
        out.write("\n".join(lines) + "\n")
    return len(cells)
