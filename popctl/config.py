"""The configuration file: named accounts in TOML, read with tomllib, written back atomically.

Secrets never live here: a ``password`` key is refused (credentials.py says where they go).
Every mistake in the file is one ``ConfigError`` line naming the file and the line. The file
chooses commands popctl runs as the user, so, as ssh does with its own, a file others could
have written is refused (``check_trusted``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from typing import NamedTuple

from popctl.defaults import MECHANISMS, TLS_MODES, default_port, normalize_fingerprint
from popctl.errors import ConfigError

# The keys an [accounts.NAME] table may hold, in the order they are written and shown.
ACCOUNT_KEYS = ("host", "port", "user", "tls", "auth", "timeout", "ca_file", "fingerprint",
                "password_command", "oauth2_token_command", "password_command_timeout",
                "allow_plaintext")
# Bare TOML keys (no quoting needed, no dots) that are also safe file and keyring names.
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADER = re.compile(r"\s*\[(?!\[)\s*([^\]]*?)\s*\]\s*(?:#.*)?$")
HEADER = "# popctl accounts: see popctl(1), FILES. Passwords do not belong here.\n"
_STRING_KEYS = ("host", "user", "auth", "ca_file", "fingerprint", "password_command",
                "oauth2_token_command")
_SECONDS_KEYS = ("timeout", "password_command_timeout")
# Keys the file may hold outside [accounts.NAME]: ``default``, and file-wide values of these
# account keys, which apply to every account that does not set its own.
FILE_WIDE_KEYS = ("password_command_timeout",)
# tomllib's time and memory grow with the square of a dotted key's parts (10,000: 2 s and
# 390 MB; 100,000 went past 24 GB); popctl's keys have three at most.
MAX_KEY_PARTS = 64
# What is not key: strings and comments (blanked, keeping their line breaks), and the
# characters that end a key. Dots left between two of those separate a key's parts.
_NOT_KEY = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
                      r"|#[^\n]*")
_KEY_END = re.compile(r"[=,{}\[\]\n]")


def config_path() -> str:
    """``$POPCTL_CONFIG``, else ``$XDG_CONFIG_HOME/popctl/config.toml`` (``~/.config``).

    Paths here are strings, not pathlib.Path: importing pathlib (with the urllib.parse and
    ipaddress it pulls in) cost every command ~10 ms, and this module is read by all of them.
    """
    explicit = os.environ.get("POPCTL_CONFIG")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    root = base if os.path.isabs(base) else os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(root, "popctl", "config.toml")


class Account(NamedTuple):
    """One ``[accounts.NAME]`` table; None means "not set here"."""

    name: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    tls: str | None = None
    auth: str | None = None
    timeout: float | None = None
    ca_file: str | None = None
    fingerprint: str | None = None
    password_command: str | None = None
    oauth2_token_command: str | None = None
    password_command_timeout: float | None = None  # for the token command too
    allow_plaintext: bool | None = None

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return default_port(self.tls)

    def values(self) -> dict[str, object]:
        """The keys set, in ACCOUNT_KEYS order."""
        return {key: getattr(self, key) for key in ACCOUNT_KEYS if getattr(self, key) is not None}


class Config(NamedTuple):
    path: str
    accounts: dict[str, Account]  # in the order of the file
    default: str | None = None
    text: str = ""  # the file as read ("" when it does not exist)
    password_command_timeout: float | None = None  # file-wide; see account()

    def ensure_absent(self, name: str) -> None:
        if name in self.accounts:
            raise ConfigError(f"account {name!r} already exists in {self.path}: remove it first "
                              f"(popctl account remove {name}) or edit the file")

    def account(self, name: str) -> Account:
        """The account as it applies: file-wide values filled in where it sets none
        (``accounts`` holds the tables as written)."""
        try:
            found = self.accounts[name]
        except KeyError:
            known = ", ".join(self.accounts) or "none"
            raise ConfigError(f"no account {name!r} in {self.path} (accounts: {known})",
                              hint="add-named-account", hint_args={"name": name}) from None
        if found.password_command_timeout is None and self.password_command_timeout is not None:
            found = found._replace(password_command_timeout=self.password_command_timeout)
        return found


# --- reading --------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None, *, create: bool = False) -> Config:
    """The configuration at ``path`` (default: config_path()); a missing file has no accounts.

    Except the file POPCTL_CONFIG names: the user asked for that one, and reading it as empty
    would hide a typo behind "no account" errors, so its absence is a ConfigError, unless the
    caller is about to ``create`` it (account add).
    """
    named = path is None and bool(os.environ.get("POPCTL_CONFIG"))
    path = config_path() if path is None else os.fspath(path)
    try:
        with open(path, "rb") as f:
            check_trusted(path, os.fstat(f.fileno()))  # what is read, not what a name points to
            data = f.read()
    except FileNotFoundError:
        if named and not create:
            raise ConfigError(f"the configuration file {path} (named by POPCTL_CONFIG) does not "
                              "exist: correct or unset POPCTL_CONFIG",
                              hint="create-config") from None
        return Config(path, {})
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the configuration is not UTF-8 text") from None
    return parse(text, path)


def check_trusted(path: str, st: os.stat_result) -> None:
    """Refuse a file others could have written, as ssh refuses such a config: its
    password_command runs as the user, its host and fingerprint say where the password goes.

    Its owner must be the user or root; it must not be writable by others, nor by its group
    unless that group is the owner's own (Debian's OpenSSH makes the same exception for umask
    002 and user private groups); and its directory (after symbolic links) must belong to the
    user or root and not be writable by others unless sticky (/tmp), or the file could be
    replaced there.
    """
    me = os.geteuid()
    if st.st_uid not in (0, me):
        raise ConfigError(f"{path}: refusing a configuration that belongs to "
                          f"{_user_name(st.st_uid)}, not to you (its password_command would run "
                          f"as you): use a file of your own, or as root: chown {_user_name(me)} "
                          f"{_quote(path)}")
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not _private_group(st)):
        who = "anyone" if st.st_mode & stat.S_IWOTH else "its group"
        raise ConfigError(f"{path}: refusing a configuration {who} can write (it chooses the "
                          f"commands popctl runs as you): fix with: chmod go-w {_quote(path)}")
    directory = os.path.dirname(os.path.realpath(path))
    try:
        where = os.stat(directory)
    except OSError:
        return
    if where.st_uid not in (0, me):
        raise ConfigError(f"{path}: refusing a configuration in {directory}, which belongs to "
                          f"{_user_name(where.st_uid)}, who could replace it: keep it in a "
                          "directory of your own")
    if where.st_mode & stat.S_IWOTH and not where.st_mode & stat.S_ISVTX:
        raise ConfigError(f"{path}: refusing a configuration in {directory}, where anyone can "
                          f"replace it: fix with: chmod o-w {_quote(directory)}")


def _private_group(st: os.stat_result) -> bool:
    """Whether the file's group has exactly one member, its owner (a user private group)."""
    import grp
    import pwd

    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
        group = grp.getgrgid(st.st_gid)
    except KeyError:
        return False
    members = set(group.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == st.st_gid}
    return members == {owner}


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)


