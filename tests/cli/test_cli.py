"""The command line through click's CliRunner: every command and format, exit codes, errors.

Each test using ``box`` starts from bob's mailbox holding the three messages below. The commands
and formats run against popctl's bundled sandbox server (a private instance per test, over STLS
with its own CA); the tests marked ``dovecot`` need what only a real server has (implicit TLS,
certificates for other names, its capabilities and SASL mechanisms, slow failed logins) and run
against the private real Dovecot of tests/support/fixtures_dovecot.py, as ``bob`` (an ASCII
password), over STLS on ``dovecot.port`` or implicit TLS on ``dovecot.tls_port``. stdout, stderr
and the exit status are compared exactly wherever they are deterministic.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import trustme
from click.testing import Result

from popctl.sandbox.server import SandboxServer
from tests.support.cli import closed_port, invoke, outcome
from tests.support.dovecot_server import DovecotServer

USER = "bob"
PASSWORD = "bob-secret"
ENV = {"POPCTL_PASSWORD": PASSWORD}
MIB = 1024 * 1024
# The keys of retr's report, in the order popctl(1) and docs/JSON.md give.
RETR_KEYS = ["number", "size", "listed_size", "short", "uid", "stored", "deleted"]

dovecot = pytest.mark.dovecot


# --- the test mailbox -----------------------------------------------------------------------------

# Message 2 is dated two hours before the fixture runs (for --newer-than), in UTC-5.
_MINUS_5 = timezone(timedelta(hours=-5))


def _messages(recent: datetime) -> list[bytes]:
    first = (
        b"Return-Path: <juergen@example.de>\r\n"
        b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\n"
        b"To: bob@example.org\r\n"
        b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n"
        b"Date: Mon, 02 Mar 2020 09:15:00 +0100\r\n"
        b"Message-ID: <m1@example.de>\r\n"
        b"\r\n"
        b"Hallo Bob,\r\n"
        b"line two\r\n"
        b"line three\r\n"
        b"line four\r\n"
    )
    filler = b"".join(b"%02d " % i + b"x" * 70 + b"\r\n" for i in range(40))
    second = (
        b'From: "Alice Example" <alice@example.org>\r\n'
        b"To: bob@example.org\r\n"
        # "Café, au lait" in ISO-8859-1, base64: a comma for CSV quoting
        b"Subject: =?ISO-8859-1?B?Q2Fm6SwgYXUgbGFpdA==?=\r\n"
        b"Date: " + format_datetime(recent).encode() + b"\r\n"
        b"X-Spam-Flag: YES\r\n"
        b"\r\n"
        b"From the kitchen:\r\n"
        + filler
    )
    third = (
        b"From: carol@example.net\r\n"
        b"To: bob@example.org\r\n"
        # two encoded words, the space between them ignored: "\U0001f4e6 Paket unterwegs"
        b"Subject: =?UTF-8?B?8J+TpiBQYWtldA==?= =?UTF-8?B?IHVudGVyd2Vncw==?=\r\n"
        b"\r\n"
        b"short\r\n"
    )
    return [first, second, third]


FROMS = ["Jürgen Müller <juergen@example.de>", "Alice Example <alice@example.org>",
         "carol@example.net"]
SUBJECTS = ["Grüße aus München", "Café, au lait", "\U0001f4e6 Paket unterwegs"]
# JSON's from_name and from_address (issue 11): the From display form taken apart.
FROM_PARTS = [("Jürgen Müller", "juergen@example.de"), ("Alice Example", "alice@example.org"),
              ("", "carol@example.net")]


@dataclass
class Box:
    """bob's mailbox on a sandbox server or the shared Dovecot, with the CLI options to reach
    it."""

    server: DovecotServer | SandboxServer
    messages: list[bytes]
    recent: datetime

    def options(self, tls: str = "starttls") -> list[str]:
        if isinstance(self.server, SandboxServer):
            assert tls == "starttls", "the sandbox has no implicit-TLS port: mark the test dovecot"
            port = self.server.address[1]
        else:
            port = self.server.port if tls == "starttls" else self.server.tls_port
        assert self.server.ca_file is not None
        return ["--host", "localhost", "--port", str(port), "--tls", tls,
                "--ca-file", self.server.ca_file, "--user", USER]

    def run(self, *args: str, tls: str = "starttls", env: dict[str, str | None] | None = None,
            ) -> Result:
        return invoke(*self.options(tls), *args, env=ENV if env is None else env)

    def uid(self, number: int) -> str:
        """The UIDL the server gives message ``number``: the sandbox's is the first 32 hex digits
        of the message's SHA-256; Dovecot's ``%08Xu%08Xv``, from its uidlist."""
        if isinstance(self.server, SandboxServer):
            return hashlib.sha256(self.messages[number - 1]).hexdigest()[:32]
        uidlist = (self.server.maildir(USER) / "dovecot-uidlist").read_text()
        match = re.match(r"\d+ V(\d+) ", uidlist)
        assert match is not None, uidlist
        return f"{number:08x}{int(match[1]):08x}"

    def date(self, number: int) -> str | None:
        return ["2020-03-02T09:15:00+01:00", self.recent.isoformat(), None][number - 1]

    def date_utc(self, number: int) -> str | None:
        """``date`` in UTC, as jq 1.6's ``fromdateiso8601`` reads it (issue 16)."""
        recent = self.recent.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ["2020-03-02T08:15:00Z", recent, None][number - 1]

    def date_epoch(self, number: int) -> int | None:
        return [1583136900, int(self.recent.timestamp()), None][number - 1]

    def record(self, number: int, **extra: object) -> dict[str, object]:
        """The JSON record `list` gives message ``number`` (1-based, as delivered)."""
        return {"number": number, "size": len(self.messages[number - 1]),
                "uid": self.uid(number), "from": FROMS[number - 1],
                "subject": SUBJECTS[number - 1], "date": self.date(number),
                "from_name": FROM_PARTS[number - 1][0], "from_address": FROM_PARTS[number - 1][1],
                "date_utc": self.date_utc(number), "date_epoch": self.date_epoch(number),
                **extra}

    def acted(self, tls: str = "starttls") -> dict[str, object]:
        """``account`` and ``time`` of a dele or retr record in JSON (``time`` as ``unstamped``
        leaves it): no account was named, so the account is user@host:port."""
        port = self.options(tls)[self.options(tls).index("--port") + 1]
        return {"account": f"{USER}@localhost:{port}", "time": "T"}

    def count(self) -> int:
        result = self.run("stat", "--json")
        assert result.exit_code == 0, result.stderr
        count: int = json.loads(result.stdout)["count"]
        return count


