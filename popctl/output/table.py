"""Tables: tabulate's "simple" format for listings, "plain" for one record."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from popctl.output.values import Record, _cell

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
    from popctl.output.textwidth import wcswidth  # unicodedata: only tables measure text

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
