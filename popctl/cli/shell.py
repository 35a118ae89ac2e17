"""``popctl shell``: the loop is popctl.app.shell's; each command line it reads is parsed here,
as on the command line, and run in the shell's one session."""

from __future__ import annotations

import sys

import click

from popctl.app.context import RunContext
from popctl.cli.errors import exit_status, usage_error
from popctl.cli.group import cli
from popctl.cli.options import State, common_options, pass_run
from popctl.errors import PopctlError

SHELL_HELP = """\
Commands (same options as on the command line; one session for all of them):
  stat | list | uidl | top | retr | dele | rset | noop | capa   e.g.  list --larger-than 1M
  LAST, NOOP, STAT, ... (upper case) or  raw LINE               send a POP3 command as typed
  trace on|off                                                  show the dialogue on stderr
  help                                                          this text
  quit | exit | Ctrl-D                                          QUIT: commit deletions, leave
Deletions take effect only when you quit; rset undoes them before that."""


@cli.command()
@common_options
@pass_run
def shell(run: RunContext) -> None:
    """An interactive prompt in ONE POP3 session, where dele then rset really undoes.

    Takes the same commands and options as the command line, plus raw POP3 commands
    (e.g. LAST), `trace on|off` and `help`. Deletions are committed when you quit. When stdin
    is not a terminal it reads commands from stdin as a script and stops at the first error,
    closing without QUIT so that nothing is deleted.

    \b
    Example:
      printf 'list --larger-than 5M\\ndele 3 --yes\\nquit\\n' | popctl shell
    """
    from popctl.app import shell as interact

    interact.shell(run, dispatch, help_text=SHELL_HELP)


def dispatch(inside: RunContext, words: list[str]) -> tuple[int, PopctlError | None]:
    """Run one command line (``list --larger-than 1M``) in the shell's session; return its
    exit status and its error, reported already. A mistyped option or value is that line's
    usage error: on a terminal the shell goes on, its session and deletion marks with it; a
    script ends there (status 2), its session closed without QUIT. ``--help`` is shown and the
    shell goes on."""
    root = click.get_current_context().find_root()
    command = cli.get_command(root, words[0])
    assert command is not None, words[0]  # the shell passes only its commands
    obj = State(inside.options, shell=inside.shell, resources=inside.resources)
    try:
        with command.make_context(words[0], words[1:], parent=root, obj=obj) as ctx:
            command.invoke(ctx)
    except click.exceptions.Exit as e:
        return e.exit_code, None
    except click.UsageError as e:  # Click's own (no such option, a bad value)
        if not sys.stdin.isatty():  # a script: this one line ends it (status 2), as popctl's
            raise
        return usage_error(e), None
    except BaseException as e:  # exit_status re-raises what it does not handle
        return exit_status(e, debug=obj.options.debug), e if isinstance(e, PopctlError) else None
    return 0, None