def _on_dovecot(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("dovecot") is not None


@pytest.fixture
def empty_box(request: pytest.FixtureRequest) -> Iterator[Box]:
    recent = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).astimezone(_MINUS_5)
    if not _on_dovecot(request):
        with SandboxServer([], user=USER, password=PASSWORD) as sandbox:
            yield Box(sandbox, _messages(recent), recent)
        return
    server: DovecotServer = request.getfixturevalue("dovecot_mailbox")
    server.reset(USER)
    yield Box(server, _messages(recent), recent)
    server.reset(USER)  # leave bob's mailbox empty for other tests


@pytest.fixture
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    if not _on_dovecot(request):
        recent = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).astimezone(
            _MINUS_5)
        messages = _messages(recent)
        with SandboxServer(messages, user=USER, password=PASSWORD) as sandbox:
            yield Box(sandbox, messages, recent)
        return
    full: Box = request.getfixturevalue("empty_box")
    for message in full.messages:
        full.server.deliver(USER, message)  # type: ignore[union-attr]
    # Dovecot writes its uidlist (the UID oracle) at the first session; open one now.
    assert full.count() == 3
    yield full


# --- helpers --------------------------------------------------------------------------------------




def pretty(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2) + "\n"


_STAMP = re.compile(r'("time": ?)"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"')


def unstamped(result: Result) -> tuple[int, str, str]:
    """``outcome``, each record's ``time`` (UTC, ISO 8601 with Z: checked here) made ``"T"``."""
    code, out, err = outcome(result)
    return code, _STAMP.sub(r'\1"T"', out), err



