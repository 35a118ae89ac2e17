"""The ``popctl`` group, and the way out of the process."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, NoReturn

import click

from popctl import __version__
from popctl.cli.errors import exit_status
from popctl.cli.options import State, common_options, state
from popctl.errors import ExitCode


class PopctlGroup(click.Group):
    """Turns every error into one ``Error: ...`` line and its documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BaseException as e:  # exit_status re-raises what it does not handle
            obj = ctx.find_object(State)
            ctx.exit(exit_status(e, debug=obj is not None and obj.options.debug))


@click.group(cls=PopctlGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 ok, 1 local write failed, 2 usage, 3 authentication, "
                    "4 connection/TLS/timeout, "
                    "5 server error, 6 protocol error, 7 no credentials, 8 declined, "
                    "130 interrupted. "
                    "See popctl(1).")
@click.version_option(__version__, "--version", "-V", prog_name="popctl")
@common_options
def cli() -> None:
    """Manage a POP3 mailbox without downloading it.

    \b
    Examples:
      popctl --sandbox list
      popctl --host pop.example.org --user me list --larger-than 5M
      popctl dele --larger-than 10M --older-than 7d --yes --format json
      popctl retr --all --maildir ~/Maildir --delete
    """
    # What the run starts (the sandbox server) stops when the command ends.
    click.get_current_context().call_on_close(state().resources.close)


def main(argv: list[str] | None = None) -> NoReturn:
    status: object = 0
    try:
        cli.main(args=argv, prog_name="popctl")
    except SystemExit as e:
        status = e.code
    _leave(status)


def _leave(status: object) -> NoReturn:
    """Exit as ``sys.exit(status)`` would, without the interpreter's teardown: freeing every
    module and object costs ~30 ms, a sixth of a whole purge. Standard output and error are
    flushed and the atexit handlers run first; while a non-daemon thread runs, the ordinary
    exit (which waits for it) is taken instead."""
    import atexit
    import threading

    if status is None or isinstance(status, int):
        code = status or 0
    else:  # sys.exit("message"): the message on stderr, status 1
        print(status, file=sys.stderr)
        code = 1
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left (popctl ... | head): not an error
            pass
        except OSError as e:
            if stream is sys.stdout:
                with contextlib.suppress(OSError):
                    sys.stderr.write(f"Error: cannot write to standard output: {e.strerror or e}\n")
                    sys.stderr.flush()
                code = code or ExitCode.FAILURE
    atexit._run_exitfuncs()
    os._exit(code)
