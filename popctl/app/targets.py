"""Which server, as whom, with which secret: options, the environment and accounts resolved.

Each setting comes from the options (the command line, else the environment), else the account
(``--account``, ``POPCTL_ACCOUNT``, or the file's default when no host was given), else the
built-in default (``popctl.defaults``). The secret is looked up after connecting, so that a bad
certificate is reported before anyone is asked for a password.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple

from popctl import defaults
from popctl.app.context import UI, Options, RunContext
from popctl.errors import AuthenticationError, NoCredentialsError, PopctlError, UsageError
from popctl.models import Credentials, Endpoint, TLSMode

if TYPE_CHECKING:
    from popctl.config import Account
    from popctl.sandbox import SandboxServer

# config.py (and tomllib with it) is imported only when an account is involved: a command given
# its server on the command line or in the environment never reads the file.


class Target(NamedTuple):
    endpoint: Endpoint
    credentials: Credentials  # without the secret until find_secret
    account: Account | None = None  # the configured account in use
    own: bool = False  # its own user, host and port: its password/token commands may be used
    source: str | None = None  # where the secret in ``credentials`` came from, once found


def account_names(options: Options) -> tuple[str, ...]:
    """--account (all of them), else POPCTL_ACCOUNT (one name)."""
    if options.account:
        return options.account
    name = os.environ.get("POPCTL_ACCOUNT", "").strip()
    return (name,) if name else ()


def refuse_shared_password() -> None:
    """POPCTL_PASSWORD comes before every account's own secret (find_secret): in a run across
    accounts it would be sent to all their servers, so such a run refuses it."""
    if os.environ.get("POPCTL_PASSWORD"):
        raise UsageError("POPCTL_PASSWORD would be sent to the server of every account: unset "
                         "it for a run across accounts (each then uses its keyring entry or "
                         "password_command)")


def several_accounts(options: Options) -> list[str] | None:
    """The accounts of a run across accounts (--all-accounts, --account twice or more)."""
    if options.all_accounts:
        if options.account:
            raise UsageError("one account and all accounts were both asked for",
                             hint="account-or-all")
        from popctl import config

        loaded = config.load()
        if not loaded.accounts:
            raise UsageError(f"all accounts were asked for, and there are none in "
                             f"{loaded.path}", hint="add-account")
        return list(loaded.accounts)
    names = account_names(options)
    return list(names) if len(names) > 1 else None


def selected_account(options: Options) -> Account | None:
    """The account in use: --account or POPCTL_ACCOUNT; else, when no host was given at all,
    the file's default account."""
    names = account_names(options)
    if options.all_accounts or len(names) > 1:
        raise UsageError("this command works on one account at a time", hint="one-account")
    if not names and options.host:
        return None  # a server named on the command line or in POPCTL_HOST: no file needed
    from popctl import config

    loaded = config.load()
    if names:
        return loaded.account(names[0])
    if loaded.default is not None:
        return loaded.account(loaded.default)
    if loaded.accounts:
        raise UsageError("no server given", hint="choose-account",
                         hint_args={"accounts": ", ".join(loaded.accounts),
                                    "path": loaded.path})
    return None


def resolve_target(options: Options) -> Target:
    """Endpoint and credentials (without the secret) of a real server (not the sandbox)."""
    account = selected_account(options)

    def pick(name: str) -> Any:
        value = getattr(options, name)
        return getattr(account, name) if value is None and account is not None else value

    host = pick("host")
    if not host:
        raise UsageError("no server given", hint="no-host")
    fingerprint = pick("fingerprint")
    if fingerprint is not None:
        try:
            defaults.normalize_fingerprint(fingerprint)
        except ValueError as e:
            raise UsageError(f"fingerprint {fingerprint!r}: {e}") from None
    ca_file = options.ca_file
    if ca_file is None and account is not None and account.ca_file is not None:
        from popctl import config

        # ~ and paths relative to the configuration file's directory
        ca_file = os.path.join(os.path.dirname(config.config_path()),
                               os.path.expanduser(account.ca_file))
        if not os.path.isfile(ca_file):
            raise UsageError(f"ca_file {ca_file} of account {account.name}: no such file")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise UsageError(f"CA file {ca_file}: no such file")
    timeout = pick("timeout") or defaults.TIMEOUT
    endpoint = Endpoint(host=host, port=pick("port"), tls=TLSMode(pick("tls") or defaults.TLS),
                        ca_file=ca_file, fingerprint=fingerprint,
                        insecure=options.insecure, connect_timeout=timeout, timeout=timeout,
                        session_timeout=options.session_timeout)
    user = pick("user")
    if not user:
        raise UsageError("no user given", hint="no-user")
    credentials = Credentials(user=user, password=None,
                              mechanism=pick("auth") or defaults.MECHANISM,
                              allow_plaintext=bool(pick("allow_plaintext")))
    own = account is not None and (user, host.lower(), endpoint.effective_port) == (
        account.user, (account.host or "").lower(), account.effective_port)
    return Target(endpoint, credentials, account, own)