def one_error_line(result: Result) -> str:
    """stderr is exactly one ``Error: ...`` line, without a traceback; return it."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.stderr.endswith("\n")
    return lines[0]


# --- stat, and where options go -------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "expected"), [
    ("table", "count  3\nsize   {size}\n"),
    ("json", '{{\n  "count": 3,\n  "size": {size}\n}}\n'),
    ("ndjson", '{{"count":3,"size":{size}}}\n'),
    ("csv", "count,size\n3,{size}\n"),
], ids=["table", "json", "ndjson", "csv"])
def test_stat_every_format(box: Box, fmt: str, expected: str) -> None:
    size = sum(len(m) for m in box.messages)
    assert outcome(box.run("stat", "--format", fmt)) == (0, expected.format(size=size), "")


@dovecot
def test_stat_over_implicit_tls(box: Box) -> None:
    size = sum(len(m) for m in box.messages)
    assert outcome(box.run("stat", "--json", tls="implicit")) == (
        0, pretty({"count": 3, "size": size}), "")


def test_options_before_or_after_the_subcommand(box: Box) -> None:
    size = sum(len(m) for m in box.messages)
    expected = (0, pretty({"count": 3, "size": size}), "")
    options = box.options()
    assert outcome(invoke("--json", *options, "stat", env=ENV)) == expected
    assert outcome(invoke("stat", "--json", *options, env=ENV)) == expected
    assert outcome(invoke(*options[:4], "stat", *options[4:], "--json", env=ENV)) == expected
    # given on both sides, the later (the subcommand's) wins
    later = invoke("--format", "csv", *options, "stat", "--format", "ndjson", env=ENV)
    assert outcome(later) == (0, f'{{"count":3,"size":{size}}}\n', "")


@dovecot
def test_settings_from_the_environment(box: Box) -> None:
    env: dict[str, str | None] = {
        "POPCTL_HOST": "localhost", "POPCTL_PORT": str(box.server.tls_port),
        "POPCTL_USER": USER, "POPCTL_TLS": "implicit", "POPCTL_CA_FILE": box.server.ca_file,
        "POPCTL_PASSWORD": PASSWORD}
    result = invoke("stat", "--format", "csv", env=env)
    assert outcome(result) == (0, f"count,size\n3,{sum(len(m) for m in box.messages)}\n", "")


# --- list -----------------------------------------------------------------------------------------


def test_list_json_exact(box: Box) -> None:
    result = box.run("list", "--json")
    assert outcome(result) == (0, pretty([box.record(n) for n in (1, 2, 3)]), "")
    records = json.loads(result.stdout)
    assert [list(r) for r in records] == [["number", "size", "uid", "from", "subject", "date",
                                           "from_name", "from_address", "date_utc",
                                           "date_epoch"]] * 3
    assert datetime.fromisoformat(records[1]["date"]) == box.recent
    assert records[2]["date"] is None  # no Date header


def test_list_ndjson_streams_the_json_records(box: Box) -> None:
    as_json = json.loads(box.run("list", "--json").stdout)
    result = box.run("list", "--format", "ndjson")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert result.stdout.endswith("\n") and len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert [list(p) for p in parsed] == [list(r) for r in as_json]
    assert parsed == as_json
    assert lines[0] == json.dumps(box.record(1), ensure_ascii=False, separators=(",", ":"))


def test_list_csv_exact(box: Box) -> None:
    rows = [
        f"1,{len(box.messages[0])},{box.uid(1)},Jürgen Müller <juergen@example.de>,"
        "Grüße aus München,2020-03-02T09:15:00+01:00",
        f'2,{len(box.messages[1])},{box.uid(2)},Alice Example <alice@example.org>,'
        f'"Café, au lait",{box.recent.isoformat()}',
        f"3,{len(box.messages[2])},{box.uid(3)},carol@example.net,\U0001f4e6 Paket unterwegs,",
    ]
    expected = "number,size,uid,from,subject,date\n" + "".join(r + "\n" for r in rows)
    assert outcome(box.run("list", "--format", "csv")) == (0, expected, "")


def test_list_table(box: Box) -> None:
    result = box.run("list")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["number", "size", "uid", "from", "subject", "date"]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 5
    for n, line in enumerate(lines[2:], start=1):
        assert line.split()[:3] == [str(n), str(len(box.messages[n - 1])), box.uid(n)]
        assert FROMS[n - 1] in line and SUBJECTS[n - 1] in line


def test_list_sizes_only(box: Box) -> None:
    sizes = [len(m) for m in box.messages]
    assert outcome(box.run("list", "--sizes-only", "--json")) == (
        0, pretty([{"number": n, "size": sizes[n - 1]} for n in (1, 2, 3)]), "")
    table = ("  number    size\n--------  ------\n"
             + "".join(f"{n:>8}  {sizes[n - 1]:>6}\n" for n in (1, 2, 3)))
    assert outcome(box.run("list", "--sizes-only")) == (0, table, "")
    assert outcome(box.run("list", "--sizes-only", "--larger-than", "1k", "--format", "csv")) == (
        0, f"number,size\n2,{sizes[1]}\n", "")


def test_list_sizes_only_refuses_header_filters(box: Box) -> None:
    result = box.run("list", "--sizes-only", "--from", "x")
    assert outcome(result) == (2, "", "Error: --sizes-only reads no headers, so it cannot be "
                               "combined with --from, --subject, --header, --older-than or "
                               "--newer-than\n")


@pytest.mark.parametrize(("args", "numbers"), [
    (["2-3"], [2, 3]),
    (["last:1"], [3]),
    (["1,3"], [1, 3]),
    (["2-"], [2, 3]),
    (["--larger-than", "2k"], [2]),
    (["--smaller-than", "2k"], [1, 3]),
    (["--from", "juergen@example\\.de"], [1]),
    (["--from", "^Jürgen Müller"], [1]),
    (["--subject", "München$"], [1]),
    (["--subject", "^\U0001f4e6 Paket unterwegs$"], [3]),
    (["--header", "X-Spam-Flag: ^YES$"], [2]),
    (["--header", "subject: Café"], [2]),
    (["--header", "Message-ID: <m1@"], [1]),
    (["--older-than", "30d"], [1]),
    (["--newer-than", "1d"], [2]),
    (["--newer-than", "1h"], []),
    (["--larger-than", "100", "--from", "example\\.org"], [2]),
    (["1-2", "--subject", "Paket"], []),
    (["--from", "nobody-matches-this"], []),
    # documented details: case-insensitive regexes, presence test, UIDs and numbers add up
    (["--subject", "MÜNCHEN"], [1]),
    (["--from", "ALICE EXAMPLE"], [2]),
    (["--header", "x-spam-flag: yes"], [2]),
    (["--header", "X-Spam-Flag:"], [2]),
    (["--header", "X-Not-There:"], []),
    (["--header", "To: bob@", "--header", "Date: 2020"], [1]),
    (["1", "last:1"], [1, 3]),
    (["3,1", "1"], [1, 3]),
    (["--larger-than", "{size2}"], []),
    (["--smaller-than", "{size2}", "--larger-than", "{size3}"], [1]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and isinstance(v[0], str) else None)
def test_list_selection(box: Box, args: list[str], numbers: list[int]) -> None:
    sizes = {f"size{n}": str(len(m)) for n, m in enumerate(box.messages, start=1)}
    args = [arg.format(**sizes) if arg.startswith("{") else arg for arg in args]
    expected = pretty([box.record(n) for n in numbers]) if numbers else "[]\n"
    assert outcome(box.run("list", *args, "--json")) == (0, expected, "")


def test_uids_and_numbers_add_up(box: Box) -> None:
    result = box.run("list", "1", "--uid", box.uid(3), "--sizes-only", "--format", "csv")
    assert outcome(result) == (
        0, f"number,size\n1,{len(box.messages[0])}\n3,{len(box.messages[2])}\n", "")


def test_list_by_uid(box: Box) -> None:
    assert outcome(box.run("list", "--uid", box.uid(2), "--json")) == (
        0, pretty([box.record(2)]), "")
    both = box.run("list", "--uid", box.uid(3), "--uid", box.uid(1), "--format", "ndjson")
    assert [json.loads(line) for line in both.stdout.splitlines()] == [box.record(1),
                                                                       box.record(3)]


def test_list_empty_mailbox(empty_box: Box) -> None:
    assert outcome(empty_box.run("list")) == (0, "", "no messages\n")
    assert outcome(empty_box.run("list", "--json")) == (0, "[]\n", "")
    assert outcome(empty_box.run("list", "--format", "ndjson")) == (0, "", "")
    assert outcome(empty_box.run("list", "--format", "csv")) == (
        0, "number,size,uid,from,subject,date\n", "")
    assert outcome(empty_box.run("list", "--sizes-only", "--format", "csv")) == (
        0, "number,size\n", "")
    assert outcome(empty_box.run("stat", "--json")) == (0, pretty({"count": 0, "size": 0}), "")


def test_no_match_is_success(box: Box) -> None:
    assert outcome(box.run("list", "--subject", "nothing like this")) == (0, "", "no messages\n")


@dovecot
def test_csv_has_its_header_row_when_nothing_matches(box: Box) -> None:
    """Issue 16: a spreadsheet import of an empty result still finds the columns; the header
    is the one a matching run writes."""
    header = "number,size,uid,from,subject,date"
    assert box.run("list", "--format", "csv").stdout.splitlines()[0] == header
    assert outcome(box.run("list", "--subject", "nothing like this", "--format", "csv")) == (
        0, header + "\n", "")
    assert outcome(box.run("uidl", "--larger-than", "1G", "--format", "csv")) == (
        0, "number,uid\n", "")
    assert outcome(box.run("dele", "--subject", "nothing like this", "--dry-run", "--format",
                           "csv")) == (0, header + ",deleted\n", "")
    assert box.count() == 3


# --- uidl -----------------------------------------------------------------------------------------


def test_uidl_formats(box: Box) -> None:
    uids = [box.uid(n) for n in (1, 2, 3)]
    assert outcome(box.run("uidl", "--json")) == (
        0, pretty([{"number": n, "uid": uids[n - 1]} for n in (1, 2, 3)]), "")
    assert outcome(box.run("uidl", "--format", "csv")) == (
        0, "number,uid\n" + "".join(f"{n},{uids[n - 1]}\n" for n in (1, 2, 3)), "")
    table = ("  number  uid\n--------  " + "-" * len(uids[0]) + "\n"
             + "".join(f"{n:>8}  {uids[n - 1]}\n" for n in (1, 2, 3)))
    assert outcome(box.run("uidl")) == (0, table, "")
    assert outcome(box.run("uidl", "2", "--format", "ndjson")) == (
        0, f'{{"number":2,"uid":"{uids[1]}"}}\n', "")


# --- top ------------------------------------------------------------------------------------------


def _head(message: bytes, lines: int) -> bytes:
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n" + b"".join(body.splitlines(keepends=True)[:lines])


@pytest.mark.parametrize(("number", "lines"), [(1, 0), (1, 2), (2, 1), (3, 5)])
def test_top_raw_bytes(box: Box, number: int, lines: int) -> None:
    args = ["top", str(number)] + ([str(lines)] if lines else [])
    result = box.run(*args)
    assert (result.exit_code, result.stdout_bytes, result.stderr) == (
        0, _head(box.messages[number - 1], lines), "")


def test_top_by_uid(box: Box) -> None:
    result = box.run("top", "--uid", box.uid(2))
    assert (result.exit_code, result.stdout_bytes, result.stderr) == (
        0, _head(box.messages[1], 0), "")
    assert outcome(box.run("top", "1", "2", "--uid", box.uid(2))) == (
        2, "", "Error: with --uid, give only LINES after it: top --uid UID [LINES]\n")


def test_top_by_uid_with_lines(box: Box) -> None:
    result = box.run("top", "--uid", box.uid(2), "1")
    assert (result.exit_code, result.stdout_bytes, result.stderr) == (
        0, _head(box.messages[1], 1), "")


def test_top_json(box: Box) -> None:
    data = _head(box.messages[0], 2)
    expected = {
        "number": 1,
        "size": len(data),
        "headers": [
            {"name": "Return-Path", "value": "<juergen@example.de>"},
            {"name": "From", "value": "Jürgen Müller <juergen@example.de>"},
            {"name": "To", "value": "bob@example.org"},
            {"name": "Subject", "value": "Grüße aus München"},
            {"name": "Date", "value": "Mon, 02 Mar 2020 09:15:00 +0100"},
            {"name": "Message-ID", "value": "<m1@example.de>"},
        ],
        "body": "Hallo Bob,\r\nline two\r\n",
    }
    assert outcome(box.run("top", "1", "2", "--json")) == (0, pretty(expected), "")


def test_top_needs_exactly_one_message(box: Box) -> None:
    assert outcome(box.run("top")) == (2, "", "Error: say which message: a number or --uid UID\n")
    assert outcome(box.run("top", "1-2")) == (
        2, "", "Error: this command takes exactly one message; the selection has 2\n")


# --- retr -----------------------------------------------------------------------------------------


def test_retr_to_stdout_is_byte_exact(box: Box) -> None:
    for n, message in enumerate(box.messages, start=1):
        result = box.run("retr", str(n))
        assert (result.exit_code, result.stdout_bytes, result.stderr) == (0, message, "")
    # Several messages would run together on stdout (issue 16): refused before any RETR.
    assert outcome(box.run("retr", "--all")) == (2, "", (
        "Error: the selection has 3 messages, which would run together on standard output with "
        "nothing between them: use --mbox - for mboxrd on standard output (each message after "
        "its From line), or store them with --output-dir, --maildir, --mbox FILE or --pipe "
        "COMMAND\n"))
    assert box.count() == 3


def test_retr_refuses_format_with_stdout(box: Box) -> None:
    assert outcome(box.run("retr", "1", "--json")) == (
        2, "", "Error: retr writes the messages themselves to stdout; --format applies to the "
               "report when storing with --output, --output-dir, --maildir, --mbox FILE or "
               "--pipe\n")
    assert outcome(box.run("retr", "1", "--mbox", "-", "--json")) == (
        2, "", "Error: retr writes the messages themselves to stdout; --format applies to the "
               "report when storing with --output, --output-dir, --maildir, --mbox FILE or "
               "--pipe\n")
    assert outcome(box.run("retr")) == (
        2, "", "Error: say which messages: numbers or ranges (3, 3-7, last:5), --uid, --all, "
               "or a filter such as --larger-than\n")
    for stdout in ([], ["--mbox", "-"]):
        assert outcome(box.run("retr", "1", *stdout, "--delete")) == (
            2, "", "Error: --delete needs a place to store messages first: --output-dir, "
                   "--maildir, --mbox FILE, --pipe or --output\n")


def test_retr_all_into_maildir_with_delete(box: Box, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    result = box.run("retr", "--all", "--maildir", str(maildir), "--delete")
    assert outcome(result) == (
        0, "", f"3 message(s) stored in {maildir}, 3 deleted from the server\n")
    assert outcome(box.run("stat", "--json")) == (0, pretty({"count": 0, "size": 0}), "")
    assert sorted(p.name for p in maildir.iterdir()) == ["cur", "new", "tmp"]
    assert list((maildir / "tmp").iterdir()) == [] and list((maildir / "cur").iterdir()) == []
    delivered = list((maildir / "new").iterdir())
    # Maildir files have LF line ends
    assert sorted(p.read_bytes() for p in delivered) == sorted(m.replace(b"\r\n", b"\n")
                                                               for m in box.messages)


def test_retr_into_maildir_json_report(box: Box, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    result = box.run("retr", "1,3", "--maildir", str(maildir), "--delete", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    report = json.loads(unstamped(result)[1])
    assert [list(r) for r in report] == [[*RETR_KEYS, "account", "time"]] * 2
    for record, n in zip(report, (1, 3), strict=True):
        stored = Path(record.pop("stored"))
        size = len(box.messages[n - 1])
        assert record == {"number": n, "uid": box.uid(n), "size": size, "listed_size": size,
                          "short": False, "deleted": True, **box.acted()}
        assert stored.parent == maildir / "new"
        assert stored.read_bytes() == box.messages[n - 1].replace(b"\r\n", b"\n")
    after = box.record(2)
    after["number"] = 1
    assert outcome(box.run("list", "--json")) == (0, pretty([after]), "")


def test_retr_delete_keeps_everything_when_storing_fails(box: Box, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "big"  # the directory is created, not its parent
    result = box.run("retr", "--all", "--output-dir", str(missing), "--delete")
    assert outcome(result) == (1, "", f"Error: cannot create {missing}: No such file or "
                                      "directory\n")
    assert box.count() == 3


def test_retr_output_dir(box: Box, tmp_path: Path) -> None:
    uids = [box.uid(n) for n in (1, 2, 3)]
    result = box.run("retr", "2-3", "--output-dir", str(tmp_path))
    assert outcome(result) == (0, "", f"2 message(s) stored in {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{u}.eml" for u in uids[1:])
    assert (tmp_path / f"{uids[1]}.eml").read_bytes() == box.messages[1]  # CRLF kept
    assert (tmp_path / f"{uids[2]}.eml").read_bytes() == box.messages[2]
    report = box.run("retr", "1", "--output-dir", str(tmp_path), "--json")
    stored = str(tmp_path / f"{uids[0]}.eml")
    assert (report.exit_code, report.stderr) == (0, "")
    size = len(box.messages[0])
    assert json.loads(unstamped(report)[1]) == [{"number": 1, "uid": uids[0], "size": size,
                                                 "listed_size": size, "short": False,
                                                 "stored": stored, "deleted": False,
                                                 **box.acted()}]
    assert Path(stored).read_bytes() == box.messages[0]
    assert box.count() == 3


def test_retr_output_file(box: Box, tmp_path: Path) -> None:
    target = tmp_path / "one.eml"
    assert outcome(box.run("retr", "3", "-o", str(target))) == (
        0, "", f"1 message(s) stored in {target}\n")
    assert target.read_bytes() == box.messages[2]


def test_retr_mbox(box: Box, tmp_path: Path) -> None:
    mbox = tmp_path / "inbox.mbox"
    result = box.run("retr", "1-2", "--mbox", str(mbox), "--format", "csv")
    assert (result.exit_code, result.stderr) == (0, "")
    assert list(csv.DictReader(io.StringIO(result.stdout))) == [
        {"number": str(n), "uid": box.uid(n), "size": str(len(box.messages[n - 1])),
         "listed_size": str(len(box.messages[n - 1])), "short": "false", "stored": str(mbox),
         "deleted": "false"} for n in (1, 2)]
    text = mbox.read_bytes()
    separators = re.findall(rb"^From \S+ .+$", text, flags=re.MULTILINE)
    assert len(separators) == 2
    parts = re.split(rb"^From \S+ [^\n]*\n", text, flags=re.MULTILINE)
    assert parts[0] == b""
    first, second = parts[1:]
    assert first == box.messages[0].replace(b"\r\n", b"\n") + b"\n"
    # mboxrd: the body line "From the kitchen:" is quoted as ">From the kitchen:"
    assert second == (box.messages[1].replace(b"\r\n", b"\n")
                      .replace(b"\nFrom the kitchen", b"\n>From the kitchen") + b"\n")
    assert box.count() == 3


def test_retr_report_keys_in_documented_order(box: Box, tmp_path: Path) -> None:
    result = box.run("retr", "1", "--output-dir", str(tmp_path), "--format", "csv")
    assert result.stdout.splitlines()[0] == ",".join(RETR_KEYS)


# --- dele, rset, noop -----------------------------------------------------------------------------


def test_dele_without_yes_and_without_terminal_refuses(box: Box) -> None:
    assert outcome(box.run("dele", "1")) == (
        2, "", "Error: refusing to delete without confirmation: add --yes (or --dry-run to see "
               "what would be deleted)\n")
    assert box.count() == 3


def test_dele_needs_a_selection(box: Box) -> None:
    assert outcome(box.run("dele", "--yes")) == (
        2, "", "Error: say which messages to delete: numbers or ranges, --uid, --all, or a "
               "filter such as --larger-than\n")
    assert box.count() == 3


def test_dele_dry_run_deletes_nothing(box: Box) -> None:
    result = box.run("dele", "--larger-than", "1k", "--dry-run", "--json")
    assert unstamped(result) == (0, pretty([box.record(2, deleted=False, **box.acted())]), "")
    table = box.run("dele", "1", "--dry-run")
    assert table.exit_code == 0
    assert table.stderr == "dry run: 1 message(s) would be deleted\n"
    assert table.stdout.splitlines()[0].split()[-1] == "deleted"
    assert table.stdout.splitlines()[2].split()[-1] == "no"
    assert box.count() == 3


def test_dele_dry_run_wins_over_yes(box: Box) -> None:
    result = box.run("dele", "2", "--yes", "--dry-run", "--json")
    assert unstamped(result) == (0, pretty([box.record(2, deleted=False, **box.acted())]), "")
    assert box.count() == 3


def test_dele_yes_json(box: Box) -> None:
    expected = pretty([box.record(1, deleted=True, **box.acted()),
                       box.record(3, deleted=True, **box.acted())])
    assert unstamped(box.run("dele", "1,3", "--yes", "--format", "json")) == (0, expected, "")
    after = box.record(2)
    after["number"] = 1
    assert outcome(box.run("list", "--json")) == (0, pretty([after]), "")


def test_dele_yes_table_note(box: Box) -> None:
    result = box.run("dele", "--subject", "Paket", "--yes")
    assert result.exit_code == 0 and result.stderr == "1 message(s) deleted\n"
    assert result.stdout.splitlines()[2].split()[-1] == "yes"
    assert box.count() == 2


def test_dele_nothing_matched(box: Box) -> None:
    assert outcome(box.run("dele", "--from", "nobody", "--yes")) == (
        0, "", "no messages matched; nothing deleted\n")
    assert outcome(box.run("dele", "--from", "nobody", "--yes", "--json")) == (0, "[]\n", "")
    assert box.count() == 3


def test_dele_unknown_uid_deletes_nothing(box: Box) -> None:
    result = box.run("dele", "1", "--uid", "no-such-uid", "--yes", "--json")
    assert outcome(result) == (5, "", "Error: no message has UID 'no-such-uid'; nothing was done\n")
    assert box.count() == 3


def test_dele_by_uid(box: Box) -> None:
    uid = box.uid(2)
    assert unstamped(box.run("dele", "--uid", uid, "--yes", "--format", "ndjson")) == (
        0, json.dumps(box.record(2, deleted=True, **box.acted()), ensure_ascii=False,
                      separators=(",", ":")) + "\n", "")
    assert box.count() == 2


@dovecot
def test_rset_and_noop(box: Box) -> None:
    assert outcome(box.run("rset")) == (
        0, "", "RSET done (no deletions were pending in this session)\n")
    assert outcome(box.run("noop")) == (0, "", "server answered NOOP\n")
    assert outcome(box.run("noop", "--quiet")) == (0, "", "")
    assert outcome(box.run("noop", tls="implicit")) == (0, "", "server answered NOOP\n")
    assert box.count() == 3


# --- capa -----------------------------------------------------------------------------------------


def _server_cert_sha256(server: DovecotServer) -> str:
    pem = (server.root / "server-cert.pem").read_text()
    leaf = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf)).hexdigest()


@dovecot
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_capa_json(box: Box, tls: str) -> None:
    result = box.run("capa", "--json", tls=tls)
    assert result.exit_code == 0 and result.stderr == ""
    info = json.loads(result.stdout)
    assert list(info) == ["capabilities", "implementation", "sasl", "login_delay", "expire",
                          "pipelining", "mechanism", "tls_version", "tls_cipher", "cert_sha256",
                          "greeting"]
    assert info["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert re.fullmatch(r"[0-9a-f]{64}", info["cert_sha256"])
    assert info["cert_sha256"] == _server_cert_sha256(box.server)
    assert isinstance(info["sasl"], list)
    assert info["mechanism"] == "SCRAM-SHA-256"
    assert info["pipelining"] is True
    assert {"TOP", "UIDL", "PIPELINING"} <= set(info["capabilities"])
    assert info["greeting"].startswith("Dovecot")


@dovecot
def test_capa_lists_the_sasl_mechanisms_the_server_offers(box: Box) -> None:
    info = json.loads(box.run("capa", "--json").stdout)
    assert info["sasl"] == ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]


@dovecot
def test_capa_table(box: Box) -> None:
    result = box.run("capa")
    assert result.exit_code == 0 and result.stderr == ""
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert rows["mechanism"] == "SCRAM-SHA-256"
    assert rows["pipelining"] == "yes"
    assert rows["cert_sha256"].startswith(_server_cert_sha256(box.server)[:32])


@dovecot
def test_capa_table_shows_the_whole_fingerprint(box: Box) -> None:
    result = box.run("capa")
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert rows["cert_sha256"] == _server_cert_sha256(box.server)


# --- usage errors and the server's -ERR -----------------------------------------------------------


@pytest.mark.parametrize(("args", "line"), [
    (["list", "7-3"], "invalid message selection '7-3': the range is backwards (write 3-7)"),
    (["list", "0"], "invalid message selection '0': message numbers start at 1"),
    (["list", "--larger-than", "10Q"],
     "invalid size '10Q': expected a number of bytes with an optional k, M, G or T suffix "
     "(1024-based), e.g. 500, 500k, 1.5M, 2GB"),
    (["list", "--from", "("],
     "invalid regular expression '(' for --from: missing ), unterminated subpattern at "
     "position 0"),
    (["list", "--older-than", "3x"],
     "invalid duration '3x': expected a number and a unit: s, min, h, d, w, mo (30 days) or y "
     "(365 days), or several, e.g. 90min, 12h, 1.5d, 6mo, 1d12h"),
    (["dele", "--newer-than", "yesterday", "--yes"],
     "invalid duration 'yesterday': expected a number and a unit: s, min, h, d, w, mo (30 days) "
     "or y (365 days), or several, e.g. 90min, 12h, 1.5d, 6mo, 1d12h"),
    (["dele", "--older-than", "6m", "--yes"],
     "invalid duration '6m': 'm' is ambiguous: use 'min' for minutes or 'mo' for months"),
    (["list", "--header", "Bogus"],
     "invalid header filter 'Bogus': no colon; expected 'Name: REGEX', e.g. 'X-Spam-Flag: yes'"),
])
def test_usage_errors(box: Box, args: list[str], line: str) -> None:
    result = box.run(*args)
    assert outcome(result) == (2, "", f"Error: {line}\n")
    assert box.count() == 3


@pytest.mark.parametrize("args", [["list", "999"], ["top", "999"], ["retr", "999"],
                                  ["uidl", "999"], ["dele", "999", "--yes"],
                                  ["list", "2,999", "--json"]])
def test_no_such_message(box: Box, args: list[str]) -> None:
    assert outcome(box.run(*args)) == (
        5, "", "Error: message 999 does not exist (the mailbox has 3 messages)\n")
    assert box.count() == 3


def test_missing_host() -> None:
    result = invoke("stat", "--user", USER, env=ENV)
    assert outcome(result) == (
        2, "", "Error: no server given: use --host HOST (or POPCTL_HOST), or try --sandbox\n")


def test_missing_user() -> None:
    result = invoke("--host", "localhost", "stat", env=ENV)
    assert outcome(result) == (2, "", "Error: no user given: use --user NAME (or POPCTL_USER)\n")


def test_click_usage_error() -> None:
    result = invoke("list", "--no-such-option")
    assert outcome(result) == (
        2, "", "Error: No such option '--no-such-option' (see popctl list --help)\n")


def test_unknown_format_is_a_usage_error() -> None:
    result = invoke("stat", "--format", "xml")
    assert outcome(result) == (
        2, "", "Error: Invalid value for '--format' / '-f': 'xml' is not one of 'table', "
               "'json', 'ndjson', 'csv' (see popctl stat --help)\n")


# --- connection and TLS errors --------------------------------------------------------------------


def test_no_password_and_no_terminal(box: Box) -> None:
    result = box.run("stat", env={})
    assert outcome(result) == (
        7, "", "Error: no password for bob@localhost: set POPCTL_PASSWORD, or run popctl on a "
               "terminal to be asked\n")


def test_connection_refused() -> None:
    port = closed_port()
    result = invoke("--host", "127.0.0.1", "--port", str(port), "--user", USER, "stat", env=ENV)
    assert outcome(result) == (
        4, "", f"Error: cannot connect to 127.0.0.1:{port}: Connection refused; check the host "
               "and the port (--host, --port)\n")


@pytest.mark.parametrize(("tls", "port", "other"), [("implicit", 995, "110 instead, use --tls "
                                                     "starttls"),
                                                    ("starttls", 110, "995 instead, use --tls "
                                                     "implicit")])
def test_connection_refused_on_the_default_port_names_the_other_mode(tls: str, port: int,
                                                                     other: str) -> None:
    """A new user's first try: no --port, and the server is on the other mode's port."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"something listens on 127.0.0.1:{port} here")
    result = invoke("--host", "127.0.0.1", "--tls", tls, "--user", USER, "stat", env=ENV)
    assert outcome(result) == (
        4, "", f"Error: cannot connect to 127.0.0.1:{port}: Connection refused; if the server "
               f"listens on port {other}; else give its port with --port\n")


