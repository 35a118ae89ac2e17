"""The ``popctl`` group, and the way out of the process."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import Any, Final, NoReturn

import click

from popctl import __version__
from popctl.cli import manual
from popctl.cli.commands import PopctlSubgroup
from popctl.cli.errors import exit_status, usage_error
from popctl.cli.options import State, common_options, state
from popctl.errors import ExitCode

# The module that defines each command, imported when the command is named (or listed, for
# --help): `popctl --version` loads none of them, and a command only its own.
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("stat", "list", "uidl", "top", "retr", "dele", "rset", "noop", "capa"),
                    "mailbox"),
    "account": "accounts", "password": "accounts", "browse": "browse", "sandbox": "sandbox",
    "seen": "seen", "shell": "shell",
}
# The first paragraph of each command's help, for `popctl --help` to list the commands without
# importing them (tests/unit/test_startup.py checks each against the command's own).
COMMAND_SUMMARIES: dict[str, str] = {
    "account": "Named accounts in the configuration file (see popctl(1), FILES).",
    "browse": "Full-screen mailbox view: look, mark, delete.",
    "capa": "Server information: capabilities, implementation, SASL, TLS and certificate.",
    "dele": "Delete messages on the server (committed when the session ends cleanly).",
    "list": "What is waiting: number, size, UID, From, Subject, Date (headers only).",
    "noop": "Check that the server answers (connect, log in, NOOP).",
    "password": 'An account\'s password in the OS keyring (service "popctl").',
    "retr": "Download whole messages: to stdout (byte-exact), a file, a directory, a Maildir, "
            "an mbox\nor a program.",
    "rset": "Undo deletions marked in this session.",
    "sandbox": "popctl's bundled sample POP3 server (popctl --sandbox COMMAND starts one for a "
               "command).",
    "seen": "What `retr --new` recorded: the UIDs an account stored into a store, and when.",
    "shell": "An interactive prompt in ONE POP3 session, where dele then rset really undoes.",
    "stat": "Message count and total size in octets.",
    "top": "Headers and the first LINES body lines of one message (raw, or parsed with --json).",
    "uidl": "Message numbers and their unique ids (stable across sessions).",
}


class PopctlGroup(PopctlSubgroup):
    """Turns every error into one ``Error: ...`` line and its documented exit code: those of
    the command line itself (parsed in ``make_context``), and those of the commands."""

    group_class = PopctlSubgroup

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's list of commands, from COMMAND_SUMMARIES for those not imported."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, self.commands[name].get_short_help_str(limit) if name in self.commands
                 else click.utils.make_default_short_help(COMMAND_SUMMARIES[name], limit))
                for name in names if name not in self.commands or not self.commands[name].hidden]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            import importlib

            importlib.import_module(f"popctl.cli.{module}")  # its decorators register it
        return super().get_command(ctx, cmd_name)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:  # `popctl` alone: the help, as Click shows it
            raise
        except click.UsageError as e:
            raise click.exceptions.Exit(usage_error(e)) from e

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:  # `popctl account` alone: its help
            raise
        except click.UsageError as e:
            ctx.exit(usage_error(e))
        except BaseException as e:  # exit_status re-raises what it does not handle
            obj = ctx.find_object(State)
            ctx.exit(exit_status(e, debug=obj is not None and obj.options.debug))


@click.group("popctl", cls=PopctlGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 ok, 1 local write failed, 2 usage, 3 authentication, "
                    "4 connection/TLS/timeout, "
                    "5 server error, 6 protocol error, 7 no credentials, 8 declined, "
                    "75 try again later, 130 interrupted. See popctl(1) or popctl --man.")
@click.version_option(__version__, "--version", "-V", prog_name="popctl")
@click.option("--man", is_flag=True, expose_value=False, is_eager=True, callback=manual.show,
              help="Show the manual page, popctl(1), and exit (its roff source when standard "
                   "output is not a terminal).")
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


# The cyclic garbage collector's first threshold: collect after this many more container
# objects were made than freed (Python's default is 700). A pipelined window keeps a thousand
# requests and rows alive, which every collection looked at again: 550 collections, 0.045 s
# (3% of the CPU) of a 100,000-message NDJSON listing, where 10,000 makes 8 (0.004 s).
# popctl's objects are freed by reference counting (that listing's collections find fewer
# than 500 objects in cycles in all), so little memory is left waiting for a collection.
GC_THRESHOLD: Final = 10_000


def main(argv: list[str] | None = None) -> NoReturn:
    gc.set_threshold(GC_THRESHOLD)
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
