"""The application's UI (popctl.app.context.UI) made of Click: stderr for people, stdout for
records in the chosen format, prompts and progress bars only on a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, TextIO

import click

from popctl.app.context import Options, Progress, Record, TraceHook
from popctl.cli.hints import describe, words
from popctl.display import safe

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

    # What goes to stderr may quote the server (a probe, an account's error): made safe.

    def note(self, text: str) -> None:
        if not self.options.quiet:
            click.echo(safe(text), err=True)

    def warn(self, text: str) -> None:
        click.echo(safe(text), err=True)

    def error(self, text: str) -> None:
        click.echo(safe(f"Error: {text}"), err=True)

    def describe(self, error: BaseException) -> str:
        return describe(error)

    def hint(self, key: str, **args: str) -> str:
        return words(key, args)

    def interactive(self) -> bool:
        return interactive()

    def ask(self, question: str, *, hidden: bool = False, twice: bool = False) -> str:
        answer: str = click.prompt(question, hide_input=hidden, confirmation_prompt=twice,
                                   err=True)
        return answer

    def confirm(self, question: str, *, default: bool = False) -> bool:
        return click.confirm(question, default=default, err=True)

    def require(self, question: str) -> None:
        if not click.confirm(question, err=True):
            raise click.Abort()

    @property
    def shows_progress(self) -> bool:
        return not self.options.quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[Progress | None]:
        if total <= 0 or not self.shows_progress:
            yield None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update

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