@dovecot
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_certificate_of_another_ca(box: Box, tls: str, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    options = box.options(tls)
    options[options.index("--ca-file") + 1] = str(other)
    result = invoke(*options, "stat", env=ENV)
    assert outcome(result) == (
        4, "", "Error: TLS certificate of localhost rejected: unable to get local issuer "
               "certificate; nothing was sent; " + _ca_or_pin(options, tls) + "\n")


def _ca_or_pin(options: list[str], tls: str) -> str:
    """The fix a rejection by an unknown issuer names (tests/cli/test_tls_hints.py has the rest)."""
    port = options[options.index("--port") + 1]
    return ("trust its CA with --ca-file FILE, or pin the certificate with --fingerprint SHA256 "
            f"(see it with: openssl s_client -connect localhost:{port}"
            f"{' -starttls pop3' if tls == 'starttls' else ''} </dev/null | openssl x509 "
            "-noout -fingerprint -sha256)")


@dovecot
def test_no_ca_file_means_system_cas(box: Box) -> None:
    options = box.options("implicit")
    i = options.index("--ca-file")
    del options[i:i + 2]
    result = invoke(*options, "stat", env=ENV)
    assert outcome(result) == (
        4, "", "Error: TLS certificate of localhost rejected: unable to get local issuer "
               "certificate; nothing was sent; " + _ca_or_pin(options, "implicit") + "\n")


@dovecot
def test_certificate_for_another_host_name(box: Box) -> None:
    options = box.options("implicit")
    options[options.index("--host") + 1] = "127.0.0.1"  # the certificate names localhost only
    result = invoke(*options, "stat", env=ENV)
    assert result.exit_code == 4 and result.stdout == ""
    line = one_error_line(result)
    assert line.startswith("Error: TLS certificate of 127.0.0.1 rejected: IP address mismatch")
    assert "; nothing was sent; connect by a name the certificate is for, or pin the " \
           "certificate with --fingerprint SHA256 (see it with: openssl s_client -connect " \
           "127.0.0.1:" in line


def test_tls_none_without_allow_plaintext_sends_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = invoke("--host", "127.0.0.1", "--port", str(port), "--tls", "none",
                        "--user", USER, "stat", env=ENV)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # popctl did not even connect
    assert outcome(result) == (
        4, "", "Error: refusing to send credentials over a connection without TLS; use --tls "
               "implicit or --tls starttls, or allow it explicitly with --allow-plaintext\n")


def test_tls_none_with_allow_plaintext(box: Box) -> None:
    options = box.options("starttls")
    options[options.index("--tls") + 1] = "none"
    result = invoke(*options, "--allow-plaintext", "--trace", "stat", "--format", "csv", env=ENV)
    assert result.exit_code == 0
    assert result.stdout == f"count,size\n3,{sum(len(m) for m in box.messages)}\n"
    assert "STLS" not in _client_lines(result.stderr)
    _assert_secret_hidden(result)


@dovecot
@pytest.mark.parametrize("form", ["hex", "colons", "prefixed"])
def test_fingerprint_pinning_replaces_ca_and_host_name_checks(box: Box, form: str) -> None:
    digest = _server_cert_sha256(box.server)
    pin = {"hex": digest,
           "colons": ":".join(digest[i:i + 2] for i in range(0, 64, 2)).upper(),
           "prefixed": "sha256:" + digest}[form]
    # no --ca-file, and an IP address the certificate does not name: the pin alone decides
    result = invoke("--host", "127.0.0.1", "--port", str(box.server.tls_port), "--user", USER,
                    "--fingerprint", pin, "stat", "--format", "csv", env=ENV)
    assert outcome(result) == (0, f"count,size\n3,{sum(len(m) for m in box.messages)}\n", "")


@dovecot
def test_wrong_fingerprint(box: Box) -> None:
    result = invoke("--host", "localhost", "--port", str(box.server.tls_port), "--user", USER,
                    "--fingerprint", "0" * 64, "stat", env=ENV)
    assert outcome(result) == (
        4, "", f"Error: certificate fingerprint of localhost is {_server_cert_sha256(box.server)},"
               " not the pinned one; refusing to continue (nothing was sent)\n")


def test_malformed_fingerprint() -> None:
    result = invoke("--host", "localhost", "--user", USER, "--fingerprint", "abc", "stat",
                    env=ENV)
    assert outcome(result) == (
        2, "", "Error: fingerprint 'abc': a SHA-256 fingerprint is 64 hex digits "
               "(colons allowed)\n")


@dovecot
def test_mechanism_not_offered_or_unknown(box: Box) -> None:
    assert outcome(box.run("--auth", "XOAUTH2", "stat")) == (
        5, "", "Error: the server does not offer XOAUTH2 (SASL: PLAIN, LOGIN, CRAM-MD5, "
               "SCRAM-SHA-256)\n")
    assert outcome(box.run("--auth", "BOGUS", "stat")) == (
        2, "", "Error: unknown authentication mechanism 'BOGUS'; choose from: APOP, CRAM-MD5, "
               "LOGIN, OAUTHBEARER, PLAIN, SCRAM-SHA-256, USER, XOAUTH2\n")
    assert outcome(box.run("--auth", "plain", "stat", "--format", "ndjson")) == (
        0, f'{{"count":3,"size":{sum(len(m) for m in box.messages)}}}\n', "")


@dovecot
def test_timeout_and_tls_mismatch(box: Box) -> None:
    # STLS expected, but the implicit-TLS port waits for a ClientHello: no greeting comes
    options = box.options("implicit")
    options[options.index("--tls") + 1] = "starttls"
    result = invoke(*options, "--timeout", "0.3", "stat", env=ENV)
    assert outcome(result) == (4, "", "Error: no answer from localhost for 0.3 s (read timeout); "
                                      "if this is an implicit-TLS port, use --tls implicit\n")
    # implicit TLS against the plain port
    options = box.options("starttls")
    options[options.index("--tls") + 1] = "implicit"
    result = invoke(*options, "stat", env=ENV)
    port = options[options.index("--port") + 1]
    assert outcome(result) == (
        4, "", f"Error: localhost:{port} did not answer in TLS (it looks like a plain POP3 "
               "port): use --tls starttls, or the implicit-TLS port (995)\n")


# --- the password never shows -------------------------------------------------------------------

_TRACE_LINE = re.compile(r"^ *[0-9]+\.[0-9]{3} ([CS*]): ?(.*)$")


def _client_lines(stderr: str) -> list[str]:
    lines = []
    for line in stderr.splitlines():
        match = _TRACE_LINE.match(line)
        assert match is not None or line.startswith("Error: "), line
        if match is not None and match[1] == "C":
            lines.append(match[2])
    return lines


def _decoded_base64(text: str) -> list[bytes]:
    """Every run of base64 characters in ``text``, decoded from each of its 4 alignments."""
    found = []
    for token in re.findall(r"[A-Za-z0-9+/]{4,}={0,2}", text):
        for start in range(4):
            chunk = token[start:]
            chunk = chunk[:len(chunk) - len(chunk) % 4]
            try:
                found.append(base64.b64decode(chunk))
            except (binascii.Error, ValueError):
                continue
    return found


def _assert_secret_hidden(result: Result) -> None:
    shown = result.stdout + result.stderr
    assert PASSWORD not in shown
    secret = PASSWORD.encode()
    for blob in (secret, b"\0bob\0" + secret, b"bob\0bob\0" + secret):
        assert base64.b64encode(blob).decode() not in shown
    assert not [blob for blob in _decoded_base64(shown) if secret in blob]
    assert secret.hex() not in shown


_LOGIN_LINES = {
    "USER": ["USER bob", "PASS ***", "CAPA"],  # CAPA pipelined with USER and PASS
    "PLAIN": ["AUTH PLAIN ***", "CAPA"],
    "LOGIN": ["AUTH LOGIN", "***", "***", "CAPA"],
    "CRAM-MD5": ["AUTH CRAM-MD5", "***", "CAPA"],
    "SCRAM-SHA-256": ["AUTH SCRAM-SHA-256 ***", "***", "", "CAPA"],
    "APOP": ["APOP ***", "CAPA"],
}


@dovecot
@pytest.mark.parametrize("debug", [False, True], ids=["trace", "trace+debug"])
@pytest.mark.parametrize("mechanism", list(_LOGIN_LINES))
def test_trace_redacts_every_mechanism(box: Box, mechanism: str, debug: bool) -> None:
    extra = ["--debug"] if debug else []
    result = box.run("--trace", *extra, "--auth", mechanism, "stat", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"count,size\n3,{sum(len(m) for m in box.messages)}\n"
    assert f"*: authenticating as bob with {mechanism}" in result.stderr
    assert _client_lines(result.stderr) == ["CAPA", "STLS", "CAPA", *_LOGIN_LINES[mechanism],
                                            "STAT", "QUIT"]
    _assert_secret_hidden(result)


def test_trace_user_pass_without_pipelining(box: Box) -> None:
    result = box.run("--trace", "--no-pipelining", "--auth", "USER", "list", "--json")
    assert result.exit_code == 0
    assert result.stdout == pretty([box.record(n) for n in (1, 2, 3)])
    assert _client_lines(result.stderr) == [
        "CAPA", "STLS", "CAPA", "USER bob", "PASS ***", "CAPA", "UIDL", "LIST",
        "TOP 1 0", "TOP 2 0", "TOP 3 0", "QUIT"]
    _assert_secret_hidden(result)


@dovecot
def test_trace_over_implicit_tls(box: Box) -> None:
    result = box.run("--trace", "list", "--sizes-only", "--json", tls="implicit")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [{"number": n, "size": len(box.messages[n - 1])}
                                         for n in (1, 2, 3)]
    assert _client_lines(result.stderr) == ["CAPA", "AUTH SCRAM-SHA-256 ***", "***", "", "CAPA",
                                            "LIST", "QUIT"]
    _assert_secret_hidden(result)


# --- the bundled sandbox (no Dovecot needed) ------------------------------------------------------

_SANDBOX_NOTE = re.compile(r"sandbox: sample POP3 server on 127\.0\.0\.1 port [0-9]+ "
                           r"\(user sandbox, password sandbox\)\n")


def test_sandbox_list_json() -> None:
    result = invoke("--sandbox", "list", "--json")
    assert result.exit_code == 0 and _SANDBOX_NOTE.fullmatch(result.stderr)
    records = json.loads(result.stdout)
    assert len(records) == 50
    assert [r["number"] for r in records] == list(range(1, 51))
    assert all(list(r) == ["number", "size", "uid", "from", "subject", "date", "from_name",
                           "from_address", "date_utc", "date_epoch"] for r in records)
    assert len([r for r in records if r["size"] > MIB]) == 3


def test_sandbox_dele_the_big_ones() -> None:
    big = [r for r in json.loads(invoke("--sandbox", "-q", "list", "--json").stdout)
           if r["size"] > MIB]
    result = invoke("--sandbox", "dele", "--larger-than", "1M", "--yes", "--format", "json")
    assert result.exit_code == 0 and _SANDBOX_NOTE.fullmatch(result.stderr)
    port = re.search(r"port (\d+)", result.stderr)
    assert port is not None
    assert unstamped(result)[1] == pretty([
        {**r, "deleted": True, "account": f"sandbox@localhost:{port[1]}", "time": "T"}
        for r in big])
    assert len(big) == 3


def test_sandbox_options_after_the_subcommand_and_quiet() -> None:
    result = invoke("stat", "--sandbox", "--quiet", "--format", "ndjson")
    assert result.exit_code == 0 and result.stderr == ""
    stat = json.loads(result.stdout)
    assert list(stat) == ["count", "size"] and stat["count"] == 50


# --- failed logins: last, because Dovecot answers them slowly ------------------------------------


@dovecot
def test_wrong_password(box: Box) -> None:
    result = box.run("stat", env={"POPCTL_PASSWORD": "not-" + PASSWORD})
    assert outcome(result) == (
        3, "", "Error: login failed: server said: [AUTH] Authentication failed.\n")
    assert box.count() == 3


@dovecot
def test_wrong_password_traced_and_debugged(box: Box) -> None:
    wrong = "wrong-" + PASSWORD
    result = box.run("--trace", "--debug", "--auth", "USER", "stat",
                     env={"POPCTL_PASSWORD": wrong})
    assert result.exit_code == 3 and result.stdout == ""
    assert "Traceback (most recent call last):" in result.stderr  # --debug
    assert result.stderr.endswith(
        "\nError: login failed: server said: [AUTH] Authentication failed.\n")
    trace = result.stderr[:result.stderr.index("Traceback")]
    assert _client_lines(trace) == ["CAPA", "STLS", "CAPA", "USER bob", "PASS ***", "CAPA"]
    shown = result.stdout + result.stderr
    assert wrong not in shown and PASSWORD not in shown
    assert not [b for b in _decoded_base64(shown) if PASSWORD.encode() in b]


@dovecot
def test_server_refusing_plaintext_login(box: Box) -> None:
    """On the port Dovecot sees as remote, USER/PASS without TLS is refused by the server."""
    result = invoke("--host", "localhost", "--port", str(box.server.untrusted_port),
                    "--tls", "none", "--allow-plaintext", "--auth", "USER", "--user", USER,
                    "stat", env=ENV)
    assert outcome(result) == (
        3, "", "Error: login failed: server said: [AUTH] Plaintext authentication disallowed "
               "on non-secure (SSL/TLS) connections.\n")
    secured = invoke("--host", "localhost", "--port", str(box.server.untrusted_port),
                     "--tls", "starttls", "--ca-file", box.server.ca_file, "--user", USER,
                     "--auth", "USER", "stat", "--format", "csv", env=ENV)
    assert outcome(secured) == (0, f"count,size\n3,{sum(len(m) for m in box.messages)}\n", "")
