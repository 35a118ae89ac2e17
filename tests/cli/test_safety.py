"""Issue 16 (safety) and issue 11 (memory), as a user meets them: ages that cannot be misread,
ranges that reach past the mailbox, selections linear in the listing, and options that would
otherwise be ignored without a word.

Against the bundled sandbox (50 messages, dated up to a few months back) and the scripted
server of tests/support/scripted_server.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from popctl import config
from tests.support.cli import invoke, outcome
from tests.support.scripted_server import ScriptedServer, Step, expect, send

AMBIGUOUS = "is ambiguous: use 'min' for minutes or 'mo' for months"
SANDBOX_HAS_NO_ACCOUNTS = "Error: the sandbox has no accounts: drop --all-accounts and --account\n"




def numbers(result: Result) -> list[int]:
    assert result.exit_code == 0, result.stderr
    return [record["number"] for record in json.loads(result.stdout)]


def sandbox_note_and(result: Result) -> list[str]:
    """stderr without the sandbox's first line (its port changes)."""
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("sandbox: sample POP3 server on 127.0.0.1 port "), lines
    return lines[1:]


# --- 1. ages and sizes --------------------------------------------------------------------------


@pytest.mark.parametrize("age", ["6m", "6M", "1m30s"])
@pytest.mark.parametrize("option", ["--older-than", "--newer-than"])
def test_a_bare_m_no_longer_means_minutes(option: str, age: str) -> None:
    """`dele --older-than 6m --dry-run` matched all 50 sandbox messages (six MINUTES): a cron
    purge written as "6 months" with --yes deleted everything. Now nothing runs at all."""
    for command in (["dele", "--dry-run"], ["dele", "--yes"], ["list"]):
        result = invoke("--sandbox", *command, option, age, "--format", "json")
        assert outcome(result) == (
            2, "", f"Error: invalid duration '{age}': '{age[1] if age[1] != ' ' else 'm'}' "
                   f"{AMBIGUOUS}\n")


def test_the_sandbox_is_still_whole_after_a_refused_purge() -> None:
    code, _out, _err = outcome(invoke("--sandbox", "-q", "dele", "--older-than", "6m", "--yes"))
    assert code == 2
    # A new sandbox per command: this only shows the refusal happened before any session.
    assert len(numbers(invoke("--sandbox", "-q", "list", "--json"))) == 50


@pytest.mark.parametrize(("age", "same"), [
    ("1mo", "30d"),
    ("2mo", "60 days"),
    ("1y", "365d"),
    ("1.5d", "36h"),
    ("2.5h", "150min"),
    ("0.5w", "3.5d"),
    ("1 month", "30D"),
])
def test_ages_in_every_unit_and_with_decimals(age: str, same: str) -> None:
    mine = numbers(invoke("--sandbox", "-q", "list", "--older-than", age, "--json"))
    assert mine == numbers(invoke("--sandbox", "-q", "list", "--older-than", same, "--json"))
    newer = numbers(invoke("--sandbox", "-q", "list", "--newer-than", age, "--json"))
    assert not set(mine) & set(newer)


def test_decimal_ages_select_between_whole_ones() -> None:
    one = numbers(invoke("--sandbox", "-q", "list", "--older-than", "1d", "--json"))
    half = numbers(invoke("--sandbox", "-q", "list", "--older-than", "1.5d", "--json"))
    two = numbers(invoke("--sandbox", "-q", "list", "--older-than", "2d", "--json"))
    assert set(two) <= set(half) <= set(one)
    assert len(two) < len(one)


@pytest.mark.parametrize("age", ["999999999d", "2700000y", "10000y"])
def test_an_age_before_year_one_is_no_internal_error(age: str) -> None:
    """`--older-than 999999999d` was "internal error: OverflowError: date value out of
    range": now minus the age is before year 1. Nothing is that old; everything is newer."""
    assert numbers(invoke("--sandbox", "-q", "list", "--older-than", age, "--json")) == []
    assert len(numbers(invoke("--sandbox", "-q", "list", "--newer-than", age, "--json"))) == 50


@pytest.mark.parametrize(("size", "same"), [("5m", "5M"), ("1.5m", "1536k"), ("2g", "2GiB"),
                                            ("0.5K", "512")])
def test_sizes_read_any_case_and_decimals(size: str, same: str) -> None:
    mine = invoke("--sandbox", "-q", "list", "--sizes-only", "--larger-than", size, "--json")
    assert outcome(mine) == outcome(invoke("--sandbox", "-q", "list", "--sizes-only",
                                           "--larger-than", same, "--json"))


