"""What the browser shows of a message, and the messages between its parts: the table's
columns and cells (server text made safe, as ``Text``, never markup), sizes for people, and
the Textual messages the session thread posts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.cells import set_cell_size
from rich.text import Text
from textual.message import Message

from popctl.display import safe
from popctl.errors import PopctlError
from popctl.query import Row

if TYPE_CHECKING:
    from popctl.tui.bridge import Server

# The columns: key, title, width (None: what the others leave), sort key.
COLUMNS: tuple[tuple[str, str, int | None, Callable[[Row], Any]], ...] = (
    ("number", "#", 6, lambda r: r.number),
    ("size", "Size", 5, lambda r: r.size),
    ("from", "From", 18, lambda r: (r.sender or "").casefold()),
    ("subject", "Subject", None, lambda r: (r.subject or "").casefold()),
    ("date", "Date", 10, lambda r: r.date or ""),
    ("uid", "UID", 8, lambda r: r.uid or ""),
)
MARKED_STYLE = "bold red"


def human_size(octets: int) -> str:
    """4 characters at most: 512, 1.5K, 12K, 3.4M, 120M, 2.0G."""
    size = float(octets)
    for unit in ("", "K", "M", "G", "T"):
        if size < 1000 or unit == "T":
            break
        size /= 1024
    if not unit:
        return str(octets)
    return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"


class Ending(NamedTuple):
    """How the browser ended: an error that ended it, and marks left uncommitted."""

    error: PopctlError | None = None
    uncommitted: int = 0


class RowsArrived(Message):
    def __init__(self, rows: list[Row]) -> None:
        super().__init__()
        self.rows = rows


class ListingDone(Message):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count


class TraceArrived(Message):
    """Lines are waiting in the app's trace inbox (one message for many lines)."""


class Notice(Message):
    def __init__(self, text: str, severity: str) -> None:
        super().__init__()
        self.text, self.severity = text, severity


def cells(row: Row, *, marked: bool) -> list[Text]:
    """The row's cells in COLUMNS order; a marked row is red, with a D before its number."""
    style = MARKED_STYLE if marked else ""
    values = (f"{'D' if marked else ' '}{row.number:>5}", f"{human_size(row.size):>5}",
              row.sender or "", row.subject or "", (row.date or "")[:10], row.uid or "")
    return [Text(safe(v), style=style, no_wrap=True, overflow="ellipsis") for v in values]


def commit_line(row: Row) -> Text:
    """A message in the commit confirmation: number, size, From (28 columns), Subject."""
    sender = set_cell_size(safe(row.sender or ""), 28)  # in columns: wide characters count 2
    return Text(safe(f"{row.number:>5} {human_size(row.size):>5}  {sender}  {row.subject or ''}"),
                no_wrap=True, overflow="ellipsis")


def status_text(rows: Sequence[Row], shown: int | None, marked: Sequence[Row],
                server: Server | None, busy: str | None, last_error: str | None) -> Text:
    """The status line: how many messages and how big, how many the filter shows (None: no
    filter), the marks, the connection (or why there is none), what the server is doing."""
    count = len(rows)
    parts = [f"{count} message{'' if count == 1 else 's'} {human_size(sum(r.size for r in rows))}"]
    if shown is not None:
        parts.append(f"shown {shown}")
    if marked:
        parts.append(f"marked {len(marked)} ({human_size(sum(r.size for r in marked))})")
    if server is not None:
        parts.append(f"{server.user}@{server.host}:{server.port} {server.tls}")
    elif busy is None:
        parts.append("not connected (r: connect)" + (f": {last_error}" if last_error else ""))
    if busy is not None:
        parts.append(busy)
    return Text(safe(" | ".join(parts)), no_wrap=True, overflow="ellipsis")
