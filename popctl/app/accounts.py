"""Named accounts in the configuration file, and their passwords in the OS keyring.

config.py and credentials.py do the reading, writing and storing; this is what the ``account``
and ``password`` commands do with them, and what they tell the user.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from popctl import config, defaults
from popctl import credentials as secrets
from popctl.app.context import RunContext
from popctl.config import Account
from popctl.errors import PopctlError, UsageError


def keyring_key(account: Account) -> str:
    return secrets.keyring_user(account.user or "", account.host or "", account.effective_port)


def account_record(account: Account, default: str | None) -> dict[str, object]:
    """An account with the values popctl will use (defaults filled in), for list and show."""
    return {
        "name": account.name, "default": account.name == default, "host": account.host,
        "port": account.effective_port, "user": account.user,
        "tls": account.tls or defaults.TLS, "auth": account.auth or defaults.MECHANISM,
        "timeout": account.timeout or defaults.TIMEOUT, "ca_file": account.ca_file,
        "fingerprint": account.fingerprint, "password_command": account.password_command,
        "oauth2_token_command": account.oauth2_token_command,
        "allow_plaintext": bool(account.allow_plaintext),
    }


def _rewritten(rewritten: bool) -> str:
    return " (the file was rewritten: its comments could not be kept)" if rewritten else ""


def add(context: RunContext, name: str, values: dict[str, Any], *, make_default: bool,
        probe: bool) -> None:
    """Add an account; ask for its host and user on a terminal when they are not given."""
    ui = context.ui
    if not config.NAME.fullmatch(name):
        raise UsageError(f"bad account name {name!r}: use letters, digits, - and _ (at most 64)")
    loaded = config.load(create=True)
    loaded.ensure_absent(name)  # before any question is asked
    for key, question in (("host", "POP3 server"), ("user", "Login name")):
        if key not in values and ui.interactive():
            values[key] = ui.ask(question)
        if key not in values:
            raise UsageError(f"account add needs --{key}")
    for key, value in values.items():
        problem = config.check_value(key, value)
        if problem:
            raise UsageError(f"--{key.replace('_', '-')}: {problem}")
    if "fingerprint" in values:  # as pasted (openssl's line, colons): kept as 64 hex digits
        values["fingerprint"] = defaults.normalize_fingerprint(values["fingerprint"])
    if probe:
        from popctl.app.probe import probe as probe_server

        values.update(probe_server(ui, values))
    new = Account(name, **values)
    rewritten = config.add_account(loaded, new, make_default=make_default)
    ui.note(f"account {name} added to {loaded.path}{_rewritten(rewritten)}")
    if not (new.password_command or new.oauth2_token_command):
        ui.note(f"store its password with: popctl password set {name}")
    if context.options.machine:
        ui.emit_one(account_record(new, name if make_default else loaded.default))


def account_names() -> list[str]:
    """The configured accounts' names, for shell completion: none when the file is missing or
    has a mistake (a completion has no way to say so; the command itself will)."""
    try:
        return list(config.load().accounts)
    except (PopctlError, OSError):
        return []


def list_accounts(context: RunContext) -> None:
    loaded = config.load()
    columns = ["name", "default", "host", "port", "user", "tls", "auth"]
    count = context.ui.emit((account_record(a, loaded.default)
                             for a in loaded.accounts.values()), columns)
    if count == 0 and context.options.fmt == "table":
        context.ui.note(f"no accounts in {loaded.path}{context.ui.hint('add-account')}")


def show(context: RunContext, name: str) -> None:
    loaded = config.load()
    chosen = loaded.account(name)
    record = account_record(chosen, loaded.default)
    key = record["keyring_user"] = keyring_key(chosen)
    found = secrets.backend()
    record["keyring_backend"] = found.describe()
    if not found.usable:
        record["keyring"] = "unavailable"
    else:
        stored = secrets.get_password(key, context.ui.note) is not None
        record["keyring"] = "stored" if stored else "not stored"
    context.ui.emit_one(record)


def remove(context: RunContext, name: str, *, yes: bool) -> None:
    """Remove an account, and its keyring entry unless another account shares it."""
    ui = context.ui
    loaded = config.load()
    key = keyring_key(loaded.account(name))
    if not yes:
        if not ui.interactive():
            raise UsageError("refusing to remove an account without confirmation",
                             hint="confirm-yes")
        ui.require(f"Remove account {name} ({key}) and its keyring entry?",
                   declined=f"account {name} was kept")
    rewritten = config.remove_account(loaded, name)
    ui.note(f"account {name} removed from {loaded.path}{_rewritten(rewritten)}")
    shared = [a.name for a in loaded.accounts.values() if a.name != name
              and keyring_key(a) == key]
    deleted = False
    if shared:
        ui.note(f"its keyring entry {key} is kept: account {shared[0]} uses it too")
    else:
        deleted = secrets.delete_password(key)
        if deleted:
            ui.note(f"its password ({key}) was deleted from the keyring")
    if context.options.machine:
        ui.emit_one({"name": name, "removed": True, "keyring_deleted": deleted})


def test(context: RunContext, name: str) -> None:
    """Connect, authenticate and STAT with an account; report what was negotiated."""
    # Only this command of the module connects: the others need not load ssl and the session.
    from popctl.app.runner import connect
    from popctl.app.targets import target_of

    context = context._replace(options=context.options._replace(account=(name,),
                                                                all_accounts=False))
    target = target_of(context)
    with connect(context, target=target) as opened:
        result = opened.session.stat()
        tls = opened.session.tls
    endpoint = target.endpoint
    context.ui.emit_one({
        "account": name, "host": endpoint.host, "port": endpoint.effective_port,
        "user": target.credentials.user, "tls": endpoint.tls.value,
        "tls_version": tls.version if tls else None, "tls_cipher": tls.cipher if tls else None,
        "mechanism": opened.session.mechanism, "credentials": opened.secret_source,
        "count": result.count, "size": result.size,
    })


# --- passwords ------------------------------------------------------------------------------------


def set_password(context: RunContext, name: str) -> None:
    """Store an account's password: asked (hidden, twice) on a terminal, else one line of
    standard input."""
    ui = context.ui
    key = keyring_key(config.load().account(name))
    found = secrets.backend()
    if not found.usable:
        raise secrets.no_backend_error(found)
    ui.note(f"the password of account {name} ({key}) goes to the keyring backend "
            f"{found.describe()}")
    if found.plaintext:
        # Said even with --quiet: the user must know the password sits in a readable file.
        ui.warn(f"warning: {found.name.rsplit('.', 1)[-1]} does not encrypt: the password is "
                f"only base64-encoded in {found.location or 'a file'}")
    if ui.interactive():
        value = ui.ask(f"Password for {key}", hidden=True, twice=True)
    else:
        value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not value:
            raise UsageError("no password on standard input (one line is read)")
    if any(c in value for c in "\r\n\0"):
        raise UsageError("the password contains a CR, LF or NUL character; nothing was stored")
    secrets.set_password(key, value)
    ui.note(f"password of account {name} stored")
    if os.environ.get("POPCTL_PASSWORD"):
        ui.note("note: POPCTL_PASSWORD is set here, and comes before the keyring: unset it for "
                "popctl to use the stored password")
    if context.options.machine:
        ui.emit_one({"account": name, "keyring_user": key, "backend": found.name,
                     "stored": True})


def delete_password(context: RunContext, name: str) -> None:
    ui = context.ui
    key = keyring_key(config.load().account(name))
    found = secrets.backend()
    if not found.usable:
        raise secrets.no_backend_error(found)
    deleted = secrets.delete_password(key)
    ui.note(f"password of account {name} ({key}) deleted from the keyring" if deleted
            else f"no password of account {name} ({key}) was stored in {found.name}")
    if context.options.machine:
        ui.emit_one({"account": name, "keyring_user": key, "deleted": deleted})
