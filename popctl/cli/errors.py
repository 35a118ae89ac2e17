"""Errors become exit codes here, and only here: one ``Error: ...`` line on stderr and the
error's documented status (``popctl.errors.ExitCode``); Ctrl-C is 130 (``Interrupted.``, or
``Interrupted: ...`` with what was done by then), a declined confirmation 8; a traceback only with
--debug (or POPCTL_DEBUG=1). The group's ``invoke`` and the shell's command lines both use it;
Click's own usage errors (no such option, a bad value, ...) are one line too (``usage_error``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import TextIO

import click

from popctl.cli.hints import describe
from popctl.display import safe
from popctl.errors import DeclinedError, ExitCode, Interrupted, PopctlError

# Where a write failure reaches us rather than a store: the output itself.
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)


def exit_status(error: BaseException, *, debug: bool) -> int:
    """Report ``error`` (being handled) and return the exit status it means.

    Click's own exceptions (usage errors, --help, Abort) are re-raised for Click to handle.
    """
    if isinstance(error, click.exceptions.Exit | click.ClickException | click.exceptions.Abort):
        raise error
    if isinstance(error, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        return ExitCode.INTERRUPTED
    if isinstance(error, BrokenPipeError) or (
            isinstance(error, PopctlError) and getattr(error, "errno", None) == errno.EPIPE):
        # stdout closed (popctl ... | head): not an error
        with contextlib.suppress(OSError):
            sys.stdout = _devnull()
        return ExitCode.OK
    if isinstance(error, DeclinedError | Interrupted):  # the user's choice, not a failure
        _report(str(error), debug=debug)
        return error.exit_code
    if isinstance(error, PopctlError):
        _report(f"Error: {describe(error)}", debug=debug)
        return error.exit_code
    if isinstance(error, OSError) and error.errno in _OUTPUT_ERRNOS:
        # Stores report their own failures; what reaches here is the output itself.
        _report(f"Error: cannot write to standard output: {error.strerror}", debug=debug)
        return ExitCode.FAILURE
    if isinstance(error, Exception):
        _report(f"Error: internal error: {type(error).__name__}: {error} (run with --debug "
                "for details, and please report it)", debug=debug)
        return ExitCode.FAILURE
    raise error


def usage_error(error: click.UsageError) -> int:
    """Report one of Click's usage errors on ONE line (Click's own shows the usage line, a
    "Try ... --help" line and a blank line first) and return its status, 2."""
    message = error.format_message().strip()
    if message.endswith("."):
        message = message[:-1]
    ctx = error.ctx
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see {ctx.command_path} --help)"
    click.echo(safe(f"Error: {message}"), err=True)
    return error.exit_code


def _report(line: str, *, debug: bool) -> None:
    if debug or os.environ.get("POPCTL_DEBUG") == "1":
        import traceback

        traceback.print_exc()
    click.echo(safe(line), err=True)


def _devnull() -> TextIO:
    return open(os.devnull, "w")