def parse(text: str, path: str | os.PathLike[str]) -> Config:
    import tomllib  # only when there is a file: most commands without one never need it

    path = os.fspath(path)
    _check_key_depth(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(_syntax_error(str(e), path, text)) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{path}: TOML nested too deeply (arrays or inline tables inside one "
                          "another, hundreds of levels down): not a popctl configuration"
                          ) from None
    where = _Locator(text, path)
    accounts: dict[str, Account] = {}
    default = data.pop("default", None)
    tables = data.pop("accounts", {})
    wide: dict[str, float] = {}
    for key, value in data.items():
        if key == "password":
            raise where.error((), key, "a password does not belong in the configuration file: "
                              "remove it, and store it with: popctl password set NAME")
        if key not in FILE_WIDE_KEYS:
            raise where.error((), key, f"unknown key {key!r} (expected default = \"NAME\", "
                              f"{', '.join(FILE_WIDE_KEYS)} and [accounts.NAME] tables)")
        problem = check_value(key, value)
        if problem:
            raise where.error((), key, f"{key}: {problem}")
        wide[key] = float(value)
    if not isinstance(tables, dict):
        raise where.error((), "accounts", "accounts must be a table of [accounts.NAME] tables")
    for name, table in tables.items():
        if not NAME.fullmatch(name):
            raise where.error(("accounts", name), None, f"bad account name {name!r}: use letters, "
                              "digits, - and _ (at most 64)")
        if not isinstance(table, dict):
            raise where.error(("accounts",), name, f"account {name!r} must be a table: "
                              f"[accounts.{name}]")
        accounts[name] = _account(name, table, where)
    if default is not None:
        if not isinstance(default, str):
            raise where.error((), "default", "default must be an account name in quotes")
        if default not in accounts:
            raise where.error((), "default", f"default account {default!r} is not defined "
                              f"(accounts: {', '.join(accounts) or 'none'})")
    return Config(path, accounts, default, text, **wide)


def _account(name: str, table: dict[str, object], where: _Locator) -> Account:
    at = ("accounts", name)
    values: dict[str, object] = {}
    for key, value in table.items():
        if key == "password":
            raise where.error(at, key, f"a password does not belong in the configuration file: "
                              f"remove it, and store it with: popctl password set {name} "
                              "(or use password_command)")
        if key not in ACCOUNT_KEYS:
            raise where.error(at, key, f"unknown key {key!r} in account {name!r} (known: "
                              f"{', '.join(ACCOUNT_KEYS)})")
        problem = check_value(key, value)
        if problem:
            raise where.error(at, key, f"{key} of account {name!r}: {problem}")
        values[key] = value
    for key in ("host", "user"):
        if key not in values:
            raise where.error(at, None, f"account {name!r} has no {key}")
    for key in _SECONDS_KEYS:
        if isinstance(values.get(key), int):
            values[key] = float(values[key])  # type: ignore[arg-type]
    return Account(name, **values)  # type: ignore[arg-type]


def check_value(key: str, value: object) -> str | None:
    """Why ``value`` is not acceptable for ``key``, or None. Shared with ``account add``."""
    if key in _STRING_KEYS:
        if not isinstance(value, str):
            return "expected a string in quotes"
        if not value.strip():
            return "must not be empty"
        if any(c in value for c in "\r\n\0"):
            return "must be one line"
    if key == "port" and (type(value) is not int or not 1 <= value <= 65535):
        return "expected a whole number from 1 to 65535"
    if key in _SECONDS_KEYS and (type(value) not in (int, float)
                                 or not 0.1 <= value <= 3600):  # type: ignore[operator]
        return "expected a number of seconds from 0.1 to 3600"
    if key == "allow_plaintext" and not isinstance(value, bool):
        return "expected true or false"
    if key == "tls" and value not in TLS_MODES:
        return f"expected one of {', '.join(TLS_MODES)}"
    if key == "auth" and str(value).upper() not in {m.upper() for m in MECHANISMS}:
        return f"expected one of {', '.join(MECHANISMS)}"
    if key == "fingerprint":
        try:
            normalize_fingerprint(str(value))
        except ValueError as e:
            return str(e)
    return None


def _check_key_depth(text: str, path: str) -> None:
    """Refuse a dotted key or table name of more than MAX_KEY_PARTS parts before tomllib
    spends minutes and gigabytes on it."""
    if text.count(".") <= MAX_KEY_PARTS:
        return  # every file popctl writes, and any sane one
    bare = _NOT_KEY.sub(lambda m: "\n" * m[0].count("\n"), text)
    at = 0
    for piece in _KEY_END.split(bare):
        if piece.count(".") > MAX_KEY_PARTS:
            line = bare.count("\n", 0, at) + 1
            raise ConfigError(f"{path}:{line}: a key or table name of more than {MAX_KEY_PARTS} "
                              "dotted parts: not a popctl configuration")
        at += len(piece) + 1


def _syntax_error(message: str, path: str, text: str) -> str:
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message)
    if match:
        return (f"{path}:{match[2]}: TOML syntax error at column {match[3]}: "
                f"{match[1][:1].lower()}{match[1][1:]}")
    match = re.fullmatch(r"(.*) \(at end of document\)", message)
    if match:
        line = max(1, len(text.splitlines()))  # the last line is where it broke
        return f"{path}:{line}: TOML syntax error at the end of the file: {match[1].lower()}"
    return f"{path}: TOML syntax error: {message}"


