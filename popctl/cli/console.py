"""The application's UI (popctl.app.context.UI) made of Click: stderr for people, stdout for
records in the chosen format, prompts and progress bars only on a terminal.

At a prompt, Ctrl-C is an interrupt (status 130) and a no to a confirmation a decline (status 8),
never Click's ``Aborted!`` (status 1, which means a failed write).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, TextIO, TypeVar

import click

from popctl.app.context import Options, Record, TraceHook
from popctl.cli.hints import describe, words
from popctl.display import safe
from popctl.errors import DeclinedError

T = TypeVar("T")

# A command done sooner than this shows no bar at all (a bar that flashes for 50 ms is noise).
DRAW_AFTER = 0.3  # seconds
# Redrawing for every chunk of a fast download would cost more than the chunk; 10 a second
# still moves smoothly.
REDRAW_EVERY = 0.1  # seconds

if TYPE_CHECKING:
    from popctl.output import Layout


def interactive() -> bool:
    """Someone can answer: stdin and stderr are terminals."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` shows on: $COLUMNS when set (as shutil reads it),
    else the terminal's own size, else 80."""
    with contextlib.suppress(ValueError):
        if (columns := int(os.environ.get("COLUMNS", "0"))) > 0:
            return columns
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


class Console:
    """Talks to the person at the terminal, with the options of one command."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._bar: Bar | None = None

    # What goes to stderr may quote the server (a probe, an account's error): made safe. A bar
    # on screen is erased first (the next step redraws it), so a line never starts inside it.

    def note(self, text: str) -> None:
        if not self.options.quiet:
            self._say(safe(text))

    def warn(self, text: str) -> None:
        self._say(safe(text))

    def error(self, text: str) -> None:
        self._say(safe(f"Error: {text}"))

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.erase()
        click.echo(text, err=True)

    def describe(self, error: BaseException) -> str:
        return describe(error)

    def hint(self, key: str, **args: str) -> str:
        return words(key, args)

    def interactive(self) -> bool:
        return interactive()

    def ask(self, question: str, *, hidden: bool = False, twice: bool = False) -> str:
        answer: str = _prompting(lambda: click.prompt(
            question, hide_input=hidden, confirmation_prompt=twice, err=True),
            ends_line=hidden)
        return answer

    def confirm(self, question: str, *, default: bool = False) -> bool:
        return _prompting(lambda: click.confirm(question, default=default, err=True))

    def require(self, question: str, *, declined: str = "nothing was changed") -> None:
        try:
            yes = _prompting(lambda: click.confirm(question, err=True))
        except click.exceptions.Abort:  # the end of input: no answer is not a yes
            click.echo(err=True)
            yes = False
        if not yes:
            raise DeclinedError(f"Declined: {declined}.")

    @property
    def _shows_progress(self) -> bool:
        # Not over records streaming to the same terminal (only a table waits for them all).
        return (not self.options.quiet and sys.stderr.isatty()
                and (self.options.fmt == "table" or not sys.stdout.isatty()))

    @contextlib.contextmanager
    def progress(self, total: int, label: str, *, octets: bool = False) -> Iterator[Bar | None]:
        if not self._shows_progress:
            yield None
            return
        self._bar = bar = Bar(label, total, octets=octets)
        try:
            yield bar
        finally:
            self._bar = None
            bar.erase()

    def tracer(self, label: str | None = None) -> TraceHook:
        start = time.monotonic()
        tag = f" [{label}]" if label else ""  # several accounts' dialogues interleave

        def trace(direction: str, line: str) -> None:
            click.echo(f"{time.monotonic() - start:9.3f}{tag} {direction}: {line}", err=True)
        return trace

    # The output package is imported when the first record is written: runner.preload has started
    # importing them on a thread while the server was being reached.

    def emit(self, records: Iterable[Record], columns: Sequence[str] | None = None) -> int:
        from popctl import output

        return output.render(records, self.options.fmt, sys.stdout, columns=columns,
                             layout=self._layout(sys.stdout))

    def emit_one(self, record: Record) -> None:
        from popctl import output

        output.render_one(record, self.options.fmt, sys.stdout, layout=self._layout(sys.stdout))

    def show(self, records: Sequence[Record]) -> None:
        from popctl import output

        output.render(records, "table", sys.stderr, layout=self._layout(sys.stderr))

    def _layout(self, stream: TextIO) -> Layout | None:
        """A table for the person at a terminal: fitted to its width, with human sizes and
        short local dates; None (every value whole, as before) when piped or with --full.
        The one way output depends on the terminal (issue 16): scripts read a pipe, and there
        the table is byte for byte what it was."""
        if self.options.full or not stream.isatty():
            return None
        from popctl.output import Layout

        return Layout(width=terminal_width(stream), human=True)

    def echo(self, text: str, *, newline: bool = True) -> None:
        if newline:
            click.echo(text)
        else:  # data as the server sent it (a raw command's reply), not filtered by Click
            sys.stdout.write(text)
            sys.stdout.flush()

    @property
    def stdout(self) -> BinaryIO:
        return sys.stdout.buffer


def _prompting(ask: Callable[[], T], *, ends_line: bool = False) -> T:
    """Click turns Ctrl-C at a prompt into Abort (``Aborted!``, status 1): it stays an
    interrupt here (status 130). Click raises Abort inside the handler of what it caught, so
    the interrupt is its context. ``ends_line``: Click itself ends the question's line (it
    does after a hidden input)."""
    try:
        return ask()
    except click.exceptions.Abort as e:
        if isinstance(e.__context__, KeyboardInterrupt):
            if not ends_line:
                click.echo(err=True)  # the question's line is left unfinished
            raise KeyboardInterrupt from None
        raise


class Bar:
    """One progress line on the terminal's stderr (popctl.models.Progress), drawn over itself
    and erased when the work ends, whatever figure it reached: a bar never stays on screen at
    2% because fewer items came than were first expected, or because the work failed."""

    def __init__(self, label: str, total: int, *, octets: bool) -> None:
        self.label, self.total, self.octets = label, total, octets
        self.done = 0
        self.shown = False
        self._next = time.monotonic() + DRAW_AFTER

    def expect(self, total: int) -> None:
        self.total = total

    def __call__(self, amount: int, /) -> None:
        self.done += amount
        now = time.monotonic()
        if now >= self._next:
            self._next = now + REDRAW_EVERY
            self.draw()

    def draw(self) -> None:
        from popctl.output import human_size

        total = max(self.total, 0)
        done = min(self.done, total)  # LIST sizes can be short of what arrives (mpopd)
        count = (f"{human_size(done)}/{human_size(total)}" if self.octets
                 else f"{done}/{total}")
        figure = f"{done * 100 // total:3d}%" if total else ""
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            width = 0
        width = width or 80  # a terminal that does not say its size (0 columns)
        # The last column stays free: a line that fills it wraps on some terminals.
        room = width - 1 - len(self.label) - len(figure) - len(count) - 5
        line = f"{self.label} {figure} {count}"
        if room >= 10 and total:
            filled = room * done // total
            line = f"{self.label} [{'#' * filled}{'-' * (room - filled)}] {figure} {count}"
        sys.stderr.write(f"\r{line[:max(width - 1, 1)]}\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def erase(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False
