"""popctl/config.py: where the file is, what it may hold, one exact line for each mistake in it,
and writing it back (atomic, 0600, other accounts and comments kept)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from popctl import auth, config
from popctl.cli import cli
from popctl.config import Account, Config
from popctl.errors import ConfigError, ExitCode
from popctl.models import TLSMode
from tests.support.bounded import hang_guard

GOOD = """\
# my mail
default = "work"

[accounts.work]
host = "pop.example.org"
user = "me@example.org"
tls = "starttls"
port = 1110
auth = "scram-sha-256"
timeout = 12
ca_file = "~/ca.pem"
fingerprint = "sha256:ABCD00112233445566778899aabbccddeeff00112233445566778899aabbccdd"
password_command = "pass show mail/work | head -1"
allow_plaintext = false

[accounts.gmail]   # OAuth2
host = "pop.gmail.com"
user = "me@gmail.com"
oauth2_token_command = "oauth2-helper gmail"
"""


def parse(text: str, path: str = "/etc/c.toml") -> Config:
    return config.parse(text, Path(path))


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.exit_code == ExitCode.USAGE
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- where ----------------------------------------------------------------------------------------


def test_path_from_popctl_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POPCTL_CONFIG", str(tmp_path / "x.toml"))
    assert config.config_path() == str(tmp_path / "x.toml")


def test_path_from_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POPCTL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == str(tmp_path / "xdg" / "popctl" / "config.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert config.config_path() == str(tmp_path / "h" / ".config" / "popctl" / "config.toml")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config.config_path() == str(tmp_path / "h" / ".config" / "popctl" / "config.toml")


def test_missing_file_has_no_accounts(tmp_path: Path) -> None:
    loaded = config.load(tmp_path / "none.toml")
    assert loaded.accounts == {} and loaded.default is None


# --- what -----------------------------------------------------------------------------------------


def test_a_full_file() -> None:
    loaded = parse(GOOD)
    assert loaded.default == "work"
    assert list(loaded.accounts) == ["work", "gmail"]
    work = loaded.accounts["work"]
    assert work.values() == {
        "host": "pop.example.org", "port": 1110, "user": "me@example.org", "tls": "starttls",
        "auth": "scram-sha-256", "timeout": 12.0, "ca_file": "~/ca.pem",
        "fingerprint": "sha256:ABCD00112233445566778899aabbccddeeff00112233445566778899aabbccdd",
        "password_command": "pass show mail/work | head -1", "allow_plaintext": False}
    assert isinstance(work.timeout, float)
    gmail = loaded.accounts["gmail"]
    assert (gmail.effective_port, gmail.oauth2_token_command) == (995, "oauth2-helper gmail")
    assert Account("x", tls="starttls").effective_port == 110
    assert Account("x", tls="none").effective_port == 110


def test_constants_match_the_code_they_mirror() -> None:
    assert tuple(mode.value for mode in TLSMode) == config.TLS_MODES
    assert {m.upper() for m in config.MECHANISMS} == {"AUTO", *auth.SUPPORTED}


def test_unknown_account_names_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(GOOD).account("home")
    from popctl.cli.hints import describe

    assert describe(caught.value) == (
        "no account 'home' in /etc/c.toml (accounts: work, gmail); add it with: popctl account "
        "add home --host HOST --user USER")


# --- each mistake: one line, file and line number ------------------------------------------------

ACCOUNT = '[accounts.work]\nhost = "h"\nuser = "u"\n'


def test_a_password_is_refused() -> None:
    assert error_of(ACCOUNT + 'password = "hunter2"\n') == (
        "/etc/c.toml:4: a password does not belong in the configuration file: remove it, and "
        "store it with: popctl password set work (or use password_command)")


def test_a_password_at_the_top_is_refused() -> None:
    assert error_of('password = "hunter2"\n' + ACCOUNT) == (
        "/etc/c.toml:1: a password does not belong in the configuration file: remove it, and "
        "store it with: popctl password set NAME")


def test_the_password_is_not_repeated_in_the_error() -> None:
    assert "hunter2" not in error_of(ACCOUNT + 'password = "hunter2"\n')


def test_unknown_key() -> None:
    assert error_of(ACCOUNT + "\n# typo below\nhots = 'x'\n") == (
        "/etc/c.toml:6: unknown key 'hots' in account 'work' (known: host, port, user, tls, "
        "auth, timeout, ca_file, fingerprint, password_command, oauth2_token_command, "
        "password_command_timeout, allow_plaintext)")


def test_unknown_top_level_key() -> None:
    assert error_of('defualt = "work"\n' + ACCOUNT) == (
        "/etc/c.toml:1: unknown key 'defualt' (expected default = \"NAME\", "
        "password_command_timeout and [accounts.NAME] tables)")


@pytest.mark.parametrize(("line", "message"), [
    ("port = 0", "port of account 'work': expected a whole number from 1 to 65535"),
    ("port = 70000", "port of account 'work': expected a whole number from 1 to 65535"),
    ('port = "995"', "port of account 'work': expected a whole number from 1 to 65535"),
    ("port = true", "port of account 'work': expected a whole number from 1 to 65535"),
    ('tls = "ssl"', "tls of account 'work': expected one of implicit, starttls, none"),
    ('auth = "NTLM"', "auth of account 'work': expected one of auto, USER, APOP, PLAIN, LOGIN, "
                      "CRAM-MD5, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER"),
    ("timeout = 0", "timeout of account 'work': expected a number of seconds from 0.1 to 3600"),
    ('timeout = "30"', "timeout of account 'work': expected a number of seconds from 0.1 to "
                       "3600"),
    ('allow_plaintext = "yes"', "allow_plaintext of account 'work': expected true or false"),
    ("ca_file = 3", "ca_file of account 'work': expected a string in quotes"),
    ('password_command = ""', "password_command of account 'work': must not be empty"),
    ('fingerprint = "abc"', "fingerprint of account 'work': a SHA-256 fingerprint is 64 hex "
                            "digits (colons allowed)"),
])
def test_bad_values(line: str, message: str) -> None:
    assert error_of(ACCOUNT + line + "\n") == f"/etc/c.toml:4: {message}"


def test_the_line_is_the_key_in_its_own_table() -> None:
    text = ('[accounts.a]\nhost = "h"\nuser = "u"\nport = 1\n\n'
            '[accounts.b]\nhost = "h"\nuser = "u"\nport = 0\n')
    assert error_of(text).startswith("/etc/c.toml:9: port of account 'b'")


def test_missing_host_or_user() -> None:
    assert error_of('\n[accounts.work]\nuser = "u"\n') == (
        "/etc/c.toml:2: account 'work' has no host")
    assert error_of('[accounts.work]\nhost = "h"\n') == "/etc/c.toml:1: account 'work' has no user"


def test_default_must_exist() -> None:
    assert error_of('default = "home"\n' + ACCOUNT) == (
        "/etc/c.toml:1: default account 'home' is not defined (accounts: work)")


def test_bad_account_name() -> None:
    assert error_of('[accounts."my work"]\nhost = "h"\nuser = "u"\n') == (
        "/etc/c.toml:1: bad account name 'my work': use letters, digits, - and _ (at most 64)")


def test_account_must_be_a_table() -> None:
    assert error_of('[accounts]\nwork = "pop.example.org"\n') == (
        "/etc/c.toml:2: account 'work' must be a table: [accounts.work]")


@pytest.mark.parametrize(("text", "message"), [
    ('[accounts.work\nhost = "h"\n',
     "/etc/c.toml:1: TOML syntax error at column 15: expected ']' at the end of a table "
     "declaration"),
    (ACCOUNT + 'port = 995\nuser "x"\n',
     "/etc/c.toml:5: TOML syntax error at column 6: expected '=' after a key in a key/value pair"),
    (ACCOUNT + 'host = "x\n', "/etc/c.toml:4: TOML syntax error at column 10: illegal character "
                              "'\\n'"),
    (ACCOUNT + "timeout = \n", "/etc/c.toml:4: TOML syntax error at column 11: invalid value"),
    (ACCOUNT + "timeout = ", "/etc/c.toml:4: TOML syntax error at the end of the file: "
                             "invalid value"),
])
def test_toml_syntax_errors(text: str, message: str) -> None:
    assert error_of(text) == message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(ACCOUNT.encode() + b'# caf\xe9\n')
    with pytest.raises(ConfigError, match=r"c\.toml:4: the configuration is not UTF-8 text$"):
        config.load(path)


# --- writing --------------------------------------------------------------------------------------


def test_add_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    rewritten = config.add_account(config.load(path), Account(
        "work", host="pop.example.org", user='me "quoted" \\ \t', port=995, timeout=2.5,
        allow_plaintext=True), make_default=True)
    assert not rewritten
    assert path.read_text() == (
        "# popctl accounts: see popctl(1), FILES. Passwords do not belong here.\n"
        'default = "work"\n'
        "\n"
        "[accounts.work]\n"
        'host = "pop.example.org"\n'
        "port = 995\n"
        'user = "me \\"quoted\\" \\\\ \\u0009"\n'
        "timeout = 2.5\n"
        "allow_plaintext = true\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path).accounts["work"].user == 'me "quoted" \\ \t'


def test_add_keeps_comments_and_other_accounts(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    config.add_account(config.load(path), Account("home", host="h", user="u"))
    text = path.read_text()
    assert text.startswith(GOOD)
    assert text.endswith('\n[accounts.home]\nhost = "h"\nuser = "u"\n')
    assert list(config.load(path).accounts) == ["work", "gmail", "home"]


def test_add_refuses_an_existing_name(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match="account 'work' already exists in"):
        config.add_account(config.load(path), Account("work", host="h", user="u"))
    assert path.read_text() == GOOD


def test_remove_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD + '\n# the last one\n[accounts.home]\nhost = "h"\nuser = "u"\n')
    config.remove_account(config.load(path), "gmail")
    assert path.read_text() == GOOD.split("\n[accounts.gmail]")[0] + (
        '\n# the last one\n[accounts.home]\nhost = "h"\nuser = "u"\n')
    config.remove_account(config.load(path), "work")  # the default: its line goes too
    assert path.read_text() == '# my mail\n\n# the last one\n[accounts.home]\nhost = "h"\n' \
                               'user = "u"\n'
    assert config.load(path).default is None


def test_an_unusual_layout_is_rewritten_whole(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('accounts.a = { host = "h", user = "u" }\n'
                    'accounts.b = { host = "h2", user = "u2" }\n')
    assert config.remove_account(config.load(path), "a") is True
    loaded = config.load(path)
    assert list(loaded.accounts) == ["b"] and loaded.accounts["b"].host == "h2"


def test_a_symlinked_file_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "popctl.toml"
    real.parent.mkdir()
    real.write_text(GOOD)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    config.add_account(config.load(link), Account("home", host="h", user="u"))
    assert link.is_symlink() and "[accounts.home]" in real.read_text()


def test_a_failed_write_leaves_the_file_and_no_temp(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        config.add_account(config.load(path), Account("home", host="h", user="u"))
    assert path.read_text() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


# --- issue 11: a file-wide command timeout, files others could write, absurd nesting ----------


def test_a_file_wide_timeout_applies_where_an_account_sets_none(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('# mine\npassword_command_timeout = 120\ndefault = "a"\n\n'
                    '[accounts.a]\nhost = "h"\nuser = "u"\n\n'
                    '[accounts.b]\nhost = "h"\nuser = "u"\npassword_command_timeout = 5\n')
    loaded = config.load(path)
    assert loaded.password_command_timeout == 120.0
    assert loaded.accounts["a"].password_command_timeout is None  # as written
    assert loaded.account("a").password_command_timeout == 120.0  # as it applies
    assert loaded.account("b").password_command_timeout == 5.0
    # Writing keeps the file-wide key where it was, and does not copy it into a new table.
    assert config.add_account(loaded, Account("c", host="h", user="u")) is False
    text = path.read_text()
    assert text.startswith('# mine\npassword_command_timeout = 120\n')
    assert text.endswith('[accounts.c]\nhost = "h"\nuser = "u"\n')
    assert config.dump(config.load(path)).startswith(
        config.HEADER + 'default = "a"\npassword_command_timeout = 120.0\n')


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
NOBODY = 65534


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def command_config(path: Path, marker: Path) -> None:
    """An account whose password_command leaves ``marker`` behind when it runs."""
    path.write_text('[accounts.work]\nhost = "localhost"\nport = 9\nuser = "me"\ntls = "none"\n'
                    f'allow_plaintext = true\npassword_command = "touch {marker}; echo pw"\n')


def test_a_config_anyone_can_write_is_refused_and_its_command_never_runs(
        tmp_path: Path) -> None:
    path, marker = Path(config.config_path()), tmp_path / "ran"
    command_config(path, marker)
    path.chmod(0o666)
    assert run_cli("--all-accounts", "stat") == (
        2, "", f"Error: {path}: refusing a configuration anyone can write (it chooses the "
               f"commands popctl runs as you): fix with: chmod go-w {path}\n")
    assert not marker.exists()
    path.chmod(0o644)  # the fix the line gives: now it runs (and the closed port fails)
    code, _, _ = run_cli("--all-accounts", "stat")
    assert code == 4 and marker.exists()


@ROOT_ONLY
def test_a_config_its_group_can_write_is_refused(tmp_path: Path) -> None:
    path, marker = Path(config.config_path()), tmp_path / "ran"
    command_config(path, marker)
    os.chown(path, -1, 4242424)  # a group of no one: not the owner's private group
    path.chmod(0o664)
    assert run_cli("account", "list", "--json") == (
        2, "", f"Error: {path}: refusing a configuration its group can write (it chooses the "
               f"commands popctl runs as you): fix with: chmod go-w {path}\n")


def test_a_group_writable_config_in_a_private_group_is_used() -> None:
    """Debian's umask 002 with user private groups: group-writable, but the group is you."""
    me = pwd.getpwuid(os.geteuid())
    primary = grp.getgrgid(me.pw_gid)
    alone = {p.pw_name for p in pwd.getpwall() if p.pw_gid == me.pw_gid} | set(primary.gr_mem)
    if alone != {me.pw_name}:
        pytest.skip(f"group {primary.gr_name} is not a private group here")
    path = Path(config.config_path())
    path.write_text('[accounts.work]\nhost = "h"\nuser = "u"\n')
    os.chown(path, -1, me.pw_gid)
    path.chmod(0o664)
    code, out, err = run_cli("account", "list", "--format", "csv")
    assert (code, err) == (0, "") and out.splitlines()[1].startswith("work,")


@ROOT_ONLY
def test_a_config_of_another_user_is_refused(tmp_path: Path) -> None:
    path, marker = Path(config.config_path()), tmp_path / "ran"
    command_config(path, marker)
    os.chown(path, NOBODY, NOBODY)
    assert run_cli("--all-accounts", "stat") == (
        2, "", f"Error: {path}: refusing a configuration that belongs to {user_name(NOBODY)}, "
               f"not to you (its password_command would run as you): use a file of your own, "
               f"or as root: chown {user_name(0)} {path}\n")
    assert not marker.exists()


def test_a_config_in_a_directory_anyone_can_write_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path, marker = shared / "config.toml", tmp_path / "ran"
    command_config(path, marker)
    monkeypatch.setenv("POPCTL_CONFIG", str(path))
    assert run_cli("--all-accounts", "stat") == (
        2, "", f"Error: {path}: refusing a configuration in {shared}, where anyone can replace "
               f"it: fix with: chmod o-w {shared}\n")
    assert not marker.exists()
    shared.chmod(0o1777)  # sticky, as /tmp: only the owner may replace it
    code, _, _ = run_cli("--all-accounts", "stat")
    assert code == 4 and marker.exists()


@ROOT_ONLY
def test_a_config_in_a_directory_of_another_user_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    path = theirs / "config.toml"
    path.write_text('[accounts.work]\nhost = "h"\nuser = "u"\n')
    os.chown(theirs, NOBODY, NOBODY)
    monkeypatch.setenv("POPCTL_CONFIG", str(path))
    assert run_cli("account", "list") == (
        2, "", f"Error: {path}: refusing a configuration in {theirs}, which belongs to "
               f"{user_name(NOBODY)}, who could replace it: keep it in a directory of your own\n")


def test_a_symlinked_config_is_judged_by_the_file_it_reaches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "dotfiles" / "popctl.toml"
    real.parent.mkdir()
    real.write_text('[accounts.work]\nhost = "h"\nuser = "u"\n')
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    monkeypatch.setenv("POPCTL_CONFIG", str(link))
    assert run_cli("account", "list", "--format", "csv")[0] == 0
    real.chmod(0o646)
    code, _, err = run_cli("account", "list")
    assert code == 2 and "refusing a configuration anyone can write" in err


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a=", "}")],
                         ids=["arrays", "inline-tables"])
def test_absurdly_deep_toml_is_a_config_error(opening: str, closing: str) -> None:
    path = Path(config.config_path())
    path.write_text("x = " + opening * 100_000 + "1" + closing * 100_000 + "\n")
    assert run_cli("account", "list") == (
        2, "", f"Error: {path}: TOML nested too deeply (arrays or inline tables inside one "
               "another, hundreds of levels down): not a popctl configuration\n")


@pytest.mark.parametrize(("text", "line"), [
    ("[" + ".".join(["a"] * 100_000) + "]\nx = 1\n", 1),  # 0.1.0: 26 s of CPU
    ('# ok\n\n' + ".".join(["a"] * 3_000) + " = 1\n", 3),  # 100,000: 0.1.0 passed 24 GB
    ('x = { ' + ".".join(["a"] * 3_000) + " = 1 }\n", 1),
], ids=["table-name", "dotted-key", "inline-table-key"])
def test_absurdly_dotted_keys_are_refused_before_tomllib_chews_on_them(text: str,
                                                                       line: int) -> None:
    path = Path(config.config_path())
    path.write_text(text)
    with hang_guard(5):
        assert run_cli("account", "list") == (
            2, "", f"Error: {path}:{line}: a key or table name of more than 64 dotted parts: "
                   "not a popctl configuration\n")


def test_dots_in_strings_and_comments_are_not_key_parts(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# " + "." * 200 + "\n[accounts.work]  # it's \"here\"\nhost = 'h" + ".x" * 100
                    + "'\nuser = \"u" + ".y" * 100 + "\"\npassword_command = '''\n"
                    + "echo " + "." * 100 + "'''\n")
    loaded = config.load(path)
    assert loaded.accounts["work"].host == "h" + ".x" * 100