class _Locator:
    """Finds the line of a key in the text, for errors tomllib cannot point at (it has no
    positions for values): the key's line inside its table, else the table's header."""

    def __init__(self, text: str, path: str) -> None:
        self.lines = text.splitlines()
        self.path = path

    def error(self, table: tuple[str, ...], key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.line(table, key)}: {message}")

    def line(self, table: tuple[str, ...], key: str | None) -> int:
        current: tuple[str, ...] = ()
        header_line = None
        key_pattern = None
        if key is not None:
            key_pattern = re.compile(rf"""\s*(["']?){re.escape(key)}\1\s*[=.]""")
        for number, text in enumerate(self.lines, 1):
            header = _HEADER.match(text)
            if header:
                current = _split_key(header[1])
                if current == table and header_line is None:
                    header_line = number
                    if key is None:
                        return number
                continue
            if key_pattern is not None and current == table and key_pattern.match(text):
                return number
        if key is not None:  # dotted keys or inline tables: the first line naming the key
            loose = re.compile(rf"""(?:^|[\s.{{,])(["']?){re.escape(key)}\1\s*[=.]""")
            for number, text in enumerate(self.lines, 1):
                if loose.search(text):
                    return number
        return header_line or 1


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.]+?)\s*(?:\.|$)""", dotted)
    return tuple(part.strip().strip("\"'") for part in parts)


# --- writing --------------------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """A TOML literal for the values accounts hold: strings, integers, floats, booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = []
        for c in value:
            if c in '"\\':
                escaped.append("\\" + c)
            elif ord(c) < 0x20 or ord(c) == 0x7F:
                escaped.append(f"\\u{ord(c):04X}")
            else:
                escaped.append(c)
        return '"' + "".join(escaped) + '"'
    raise TypeError(f"no TOML form for {type(value).__name__}")


