"""``popctl shell``: one POP3 session for many commands, so that dele then rset really undoes.

The loop reads lines, answers ``help``, ``trace on|off``, raw POP3 commands and ``quit`` itself,
and hands every other line to ``dispatch``, which the command line supplies: it parses the words
as the command line would and runs the command in the shell's session. Deletions are committed
when the shell quits; a script on stdin stops at its first error and closes without QUIT.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from collections.abc import Callable

from popctl.app.context import RunContext
from popctl.app.runner import connect
from popctl.errors import ExitCode, PopctlError, RemoteProtocolError, TransportError, UsageError
from popctl.session import Session

SHELL_COMMANDS = ("stat", "list", "uidl", "top", "retr", "dele", "rset", "noop", "capa")

# Runs one command line (its words) in the shell's context; returns its exit status and the
# error it failed with, already reported.
Dispatch = Callable[[RunContext, list[str]], tuple[int, PopctlError | None]]


class ShellStopped(PopctlError):
    """A shell script failed; the error was already reported."""

    def __init__(self, code: int) -> None:
        super().__init__("shell stopped; the session was closed without QUIT, so nothing "
                         "was deleted")
        self.exit_code = ExitCode(code)


def shell(context: RunContext, dispatch: Dispatch, *, help_text: str) -> None:
    """Read commands until quit or the end of input; ``help_text`` answers ``help``."""
    ui = context.ui
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - gives input() line editing and history
    with connect(context) as opened:
        inside = context._replace(shell=opened)
        if interactive:
            ui.note(f"connected; {opened.session.stat().count} message(s). Type help.")
        while True:
            try:
                line = input("popctl> " if interactive else "")
            except EOFError:
                break
            except KeyboardInterrupt:
                ui.warn("")
                continue
            if _line(inside, opened.session, line, dispatch, help_text, interactive=interactive):
                break


def _line(inside: RunContext, session: Session, line: str, dispatch: Dispatch, help_text: str,
          *, interactive: bool) -> bool:
    """Do what one line says; True to quit."""
    ui = inside.ui
    first = line.split(None, 1)[0] if line.strip() else "#"
    if first.startswith("#"):  # a blank line or a comment
        return False
    if first == "raw" or (first.isupper() and first not in SHELL_COMMANDS):
        # Sent as typed: quotes are the POP3 argument's own (APOP, PASS), not shell's.
        raw(inside, session, line.strip()[4:] if first == "raw" else line.strip())
        return False
    try:
        words = shlex.split(line, comments=True)
    except ValueError as e:  # an unbalanced quote, a trailing backslash
        problem = f"cannot split that line: {str(e).lower()}"
        if not interactive:
            raise UsageError(f"{problem}: script stopped, the session was closed without QUIT, "
                             "so nothing was deleted") from None
        ui.error(f"{problem}; nothing was done")
        return False
    verb = words[0] if words else ""
    if verb in ("quit", "exit"):
        return True
    if verb == "help":
        for help_line in help_text.splitlines():  # each line made safe on its own
            ui.warn(help_line)
    elif verb == "trace":
        session.set_trace(ui.tracer() if words[1:] == ["on"] else None)
    elif verb and verb not in SHELL_COMMANDS:
        if not interactive:
            raise UsageError(f"{_unknown(verb)}: script stopped, the session was closed "
                             "without QUIT, so nothing was deleted")
        ui.error(f"{_unknown(verb)}; type help")
    elif verb:
        code, error = dispatch(inside, words)
        fatal = isinstance(error, TransportError | RemoteProtocolError)
        if fatal or (not interactive and (error is not None or code != 0)):
            raise ShellStopped(error.exit_code if error is not None else code)
    return False


def _unknown(verb: str) -> str:
    """``unknown command 'lsit' (did you mean 'list'?)``."""
    import difflib

    close = difflib.get_close_matches(verb, (*SHELL_COMMANDS, "help", "trace", "quit", "exit"),
                                      n=1)
    return f"unknown command {verb!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def raw(context: RunContext, session: Session, line: str) -> None:
    """A POP3 command as typed, and its reply as the server sent it (made printable)."""
    data = io.BytesIO()
    try:
        reply = session.raw(line, data)
    except UsageError as e:
        context.ui.error(context.ui.describe(e))
        return
    sign = "+OK" if reply.ok else "-ERR"
    code = f" [{reply.code}]" if reply.code else ""
    context.ui.echo(f"{sign}{code} {reply.text}".rstrip())
    if data.getvalue():
        context.ui.echo(data.getvalue().decode("utf-8", "replace"), newline=False)