def test_help_and_man_page_say_what_the_units_are() -> None:
    help_text = " ".join(invoke("dele", "--help").stdout.split())
    assert ("AGE is a number and a unit: s, min, h, d, w, mo (30 days) or y (365 days); "
            "decimals and sums allowed: 90min, 1.5d, 6mo, 1d12h. A bare m is refused: write "
            "min or mo.") in help_text
    assert ("bytes, or a number with k, M, G or T (1024-based, any case: 5m is 5M); decimals "
            "allowed: 500k, 1.5M, 2G.") in help_text
    man = (Path(__file__).parents[2] / "man" / "popctl.1").read_text()
    assert ".B mo\nmonths of 30 days" in man
    assert "minutes, never months" not in man


# --- 2. a range that reaches past the mailbox -------------------------------------------------


def test_dele_range_past_the_last_message_warns_and_reports_what_it_deleted() -> None:
    """`dele 301` exits 5 but `dele 299-305` deleted 299-300 of 300 without a word."""
    result = invoke("--sandbox", "dele", "48-55", "--yes", "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["number"], r["deleted"]) for r in records] == [(48, True), (49, True),
                                                             (50, True)]
    assert sandbox_note_and(result) == [
        "warning: range 48-55 reaches past the last message (50); selected 48-50"]


def test_dry_run_and_list_warn_too_and_the_rest_of_the_selection_stands() -> None:
    result = invoke("--sandbox", "dele", "1,49-60,70-80", "--dry-run", "--format", "json")
    assert numbers(result) == [1, 49, 50]
    assert sandbox_note_and(result) == [
        "warning: range 49-60 reaches past the last message (50); selected 49-50",
        "warning: range 70-80 is past the last message (50): it selects nothing"]
    result = invoke("--sandbox", "list", "--sizes-only", "50-51", "--json")
    assert numbers(result) == [50]
    assert sandbox_note_and(result) == [
        "warning: range 50-51 reaches past the last message (50); selected 50"]


def test_open_ranges_last_n_and_ranges_within_reach_do_not_warn() -> None:
    result = invoke("--sandbox", "list", "--sizes-only", "48-", "last:60", "1-50", "--json")
    assert numbers(result) == list(range(1, 51))
    assert sandbox_note_and(result) == []


def test_quiet_silences_the_warning() -> None:
    result = invoke("--sandbox", "-q", "dele", "49-55", "--dry-run", "--format", "json")
    assert outcome(result) == (0, result.stdout, "")
    assert numbers(result) == [49, 50]


def test_a_single_number_past_the_end_is_still_an_error() -> None:
    assert outcome(invoke("--sandbox", "-q", "dele", "51", "--yes")) == (
        5, "", "Error: message 51 does not exist (the mailbox has 50 messages)\n")


# --- 3. selection is linear in the listing (issue 11) -----------------------------------------

HUGE = 2**63 - 1
CAPA = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"


def _huge_listing_script() -> list[Step]:
    return [
        send(b"+OK POP3 ready\r\n"), expect(b"CAPA\r\n"), send(CAPA),
        expect(b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\nLIST\r\n"),
        send(b"+OK\r\n+OK\r\n" + CAPA
             + b"+OK\r\n1 uid-1\r\n2 uid-2\r\n%d uid-huge\r\n.\r\n" % HUGE
             + b"+OK\r\n1 100\r\n2 200\r\n%d 300\r\n.\r\n" % HUGE),
        expect(b"QUIT\r\n"), send(b"+OK bye\r\n"),
    ]


def _limit_memory() -> None:
    # 1 GiB of address space: popctl needs a few tens of MiB; range(1, 2**63) would not fit.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize(("selection", "expected"), [
    ("1-", [1, 2, HUGE]),
    ("3-", [HUGE]),
    ("2-" + "9" * 18, [2]),  # the longest number a selection may hold
    ("last:2", [2, HUGE]),
])
def test_a_huge_message_number_costs_no_memory(selection: str, expected: list[int]) -> None:
    """A LIST holding message 9223372036854775807 made `uidl 1-` grow to 8.8 GB in 30 s: the
    range was expanded number by number. Here popctl runs under a 1 GiB address-space limit
    and must answer at once.

    session/protocol may refuse such a listing as a protocol error (exit 6, one Error line):
    that is safe too. What must never happen is memory growing with the number."""
    with ScriptedServer(_huge_listing_script(), timeout=20) as server:
        process = subprocess.run(
            [sys.executable, "-m", "popctl", "--host", "127.0.0.1", "--port", str(server.port),
             "--tls", "none", "--allow-plaintext", "--user", "alice", "uidl", selection,
             "--format", "csv"],
            env={**os.environ, "POPCTL_PASSWORD": "s3cret"}, capture_output=True, text=True,
            timeout=20, preexec_fn=_limit_memory)
    if process.returncode == 6:
        assert process.stderr.startswith("Error: ") and process.stderr.count("\n") == 1
        assert process.stdout == ""
        return
    assert (process.returncode, process.stderr) == (0, ""), process.stderr[-500:]
    uid = {1: "uid-1", 2: "uid-2", HUGE: "uid-huge"}
    assert process.stdout == "number,uid\n" + "".join(f"{n},{uid[n]}\n" for n in expected)
    server.assert_done()


# --- 4. options that would be ignored are refused -----------------------------------------------

SANDBOX_CLASH = "Error: --sandbox runs popctl's own sample server, with its own login: {} " \
                "cannot be combined with it\n"


@pytest.mark.parametrize(("args", "flag"), [
    (["--sandbox", "-H", "pop.example.org", "stat"], "--host"),
    (["--sandbox", "stat", "--host", "pop.example.org"], "--host"),
    (["-H", "pop.example.org", "list", "--sandbox"], "--host"),
    (["--sandbox", "--port", "995", "stat"], "--port"),
    (["--sandbox", "--user", "me", "list"], "--user"),
    (["--sandbox", "--tls", "implicit", "stat"], "--tls"),
    (["--sandbox", "--ca-file", "/etc/hostname", "stat"], "--ca-file"),
    (["--sandbox", "--fingerprint", "ab" * 32, "stat"], "--fingerprint"),
    (["--sandbox", "--insecure", "stat"], "--insecure"),
    (["--sandbox", "--allow-plaintext", "stat"], "--allow-plaintext"),
    (["--sandbox", "top", "1", "-H", "pop.example.org"], "--host"),
])
def test_sandbox_refuses_connection_options(args: list[str], flag: str) -> None:
    assert outcome(invoke(*args)) == (2, "", SANDBOX_CLASH.format(flag))


@pytest.mark.parametrize("args", [
    ["--sandbox", "-a", "foo", "stat"],
    ["stat", "--sandbox", "--account", "foo"],
    ["--sandbox", "--all-accounts", "top", "1"],
    ["--sandbox", "--all-accounts", "retr", "1"],
    ["--sandbox", "noop", "-a", "work"],
])
def test_sandbox_refuses_accounts(args: list[str]) -> None:
    assert outcome(invoke(*args)) == (2, "", SANDBOX_HAS_NO_ACCOUNTS)


def test_sandbox_ignores_the_environment_and_keeps_its_own_options() -> None:
    """POPCTL_HOST and friends are defaults in the environment: --sandbox on the command line
    overrides them, as the command line overrides the environment everywhere. --timeout and
    --auth do apply to the sandbox."""
    result = invoke("--sandbox", "-q", "--timeout", "20", "--auth", "USER", "stat", "--json",
                    env={"POPCTL_HOST": "pop.example.org", "POPCTL_USER": "me",
                         "POPCTL_ACCOUNT": "work", "POPCTL_TLS": "implicit"})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 50


@pytest.mark.parametrize(("args", "line"), [
    (["account", "test", "work", "-a", "other"],
     "account test takes the account as its argument: drop --account"),
    (["-a", "other", "account", "test", "work"],
     "account test takes the account as its argument: drop --account"),
    (["account", "test", "work", "--all-accounts"],
     "account test takes the account as its argument: drop --all-accounts"),
    (["account", "test", "work", "--sandbox"],
     "account test tests a configured account, not the sandbox: drop --sandbox (popctl "
     "--sandbox capa shows the sandbox's side)"),
    (["--sandbox", "account", "test", "work"],
     "account test tests a configured account, not the sandbox: drop --sandbox (popctl "
     "--sandbox capa shows the sandbox's side)"),
])
def test_account_test_refuses_what_it_would_ignore(args: list[str], line: str) -> None:
    """`account test work --sandbox` reported "account work" while testing the sandbox."""
    Path(config.config_path()).write_text(
        '[accounts.work]\nhost = "pop.example.org"\nuser = "me"\n'
        '[accounts.other]\nhost = "pop.example.net"\nuser = "me"\n')
    assert outcome(invoke(*args)) == (2, "", f"Error: {line}\n")


@pytest.mark.parametrize(("args", "line"), [
    (["--all-accounts", "account", "list"], "--all-accounts does not apply to 'account list'"),
    (["-a", "work", "account", "show", "work"], "--account does not apply to 'account show'"),
    (["--sandbox", "account", "list"], "--sandbox does not apply to 'account list'"),
    (["--all-accounts", "password", "delete", "work"],
     "--all-accounts does not apply to 'password delete'"),
    (["--trace", "account", "remove", "work", "--yes"],
     "--trace does not apply to 'account remove'"),
    (["-H", "pop.example.org", "account", "add", "home", "--user", "me"],
     "--host given before 'account add' does not apply to it; put it after 'account add'"),
])
def test_options_before_a_command_that_does_not_use_them(args: list[str], line: str) -> None:
    """`popctl --all-accounts account list` listed the accounts as if no option were given."""
    text = '[accounts.work]\nhost = "pop.example.org"\nuser = "me"\n'
    Path(config.config_path()).write_text(text)
    assert outcome(invoke(*args)) == (2, "", f"Error: {line}\n")
    assert Path(config.config_path()).read_text() == text  # nothing added or removed


def test_output_options_before_an_account_command_still_apply() -> None:
    Path(config.config_path()).write_text('[accounts.work]\nhost = "h"\nuser = "me"\n')
    result = invoke("--format", "json", "--debug", "account", "list")
    assert result.exit_code == 0, result.stderr
    assert [a["name"] for a in json.loads(result.stdout)] == ["work"]


def test_sandbox_serve_refuses_options_for_a_client() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "popctl", "--port", "1110", "sandbox", "serve"],
        capture_output=True, text=True, timeout=20)
    assert (process.returncode, process.stdout, process.stderr) == (
        2, "", "Error: --port given before 'sandbox serve' does not apply to it; put it after "
               "'sandbox serve'\n")


# --- 4b. a POPCTL_CONFIG that names no file ----------------------------------------------------

MISSING_CONFIG = ("Error: the configuration file {} (named by POPCTL_CONFIG) does not exist: "
                  "correct or unset POPCTL_CONFIG, or create the file with: popctl account add "
                  "NAME --host HOST --user USER\n")


@pytest.mark.parametrize("args", [
    ["account", "list"],
    ["stat"],  # no --host: the file's default account was wanted
    ["-a", "work", "list"],
    ["--all-accounts", "stat"],
    ["account", "show", "work"],
    ["password", "delete", "work"],
])
def test_popctl_config_naming_no_file_is_an_error(args: list[str], tmp_path: Path) -> None:
    """A typo in POPCTL_CONFIG read as an empty file: "no account 'work'", or "no server
    given", with no hint that the file named was not there."""
    missing = tmp_path / "popctl.tmol"
    assert outcome(invoke(*args, env={"POPCTL_CONFIG": str(missing)})) == (
        2, "", MISSING_CONFIG.format(missing))


def test_popctl_config_naming_no_file_is_created_by_account_add(tmp_path: Path) -> None:
    new = tmp_path / "popctl.toml"
    result = invoke("account", "add", "work", "--host", "h", "--user", "me",
                    env={"POPCTL_CONFIG": str(new)})
    assert outcome(result) == (0, "", f"account work added to {new}\nstore its password "
                                      "with: popctl password set work\n")
    assert outcome(invoke("account", "list", "--format", "csv",
                          env={"POPCTL_CONFIG": str(new)}))[0] == 0


def test_popctl_config_is_not_read_when_the_server_is_given(tmp_path: Path) -> None:
    result = invoke("--sandbox", "-q", "stat", "--json",
                    env={"POPCTL_CONFIG": str(tmp_path / "none.toml")})
    assert result.exit_code == 0, result.stderr


def test_the_default_file_may_be_missing() -> None:
    """Without POPCTL_CONFIG, no file is simply no accounts (a new user's state)."""
    assert not Path(config.config_path()).exists()
    assert outcome(invoke("account", "list")) == (
        0, "", f"no accounts in {config.config_path()}; add one with: popctl account add NAME "
               "--host HOST --user USER\n")