def account_text(account: Account) -> str:
    lines = [f"[accounts.{account.name}]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in account.values().items()]
    return "\n".join(lines) + "\n"


def dump(config: Config) -> str:
    """The whole file from scratch (used only when a careful edit of the text is impossible)."""
    head = HEADER
    if config.default is not None:
        head += f"default = {toml_value(config.default)}\n"
    if config.password_command_timeout is not None:
        head += f"password_command_timeout = {toml_value(config.password_command_timeout)}\n"
    return head + "".join("\n" + account_text(a) for a in config.accounts.values())


def add_account(config: Config, account: Account, *, make_default: bool = False) -> bool:
    """Append ``account`` to the file (comments and other accounts untouched); True if the
    file had to be rewritten from scratch instead (its comments are then lost)."""
    config.ensure_absent(account.name)
    accounts = {**config.accounts, account.name: account}
    default = account.name if make_default else config.default
    text = config.text if config.text.strip() else HEADER
    if not text.endswith("\n"):
        text += "\n"
    text += "\n" + account_text(account)
    if default != config.default:
        text = _set_default(text, default)
    return _write(config._replace(accounts=accounts, default=default), text)


def remove_account(config: Config, name: str) -> bool:
    """Remove the account's table (and ``default`` if it named it); see add_account."""
    config.account(name)
    accounts = {k: v for k, v in config.accounts.items() if k != name}
    default = None if config.default == name else config.default
    lines = config.text.splitlines(keepends=True)
    start = end = None
    for number, text in enumerate(lines):
        header = _HEADER.match(text)
        if header is None:
            continue
        if start is not None:
            end = number
            break
        if _split_key(header[1]) == ("accounts", name):
            start = number
    text = config.text
    if start is not None:
        end = len(lines) if end is None else end
        while end > start + 1 and (not lines[end - 1].strip()
                                   or lines[end - 1].lstrip().startswith("#")):
            end -= 1  # comments just above the next table belong to it
        while start > 0 and not lines[start - 1].strip():
            start -= 1
        text = "".join(lines[:start] + lines[end:])
    if default != config.default:
        text = _set_default(text, default)
    return _write(config._replace(accounts=accounts, default=default), text)


def _set_default(text: str, default: str | None) -> str:
    lines = text.splitlines(keepends=True)
    first_table = next((i for i, line in enumerate(lines) if _HEADER.match(line)), len(lines))
    for i in range(first_table):
        if re.match(r"\s*default\s*=", lines[i]):
            if default is None:
                del lines[i]
            else:
                lines[i] = f"default = {toml_value(default)}\n"
            return "".join(lines)
    if default is None:
        return text
    at = 0
    while at < first_table and lines[at].lstrip().startswith("#"):
        at += 1  # after the opening comment
    lines.insert(at, f"default = {toml_value(default)}\n")
    return "".join(lines)


def _write(config: Config, text: str) -> bool:
    """Write ``text`` if it reads back as ``config``; else the file from scratch."""
    rewritten = False
    try:
        again = parse(text, config.path)
        ok = (again.accounts, again.default, again.password_command_timeout) == (
            config.accounts, config.default, config.password_command_timeout)
    except ConfigError:
        ok = False
    if not ok:
        text, rewritten = dump(config), True
    write_atomically(config.path, text)
    return rewritten


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Temp file in the same directory, fsync, mode 0600, os.replace: never half a file."""
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)  # keep a dotfile manager's link; replace what it points to
    directory, name = os.path.split(path)
    os.makedirs(directory or ".", mode=0o700, exist_ok=True)
    import tempfile

    fd, temp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise

