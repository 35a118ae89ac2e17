"""The bad-input catalogue: every command with bad numbers, ranges, sizes, durations, regexes,
options, missing and already-deleted messages, unwritable output paths and a full disk.

For each: one clear ``Error: ...`` line (after click's two-line usage hint for the errors click
itself reports), the documented exit status, nothing deleted on the server, nothing
half-written locally. Inputs that can be judged without the server are refused before
connecting: the scripted server given to those cases records no connection at all.

docs/RELIABILITY.md lists these tables: keep the two in step.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl.cli import cli
from popctl.stores import FileStore, StoreError
from tests.support.dovecot_server import DovecotServer
from tests.support.scripted_server import ScriptedServer
from tests.support.stored import stored_messages

USER = "alice"

# --- refused before connecting ------------------------------------------------------------------

SELECTING = [("list",), ("uidl",), ("retr",), ("dele", "--yes"), ("top",)]
RANGES = {
    "0": "invalid message selection '0': message numbers start at 1",
    "-1": "invalid message selection '-1': message numbers start at 1",
    "abc": "invalid message selection 'abc': expected N, N-M, N- or last:N, comma-separated "
           "(e.g. 1,3,5-7 or last:5)",
    "5-3": "invalid message selection '5-3': the range is backwards (write 3-5)",
    "last:0": "invalid message selection 'last:0': last:N needs N of 1 or more",
    "last:x": "invalid message selection 'last:x': expected N, N-M, N- or last:N, "
              "comma-separated (e.g. 1,3,5-7 or last:5)",
    "99999999999999999999999": "invalid message selection '99999999999999999999999': number "
                               "too large",
    "1,,2": "invalid message selection '1,,2': empty item; expected N, N-M, N- or last:N, "
            "comma-separated (e.g. 1,3,5-7 or last:5)",
    "1.5": "invalid message selection '1.5': expected N, N-M, N- or last:N, comma-separated "
           "(e.g. 1,3,5-7 or last:5)",
}
SIZE_HELP = ("expected a number of bytes with an optional k, M, G or T suffix (1024-based), "
             "e.g. 500, 500k, 1.5M, 2GB")
SIZES = {
    "5Q": f"invalid size '5Q': {SIZE_HELP}",
    "-5": "invalid size '-5': sizes cannot be negative",
    "": f"invalid size '': {SIZE_HELP}",
    "1e400": f"invalid size '1e400': {SIZE_HELP}",
    "nan": f"invalid size 'nan': {SIZE_HELP}",
    "99999999999999999999999G": "invalid size '99999999999999999999999G': too large (the "
                                "limit is 2**63 - 1 bytes)",
}
DURATION_HELP = ("expected a number and a unit: s, min, h, d, w, mo (30 days) or y (365 days), "
                 "or several, e.g. 90min, 12h, 1.5d, 6mo, 1d12h")
DURATIONS = {
    "5x": f"invalid duration '5x': {DURATION_HELP}",
    "30": f"invalid duration '30': the number needs a unit; {DURATION_HELP}",
    "-1d": "invalid duration '-1d': durations cannot be negative",
    "": f"invalid duration '': {DURATION_HELP}",
    "9999999999999d": "invalid duration '9999999999999d': too long",
    # minutes or months? (issue 16: `--older-than 6m` meant six minutes)
    "6m": "invalid duration '6m': 'm' is ambiguous: use 'min' for minutes or 'mo' for months",
    "6M": "invalid duration '6M': 'M' is ambiguous: use 'min' for minutes or 'mo' for months",
}
REGEXES = {
    ("--from", "("): "invalid regular expression '(' for --from: missing ), unterminated "
                     "subpattern at position 0",
    ("--subject", "[z-a]"): "invalid regular expression '[z-a]' for --subject: bad character "
                            "range z-a at position 1",
    ("--subject", "*"): "invalid regular expression '*' for --subject: nothing to repeat at "
                        "position 0",
    ("--header", "NoColon"): "invalid header filter 'NoColon': no colon; expected 'Name: "
                             "REGEX', e.g. 'X-Spam-Flag: yes'",
    ("--header", ": x"): "invalid header filter ': x': the field name is empty; expected "
                         "'Name: REGEX', e.g. 'X-Spam-Flag: yes'",
    ("--header", "X: ("): "invalid regular expression '(' for --header X: missing ), "
                          "unterminated subpattern at position 0",
}

CASES: list[tuple[str, list[str], int, str]] = []  # id, argv after the connection options
for command in SELECTING:
    for spec, message in RANGES.items():
        CASES.append((f"{command[0]}-range-{spec}", [*command, "--", spec], 2, message))
for spec, message in SIZES.items():
    CASES.append((f"size-{spec}", ["list", "--larger-than", spec], 2, message))
    CASES.append((f"dele-size-{spec}", ["dele", "--yes", "--smaller-than", spec], 2, message))
for spec, message in DURATIONS.items():
    CASES.append((f"duration-{spec}", ["list", "--older-than", spec], 2, message))
    CASES.append((f"dele-duration-{spec}", ["dele", "--yes", "--newer-than", spec], 2, message))
for (option, spec), message in REGEXES.items():
    CASES.append((f"regex{option}-{spec}", ["list", option, spec], 2, message))
    CASES.append((f"dele-regex{option}-{spec}", ["dele", "--yes", option, spec], 2, message))
CASES += [
    ("dele-nothing-selected", ["dele", "--yes"], 2, "say which messages to delete: numbers or "
     "ranges, --uid, --all, or a filter such as --larger-than"),
    ("dele-without-yes", ["dele", "1"], 2, "refusing to delete without confirmation: add --yes "
     "(or --dry-run to see what would be deleted)"),
    ("retr-nothing-selected", ["retr"], 2, "say which messages: numbers or ranges (3, 3-7, "
     "last:5), --uid, --all, or a filter such as --larger-than"),
    ("retr-delete-to-stdout", ["retr", "1", "--delete"], 2, "--delete needs a place to store "
     "messages first: --output-dir, --maildir, --mbox FILE, --pipe or --output"),
    ("retr-delete-to-stdout-mbox", ["retr", "1", "--mbox", "-", "--delete"], 2, "--delete needs "
     "a place to store messages first: --output-dir, --maildir, --mbox FILE, --pipe or --output"),
    ("retr-empty-pipe", ["retr", "1", "--pipe", " "], 2, "the command to deliver to is empty"),
    ("retr-empty-pipe-2", ["retr", "1", "--pipe", ""], 2, "the command to deliver to is empty"),
    ("retr-format-to-stdout", ["retr", "1", "--format", "json"], 2, "retr writes the messages "
     "themselves to stdout; --format applies to the report when storing with --output, "
     "--output-dir, --maildir, --mbox FILE or --pipe"),
    ("retr-two-stores", ["retr", "1", "--output-dir", "{tmp}", "--maildir", "{tmp}/m"], 2,
     "choose one of --output, --output-dir, --maildir, --mbox, --pipe"),
    # --columns and --sort are checked by the command line, before the connection is begun
    ("list-columns-unknown", ["list", "--columns", "number,colour"], 2, "unknown column "
     "'colour': the columns are number, size, uid, from, subject, date, from_name, "
     "from_address, date_utc, date_epoch"),
    ("list-sort-unknown", ["list", "--sort", "-weight"], 2, "cannot sort by 'weight': sort by "
     "number, size, date, from, subject, uid (a leading - for descending: -size)"),
    ("list-sizes-only-sort-date", ["list", "--sizes-only", "--sort", "date"], 2, "cannot sort "
     "by 'date': sort by number, size (a leading - for descending: -size)"),
    ("uidl-columns-unknown", ["uidl", "--columns", "size"], 2, "unknown column 'size': the "
     "columns are number, uid"),
    ("dele-columns-empty", ["dele", "1", "--yes", "--columns", ","], 2, "name at least one "
     "column, separated by commas"),
    ("top-no-message", ["top"], 2, "say which message: a number or --uid UID"),
    ("top-number-lines-and-uid", ["top", "1", "2", "--uid", "x"], 2, "with --uid, give only "
     "LINES after it: top --uid UID [LINES]"),
    ("top-lines-not-a-number", ["top", "1", "x"], 2, "Invalid value for '[LINES]': 'x' is not "
     "a valid integer range (see popctl top --help)"),
    ("top-negative-lines", ["top", "1", "--", "-1"], 2, "Invalid value for '[LINES]': -1 is not "
     "in the range 0<=x<=1000000000 (see popctl top --help)"),
    ("timeout-zero", ["--timeout", "0", "stat"], 2, "Invalid value for '--timeout': 0.0 is not "
     "in the range 0.1<=x<=3600 (see popctl --help)"),
    ("timeout-not-a-number", ["--timeout", "soon", "stat"], 2, "Invalid value for '--timeout': "
     "'soon' is not a valid float range (see popctl --help)"),
    ("port-zero", ["--port", "0", "stat"], 2, "Invalid value for '--port' / '-P': 0 is not in "
     "the range 1<=x<=65535 (see popctl --help)"),
    ("port-too-big", ["--port", "70000", "stat"], 2, "Invalid value for '--port' / '-P': 70000 "
     "is not in the range 1<=x<=65535 (see popctl --help)"),
    ("format-unknown", ["--format", "xml", "stat"], 2, "Invalid value for '--format' / '-f': "
     "'xml' is not one of 'table', 'json', 'ndjson', 'csv' (see popctl --help)"),
    ("tls-unknown", ["--tls", "maybe", "stat"], 2, "Invalid value for '--tls': 'maybe' is not "
     "one of 'implicit', 'starttls', 'none' (see popctl --help)"),
    ("fingerprint-malformed", ["--fingerprint", "zz", "stat"], 2, "fingerprint 'zz': a "
     "SHA-256 fingerprint is 64 hex digits (colons allowed)"),
    ("command-unknown", ["frobnicate"], 2, "No such command 'frobnicate' (see popctl --help)"),
    # Local places that cannot be written: refused before connecting, so nothing is fetched.
    # --output-dir creates its directory (as --maildir does), but not a missing parent.
    ("output-dir-parent-missing", ["retr", "1", "--output-dir", "{tmp}/missing/big"], 1,
     "cannot create {tmp}/missing/big: No such file or directory"),
    ("output-dir-is-a-file", ["retr", "1", "--output-dir", "{tmp}/file"], 2,
     "Invalid value for '--output-dir': Directory '{tmp}/file' is a file (see popctl retr --help)"),
    ("output-in-missing-dir", ["retr", "1", "--output", "{tmp}/missing/x.eml"], 1,
     "cannot write to {tmp}/missing: No such file or directory"),
    ("output-is-a-directory", ["retr", "1", "--output", "{tmp}"], 2,
     "Invalid value for '--output' / '-o': File '{tmp}' is a directory (see popctl retr --help)"),
    ("output-is-a-fifo", ["retr", "1", "--output", "{tmp}/fifo"], 1,
     "cannot write {tmp}/fifo: not a regular file, and --output replaces the file; redirect "
     "standard output instead"),
    ("maildir-under-a-file", ["retr", "1", "--maildir", "{tmp}/file/Mail"], 1,
     "cannot create {tmp}/file/Mail: Not a directory"),
    ("maildir-parent-missing", ["retr", "1", "--maildir", "{tmp}/missing/Mail"], 1,
     "cannot create {tmp}/missing/Mail: No such file or directory"),
    ("maildir-is-a-file", ["retr", "1", "--maildir", "{tmp}/file"], 2,
     "Invalid value for '--maildir': Directory '{tmp}/file' is a file (see popctl retr --help)"),
    ("mbox-not-an-mbox", ["retr", "1", "--mbox", "{tmp}/file"], 2,
     "{tmp}/file is not an mbox file (it does not begin with 'From '); refusing to append "
     "to it"),
    ("mbox-in-missing-dir", ["retr", "1", "--mbox", "{tmp}/missing/mbox"], 1,
     "cannot open {tmp}/missing/mbox: No such file or directory"),
    ("mbox-is-a-fifo", ["retr", "1", "--mbox", "{tmp}/fifo"], 1,
     "cannot use {tmp}/fifo as an mbox: not a regular file"),
    ("mbox-is-dev-null", ["retr", "1", "--mbox", "/dev/null"], 1,
     "cannot use /dev/null as an mbox: not a regular file"),
]


def error_lines(result: Result) -> list[str]:
    """stderr as lines: Click's usage errors too are one line, without Click's usage block."""
    return result.stderr.splitlines()


@pytest.mark.parametrize(("args", "code", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_refused_before_connecting(args: list[str], code: int, message: str,
                                   tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a mailbox\n")
    os.mkfifo(tmp_path / "fifo")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with ScriptedServer([], timeout=0.3) as server:
        options = ["--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
                   "--allow-plaintext", "--user", USER]
        result = CliRunner().invoke(cli, [*options, *args], env={"POPCTL_PASSWORD": "pw"},
                                    prog_name="popctl")
    assert result.exit_code == code, result.stderr
    assert error_lines(result) == [f"Error: {message.replace('{tmp}', str(tmp_path))}"]
    assert result.stdout == ""
    assert isinstance(result.exception, SystemExit)
    assert not any(data == b"connected" for _, data in server.transcript), "it connected"
    # Nothing written: the prepared file and FIFO are all there is.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "file"]
    assert (tmp_path / "file").read_text() == "not a mailbox\n"


def test_cases_are_unique() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


def test_file_store_never_replaces_a_device_or_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        with pytest.raises(StoreError, match="not a regular file"):
            FileStore(target)
    assert fifo.is_fifo() and Path("/dev/null").is_char_device()
    assert not list(Path("/dev").glob(".popctl-*"))


# --- against a real server: missing and deleted messages, a full disk ----------------------


def message(n: int, size: int = 200) -> bytes:
    head = (b"From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\n"
            b"Message-ID: <%d@example.org>\r\n\r\n" % (n, n, n))
    line = b"%d " % n + b"x" * 70 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


@pytest.fixture
def box(dovecot_mailbox: DovecotServer) -> DovecotServer:
    for n in (1, 2, 3):
        dovecot_mailbox.deliver(USER, message(n, 40_000))
    return dovecot_mailbox


def server_messages(server: DovecotServer) -> list[str]:
    """What the server holds: the SHA-256 of every message file (moving to cur/ is no change)."""
    maildir = server.maildir(USER)
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)


def options(server: DovecotServer) -> list[str]:
    return ["--host", "localhost", "--port", str(server.port), "--tls", "starttls",
            "--ca-file", server.ca_file, "--user", USER, "--timeout", "10"]


def env(server: DovecotServer) -> dict[str, str]:
    return {"POPCTL_PASSWORD": server.users[USER]}


MISSING = "message 9 does not exist (the mailbox has 3 messages)"
SERVER_CASES = [
    ("list-missing", ["list", "9"], 5, MISSING),
    ("uidl-missing", ["uidl", "9"], 5, MISSING),
    ("top-missing", ["top", "9"], 5, MISSING),
    ("retr-missing", ["retr", "9"], 5, MISSING),
    ("retr-one-missing-of-two", ["retr", "1,9", "--output-dir", "{out}", "--delete"], 5,
     MISSING),
    ("dele-missing", ["dele", "9", "--yes"], 5, MISSING),
    ("dele-one-missing-of-three", ["dele", "1,2,9", "--yes"], 5, MISSING),
    ("dele-unknown-uid", ["dele", "--uid", "no-such-uid", "--yes"], 5,
     "no message has UID 'no-such-uid'; nothing was done"),
    ("retr-unknown-uid", ["retr", "--uid", "no-such-uid", "--maildir", "{out}/Mail",
                          "--delete"], 5, "no message has UID 'no-such-uid'; nothing was done"),
    ("top-two-messages", ["top", "1-2"], 2,
     "this command takes exactly one message; the selection has 2"),
    ("retr-output-takes-one", ["retr", "1,2", "--output", "{out}/one.eml", "--delete"], 2,
     "the selection has 2 messages; --output FILE takes one: use --output-dir DIR"),
    ("auth-unknown", ["--auth", "FOO", "stat"], 2, "unknown authentication mechanism 'FOO'; "
     "choose from: APOP, CRAM-MD5, LOGIN, OAUTHBEARER, PLAIN, SCRAM-SHA-256, USER, XOAUTH2"),
]


def _uids(server: DovecotServer) -> list[str]:
    result = CliRunner().invoke(cli, [*options(server), "uidl", "--format", "csv"],
                                env=env(server))
    assert result.exit_code == 0, result.stderr
    return [line.split(",")[1] for line in result.stdout.splitlines()[1:]]


@pytest.mark.dovecot
@pytest.mark.parametrize(("args", "code", "message"), [c[1:] for c in SERVER_CASES],
                         ids=[c[0] for c in SERVER_CASES])
def test_missing_messages_delete_and_write_nothing(box: DovecotServer, args: list[str],
                                                    code: int, message: str,
                                                    tmp_path: Path) -> None:
    before = server_messages(box)
    out = tmp_path / "out"
    out.mkdir()
    uids = _uids(box) if any("{uid" in a for a in args) else ["", ""]
    args = [a.replace("{out}", str(out)).replace("{uid1}", uids[0]).replace("{uid2}", uids[1])
            for a in args]
    result = CliRunner().invoke(cli, [*options(box), *args], env=env(box))
    assert result.exit_code == code, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.stderr
    assert result.stdout == ""
    assert server_messages(box) == before
    assert [p for p in out.rglob("*") if not p.is_dir()] == []  # an empty Maildir at most


@pytest.mark.dovecot
def test_already_deleted_in_the_shell(box: DovecotServer) -> None:
    before = server_messages(box)
    for second in ("retr 2", "top 2", "dele 2 --yes", "list 2"):
        result = CliRunner().invoke(cli, [*options(box), "shell"], env=env(box),
                                    input=f"dele 2 --yes --format json\n{second}\nquit\n")
        assert result.exit_code == 5, result.stderr
        assert result.stderr == ("Error: message 2 does not exist or is deleted\nError: shell "
                                 "stopped; the session was closed without QUIT, so nothing "
                                 "was deleted\n")
        assert server_messages(box) == before


@pytest.mark.dovecot
def test_already_deleted_by_an_earlier_session(box: DovecotServer) -> None:
    """Numbers move up after a deletion; a UID does not, so it is the safe handle."""
    uid = _uids(box)[1]
    first = CliRunner().invoke(cli, [*options(box), "dele", "--uid", uid, "--yes"],
                               env=env(box))
    assert first.exit_code == 0, first.stderr
    left = server_messages(box)
    assert len(left) == 2
    again = CliRunner().invoke(cli, [*options(box), "dele", "--uid", uid, "--yes"],
                               env=env(box))
    assert (again.exit_code, again.stderr) == (
        5, f"Error: no message has UID '{uid}'; nothing was done\n")
    assert server_messages(box) == left


# --- a full disk ----------------------------------------------------------------------------


STORES = {"maildir": "Mail", "output-dir": "", "mbox": "mbox"}


@pytest.mark.dovecot
@pytest.mark.parametrize("kind", list(STORES))
def test_full_disk(box: DovecotServer, tiny_fs: Path, kind: str) -> None:
    before = server_messages(box)
    target = tiny_fs / STORES[kind]
    result = CliRunner().invoke(cli, [*options(box), "retr", "--all", f"--{kind}", str(target),
                                      "--delete"], env=env(box))
    assert result.exit_code == 1, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error: cannot "), lines
    # Issue 16: the one line also says what was already stored, and that nothing was deleted.
    stored = "no message was" if kind == "mbox" else "1 message(s) already"
    assert lines[0].endswith(f": No space left on device; {stored} stored in {target}; none "
                             "was deleted from the server"), lines
    assert server_messages(box) == before  # no QUIT: the DELEs sent were rolled back
    kept = stored_messages(kind, target)
    # Complete, or not there. An mbox record is staged beside the mbox before it is appended,
    # so it needs room twice: on 64 KiB not even the first fits.
    assert kept == ([] if kind == "mbox" else [message(1, 40_000)])


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write(2) then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))


@pytest.mark.dovecot
@pytest.mark.parametrize("kind", [*STORES, "output"])
def test_file_size_limit(dovecot_mailbox: DovecotServer, tmp_path: Path, kind: str) -> None:
    """A write that fails half-way, without root: RLIMIT_FSIZE makes write(2) fail (EFBIG)
    past 60,000 bytes in any one file; message 2 (80 KB) cannot be stored."""
    sizes = [80_000] if kind == "output" else [40_000, 80_000, 40_000]
    for n, size in enumerate(sizes, 1):
        dovecot_mailbox.deliver(USER, message(n, size))
    before = server_messages(dovecot_mailbox)
    target = tmp_path / {"output": "one.eml", "output-dir": "out", "maildir": "Mail",
                         "mbox": "mbox"}[kind]
    if kind == "output-dir":
        target.mkdir()
    preexec: Callable[[], None] = _limit_file_size
    process = subprocess.run(
        [sys.executable, "-m", "popctl", *options(dovecot_mailbox), "retr", "--all",
         f"--{kind}", str(target), "--delete"], env={**os.environ, **env(dovecot_mailbox)},
        capture_output=True, timeout=60, preexec_fn=preexec)
    assert process.returncode == 1, process.stderr
    assert process.stderr.startswith(b"Error: cannot ") and process.stderr.count(b"\n") == 1
    stored = "no message was" if kind == "output" else "1 message(s) already"
    assert process.stderr.endswith(f": File too large; {stored} stored in {target}; none was "
                                   "deleted from the server\n".encode()), process.stderr
    assert server_messages(dovecot_mailbox) == before  # no QUIT: every DELE rolled back
    if kind == "output":
        assert list(tmp_path.iterdir()) == []
    else:
        assert stored_messages(kind, target) == [message(1, 40_000)]
