"""``popctl account ...`` and ``popctl password ...``: named accounts and their passwords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from popctl import defaults
from popctl.app.context import RunContext
from popctl.cli.group import cli
from popctl.cli.options import (
    common_options,
    complete_account,
    flag,
    output_options,
    pass_run,
    state,
)
from popctl.errors import UsageError

_name = click.argument("name", shell_complete=complete_account)


def one_account(f: Callable[..., None]) -> Callable[..., None]:
    """A command about the account NAME, with the output options and the run context."""
    return _name(output_options(pass_run(f)))


@cli.group()
def account() -> None:
    """Named accounts in the configuration file (see popctl(1), FILES).

    \b
    Examples:
      popctl account add work --host pop.example.org --user me --default
      popctl password set work
      popctl account test work
      popctl --all-accounts list --larger-than 5M
    """


@account.command(name="add")
@click.argument("name")
@click.option("--host", "-H", "host", help="POP3 server host name (asked on a terminal).")
@click.option("--port", "-P", "port", type=click.IntRange(1, 65535),
              help=f"Server port [default: {defaults.IMPLICIT_TLS_PORT} for --tls implicit, "
                   f"else {defaults.PLAIN_PORT}].")
@click.option("--user", "-u", "user", help="Login name (asked on a terminal).")
@click.option("--tls", "tls", type=click.Choice(defaults.TLS_MODES),
              help="implicit, starttls or none.")
@click.option("--auth", "auth", help=f"Authentication mechanism [default: {defaults.MECHANISM}].")
@click.option("--timeout", "timeout", type=click.FloatRange(*defaults.TIMEOUT_RANGE),
              help="Seconds.")
@click.option("--ca-file", "ca_file", help="CA certificates (PEM) to trust for this server.")
@click.option("--fingerprint", "fingerprint", help="SHA-256 fingerprint to pin.")
@click.option("--password-command", "password_command", metavar="COMMAND",
              help="Shell command whose first output line is the password.")
@click.option("--oauth2-token-command", "oauth2_token_command", metavar="COMMAND",
              help="Shell command whose first output line is an OAuth2 access token.")
@click.option("--allow-plaintext", "allow_plaintext", is_flag=True, default=None,
              help="Allow credentials over a connection without TLS.")
@click.option("--default", "make_default", is_flag=True,
              help="Make it the default account.")
@click.option("--probe", is_flag=True,
              help="Connect first: find the TLS mode (implicit TLS, then STLS) and the best "
                   "mechanism the server offers, and propose them.")
@output_options
@pass_run
def account_add(run: RunContext, name: str, make_default: bool, probe: bool,
                **settings: Any) -> None:
    """Add an account to the configuration file (never its password: see password set).

    \b
    Examples:
      popctl account add work --host pop.example.org --user me@example.org
      popctl account add gmail --host pop.gmail.com --user me@gmail.com --probe
    """
    from popctl.app import accounts

    given = {key: value for key, value in settings.items() if value is not None}
    accounts.add(run, name, given, make_default=make_default, probe=probe)


@account.command(name="list")
@output_options
@pass_run
def account_list(run: RunContext) -> None:
    """The configured accounts (no secrets).

    \b
    Examples:
      popctl account list
      popctl account list --json | jq -r '.[].name'
    """
    from popctl.app import accounts

    accounts.list_accounts(run)


@account.command(name="show")
@one_account
def account_show(run: RunContext, name: str) -> None:
    """One account's settings and whether the keyring holds its password.

    \b
    Example:
      popctl account show work
    """
    from popctl.app import accounts

    accounts.show(run, name)


@account.command(name="remove")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@one_account
def account_remove(run: RunContext, name: str, yes: bool) -> None:
    """Remove an account from the configuration file, and its password from the keyring.

    On a terminal popctl asks first; without one it requires --yes.

    \b
    Examples:
      popctl account remove work
      popctl account remove old --yes
    """
    from popctl.app import accounts

    accounts.remove(run, name, yes=yes)


@account.command(name="test")
@_name
@common_options
@pass_run
def account_test(run: RunContext, name: str) -> None:
    """Connect, authenticate and STAT; report what was negotiated.

    \b
    Example:
      popctl account test work --trace
    """
    from popctl.app import accounts

    given = state().given
    for option in ("account", "all_accounts"):
        if option in given:
            raise UsageError(f"account test takes the account as its argument: drop "
                             f"{flag(option)}")
    if "sandbox" in given:
        raise UsageError("account test tests a configured account, not the sandbox: drop "
                         "--sandbox (popctl --sandbox capa shows the sandbox's side)")
    accounts.test(run, name)


@cli.group()
def password() -> None:
    """An account's password in the OS keyring (service "popctl").

    \b
    Examples:
      popctl password set work                 # asks, hidden, twice
      pass show mail/work | popctl password set work
      popctl password delete work
    """


@password.command(name="set")
@one_account
def password_set(run: RunContext, name: str) -> None:
    """Store an account's password in the keyring: asked (hidden) on a terminal, else one line
    read from standard input. Never from the command line.

    \b
    Examples:
      popctl password set work
      pass show mail/work | popctl password set work
    """
    from popctl.app import accounts

    accounts.set_password(run, name)


@password.command(name="delete")
@one_account
def password_delete(run: RunContext, name: str) -> None:
    """Delete an account's password from the keyring (nothing stored is not an error).

    \b
    Example:
      popctl password delete work
    """
    from popctl.app import accounts

    accounts.delete_password(run, name)