def connect_ahead(run: RunContext) -> RunContext:
    """``run``, with the connection to its one server begun (RunContext.ahead) while the
    command's code still loads; ``run`` itself where it will not make that connection (inside
    the shell, with the sandbox, across accounts), where it would be refused before connecting,
    or where its server cannot be resolved (the same error is then raised, as before, where
    the connection is made). Called once the command's arguments have been checked: a bad one
    connects to nothing."""
    options = run.options
    if run.shell is not None or options.sandbox or options.all_accounts \
            or len(account_names(options)) > 1:
        return run
    try:
        target = resolve_target(options)
    except PopctlError:
        return run
    if target.endpoint.tls is TLSMode.NONE and not target.credentials.allow_plaintext:
        return run  # the login may be refused before connecting (auth.refuse_plaintext)
    from popctl.transport import PendingConnection

    ahead = PendingConnection(target.endpoint)
    run.resources.callback(ahead.close)
    return run._replace(ahead=ahead)


# --- the sandbox ----------------------------------------------------------------------------------

_sandbox: SandboxServer | None = None  # one per process, whatever the number of sessions


def sandbox_target(run: RunContext) -> Target:
    """The bundled sample server, started on first use and stopped when the run ends."""
    global _sandbox
    if _sandbox is None:
        from popctl.sandbox import SandboxServer

        _sandbox = SandboxServer().start()
        run.resources.callback(stop_sandbox)
        host, port = _sandbox.address
        run.ui.note(f"sandbox: sample POP3 server on {host} port {port} (user sandbox, "
                    "password sandbox)")
    timeout = run.options.timeout or defaults.TIMEOUT
    endpoint = Endpoint(host="localhost", port=_sandbox.address[1], tls=TLSMode.STARTTLS,
                        ca_file=_sandbox.ca_file, connect_timeout=timeout, timeout=timeout,
                        session_timeout=run.options.session_timeout)
    return Target(endpoint, Credentials("sandbox", "sandbox",
                                        mechanism=run.options.auth or defaults.MECHANISM))


def stop_sandbox() -> None:
    global _sandbox
    if _sandbox is not None:
        _sandbox.stop()
        _sandbox = None


def target_of(run: RunContext) -> Target:
    return sandbox_target(run) if run.options.sandbox else resolve_target(run.options)


# --- the secret -----------------------------------------------------------------------------------


def find_secret(target: Target, ui: UI) -> tuple[Credentials, str | None]:
    """The credentials with their secret, and where it came from (``credentials.find_password``
    keeps the order: POPCTL_PASSWORD, the account's oauth2_token_command, keyring entry and
    password_command), else a prompt on a terminal."""
    credentials = target.credentials
    if credentials.password is not None or credentials.oauth2_token is not None:
        return credentials, target.source
    from popctl import credentials as secrets

    account = target.account
    user, host = credentials.user, target.endpoint.host
    if account is not None and not target.own and (account.password_command
                                                   or account.oauth2_token_command):
        ui.note(f"note: not using the password or token command of account {account.name}: "
                "the user, host or port was overridden")
    key = None
    if account is not None:
        key = secrets.keyring_user(user, host, target.endpoint.effective_port)
    own = account if account is not None and target.own else None
    token_command = (own.oauth2_token_command if own is not None and credentials.mechanism.upper()
                     in ("AUTO", "XOAUTH2", "OAUTHBEARER") else None)
    found = secrets.find_password(key, own.password_command if own else None,
                                  account.name if account else None, warn=ui.note,
                                  timeout=account.password_command_timeout if account else None,
                                  token_command=token_command,
                                  token_only=credentials.mechanism.upper() != "AUTO")
    if found is not None and found.source == "oauth2_token_command":
        return credentials._replace(oauth2_token=found.value), found.source
    if found is not None:
        return credentials._replace(password=found.value), found.source
    if ui.interactive():
        return credentials._replace(password=ui.ask(f"Password for {user}@{host}",
                                                    hidden=True)), "prompt"
    if account is not None:
        keyring = secrets.backend()
        if not keyring.usable:  # `password set` would only say so: name the ways out now
            raise NoCredentialsError(
                f"no password for account {account.name} ({key}), and no usable keyring "
                f"backend here ({keyring.name}) to store one in: {secrets.NO_BACKEND_WAYS_OUT}")
        raise NoCredentialsError(
            f"no password for account {account.name} ({key}): store one with: popctl password "
            f"set {account.name} (or give the account a password_command, or set "
            "POPCTL_PASSWORD)")
    raise NoCredentialsError(
        f"no password for {user}@{host}: set POPCTL_PASSWORD, or run popctl on a terminal "
        "to be asked")


def refused(error: AuthenticationError, target: Target, source: str | None
            ) -> AuthenticationError:
    """A refused login, saying where the secret came from and what to do about it: with an
    account, where several sources compete (without one it can only be POPCTL_PASSWORD or the
    prompt, and the person knows which)."""
    account = target.account
    if account is None:
        return error
    name = account.name
    from popctl.credentials import keyring_user

    key = keyring_user(target.credentials.user, target.endpoint.host,
                       target.endpoint.effective_port)
    origins = {
        "POPCTL_PASSWORD": "the password came from POPCTL_PASSWORD (it comes before an "
                           "account's keyring entry and password_command): correct or unset it",
        "keyring": f"the password came from the keyring (popctl, {key}): if it has changed, "
                   f"store the new one with: popctl password set {name}",
        "password_command": f"the password came from the password_command of account {name}: "
                            "check what it prints",
        "oauth2_token_command": f"the token came from the oauth2_token_command of account "
                                f"{name}: check that it prints a fresh access token",
        "prompt": "the password was the one typed at the prompt (none was stored for "
                  f"{key}): check it, or store it with: popctl password set {name}",
    }
    origin = origins.get(source or "")
    if origin is None:
        return error
    return AuthenticationError(f"{str(error).rstrip('.')}; {origin}", command=error.command,
                               code=error.code, text=error.text)
