"""Issue 16, "Cron and pipes", as a user meets it: the README's cron lines run as written (an
NDJSON log whose every record says which account and when), several messages on stdout only as
mboxrd (``--mbox -``), delivery to a program (``--pipe``), and ``--output-dir`` creating its
directory. Against a private SandboxServer (the sample messages, or messages made here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from click.testing import Result

from popctl.sandbox import SandboxServer
from popctl.sandbox.mailbox import sample_mailbox
from popctl.stores import pipe
from tests.support.cli import invoke, outcome

ROOT = Path(__file__).resolve().parents[2]
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def message(number: int, *, days_old: float = 1, size: int = 0, sender: str = "") -> bytes:
    date = format_datetime(datetime.now(UTC) - timedelta(days=days_old))
    head = (f"Return-Path: <{sender}>\r\n" if sender else "") + (
        f"From: Sender {number} <s{number}@example.org>\r\nSubject: message {number}\r\n"
        f"Date: {date}\r\nMessage-ID: <{number}@example.org>\r\n\r\n")
    body = f"Body of message {number}.\r\nFrom the kitchen: >From here too\r\n"
    filler = ("x" * 998 + "\r\n") * (size // 1000)
    return head.encode() + body.encode() + filler.encode()


def environment(server: SandboxServer) -> dict[str, str]:
    """What a crontab would set: the server and login in POPCTL_* variables."""
    return {"POPCTL_HOST": "localhost", "POPCTL_PORT": str(server.address[1]),
            "POPCTL_TLS": "starttls", "POPCTL_CA_FILE": str(server.ca_file),
            "POPCTL_USER": "sandbox", "POPCTL_PASSWORD": "sandbox"}


def run(server: SandboxServer, *args: str) -> Result:
    return invoke(*args, env=dict(environment(server)))


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(sample_mailbox()[:5]) as server:
        yield server


def count(server: SandboxServer) -> int:
    result = run(server, "stat", "--json")
    assert result.exit_code == 0, result.stderr
    number: int = json.loads(result.stdout)["count"]
    return number


# --- the README's cron lines ------------------------------------------------------------------


def readme_cron_lines() -> list[str]:
    """The commands of the crontab lines in README.md's cron section, exactly as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### A cron purge"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    commands = []
    for line in lines:
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab line: {line!r}"
        commands.append(fields[5])
    return commands


def run_in_cron(command: str, home: Path, server: SandboxServer, bin_dir: Path) -> None:
    """``command`` as cron runs it: /bin/sh, no terminal, popctl on the PATH."""
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "PYTHONPATH": str(ROOT),  # this checkout's popctl, whatever is installed
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           **environment(server)}
    done = subprocess.run(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120, cwd=home)
    assert done.returncode == 0, done.stderr.decode()


@pytest.fixture
def popctl_on_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "popctl"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m popctl "$@"\n')
    shim.chmod(0o755)
    return bin_dir


def test_the_readme_cron_lines_write_an_ndjson_log(tmp_path: Path, popctl_on_path: Path) -> None:
    """Run twice, the README's purge lines log one JSON object per deleted message, each with
    the account and the time, and nothing for a run that matched nothing (no ``[]``)."""
    commands = [c for c in readme_cron_lines() if " dele " in c]
    assert len(commands) == 2 and all(c.endswith(">> ~/purge.log") for c in commands)
    mib = 1024 * 1024
    messages = [message(1, days_old=10, size=11 * mib),  # the nightly purge's
                message(2, days_old=2, size=11 * mib),   # too young for either
                message(3, days_old=200),                # the Sunday purge's
                message(4, days_old=1)]
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    log = home / "purge.log"
    with SandboxServer(messages) as server:
        for _night in range(2):
            for command in commands:
                run_in_cron(command, home, server, popctl_on_path)
        assert count(server) == 2
        port = server.address[1]
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["subject"], r["deleted"]) for r in records] == [("message 1", True),
                                                               ("message 3", True)]
    for record in records:
        assert record["account"] == f"sandbox@localhost:{port}"
        assert TIME.fullmatch(record["time"]), record["time"]
        assert list(record)[-2:] == ["account", "time"]


def test_the_readme_cron_fetch_line_delivers_through_procmail(tmp_path: Path,
                                                             popctl_on_path: Path) -> None:
    """The README's procmail line, run as written; ``procmail`` is a stand-in on the PATH that
    records its arguments and what it read."""
    [command] = [c for c in readme_cron_lines() if " retr " in c]
    assert "--pipe" in command and command.endswith(">> ~/fetch.log")
    procmail = popctl_on_path / "procmail"
    procmail.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$HOME/args-$POPCTL_NUMBER"\n'
                        'cat > "$HOME/mail-$POPCTL_NUMBER"\n')
    procmail.chmod(0o755)
    messages = [message(1, sender="alice@example.org"), message(2)]
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    with SandboxServer(messages) as server:
        for _run in range(2):  # the second finds nothing: nothing is logged
            run_in_cron(command, home, server, popctl_on_path)
        assert count(server) == 0
    assert [(home / f"mail-{n}").read_bytes() for n in (1, 2)] == [
        m.replace(b"\r\n", b"\n") for m in messages]
    assert (home / "args-1").read_text() == "-f\nalice@example.org\n"
    assert (home / "args-2").read_text() == "-f\nMAILER-DAEMON\n"
    records = [json.loads(line) for line in (home / "fetch.log").read_text().splitlines()]
    assert [(r["number"], r["deleted"]) for r in records] == [(1, True), (2, True)]
    assert all(TIME.fullmatch(r["time"]) and r["account"].startswith("sandbox@localhost:")
               for r in records)


def test_ndjson_writes_nothing_when_nothing_matched(sandbox: SandboxServer) -> None:
    result = run(sandbox, "dele", "--larger-than", "100M", "--yes", "--format", "ndjson")
    assert outcome(result) == (0, "", "")
    # JSON still writes its (empty) array, as before
    result = run(sandbox, "dele", "--larger-than", "100M", "--yes", "--format", "json")
    assert outcome(result) == (0, "[]\n", "")


def test_an_accounts_name_is_its_label(sandbox: SandboxServer, tmp_path: Path) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "popctl" / "config.toml"
    config.write_text(f'[accounts.work]\nhost = "localhost"\nport = {sandbox.address[1]}\n'
                      f'user = "sandbox"\ntls = "starttls"\nca_file = "{sandbox.ca_file}"\n')
    result = invoke("--account", "work", "retr", "1", "--output-dir", str(tmp_path / "out"),
                    "--format", "ndjson", env={"POPCTL_PASSWORD": "sandbox"})
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["account"] == "work" and TIME.fullmatch(record["time"])


def test_csv_and_the_table_keep_their_columns(sandbox: SandboxServer) -> None:
    """account and time are in JSON and NDJSON only: CSV read by position does not shift."""
    result = run(sandbox, "dele", "1", "--dry-run", "--format", "csv")
    assert result.stdout.splitlines()[0] == "number,size,uid,from,subject,date,deleted"
    table = run(sandbox, "dele", "1", "--dry-run")
    assert "time" not in table.stdout.splitlines()[0]


# --- several messages on standard output ------------------------------------------------------


def test_several_messages_on_stdout_are_refused_before_any_retr(sandbox: SandboxServer) -> None:
    result = run(sandbox, "--trace", "retr", "1-3")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        "Error: the selection has 3 messages, which would run together on standard output with "
        "nothing between them: use --mbox - for mboxrd on standard output (each message after "
        "its From line), or store them with --output-dir, --maildir, --mbox FILE or --pipe "
        "COMMAND")
    assert "C: RETR" not in result.stderr


def test_one_message_on_stdout_stays_byte_exact(sandbox: SandboxServer) -> None:
    result = run(sandbox, "retr", "2")
    assert (result.exit_code, result.stdout_bytes) == (0, sample_mailbox()[1])


def mboxrd_messages(data: bytes) -> list[tuple[str, bytes]]:
    """(sender, message) of each mboxrd record, the quoting undone."""
    records = re.split(rb"(?:\A|(?<=\n)\n)From (\S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d "
                       rb"\d\d:\d\d:\d\d \d{4}\n", data)
    assert records[0] == b"", records[0][:80]
    found = []
    for sender, body in zip(records[1::2], records[2::2], strict=True):
        found.append((sender.decode(), re.sub(rb"(?m)^>(>*From )", rb"\1", body)))
    return found


def test_mbox_dash_writes_mboxrd_to_stdout() -> None:
    messages = [message(1, sender="alice@example.org"), message(2), message(3)]
    with SandboxServer(messages) as server:
        result = run(server, "retr", "1-3", "--mbox", "-")
        assert result.exit_code == 0 and result.stderr == ""
        data = result.stdout_bytes
        assert data.endswith(b"\n\n")
        assert b"\n>From the kitchen: >From here too\n" in data  # quoted
        assert mboxrd_messages(data[:-1]) == [
            ("alice@example.org", messages[0].replace(b"\r\n", b"\n")),
            ("MAILER-DAEMON", messages[1].replace(b"\r\n", b"\n")),
            ("MAILER-DAEMON", messages[2].replace(b"\r\n", b"\n"))]
        # the same records --mbox FILE appends (but for the From lines' times)
        assert count(server) == 3


# --- --pipe -----------------------------------------------------------------------------------


def deliveries(directory: Path) -> list[tuple[dict[str, str], bytes]]:
    return [(json.loads((directory / f"{n}.env").read_text()), (directory / f"{n}.eml")
             .read_bytes()) for n in sorted(int(p.stem) for p in directory.glob("*.eml"))]


RECORDER = (f'{sys.executable} -c "import json, os; print(json.dumps({{k: v for k, v in '
            f'os.environ.items() if k.startswith(\'POPCTL_\')}}))" > "$OUT/$POPCTL_NUMBER.env" '
            '&& cat > "$OUT/$POPCTL_NUMBER.eml"')


def test_pipe_delivers_each_message_to_a_program(tmp_path: Path) -> None:
    messages = [message(1, sender="alice@example.org"), message(2), message(3)]
    out = tmp_path / "delivered"
    out.mkdir()
    with SandboxServer(messages) as server:
        env = {**environment(server), "OUT": str(out)}
        result = invoke("retr", "--all", "--pipe", RECORDER, "--delete", "--format", "ndjson",
                        env=dict(env))
        assert result.exit_code == 0, result.stderr
        assert count(server) == 0
        port = server.address[1]
    got = deliveries(out)
    assert [m for _, m in got] == [m.replace(b"\r\n", b"\n") for m in messages]  # LF
    for number, (variables, _) in enumerate(got, start=1):
        assert variables["POPCTL_NUMBER"] == str(number)
        assert variables["POPCTL_ACCOUNT"] == f"sandbox@localhost:{port}"
        assert len(variables["POPCTL_UID"]) > 0
        assert "POPCTL_PASSWORD" not in variables  # the secret stays with popctl
    assert [v["POPCTL_SENDER"] for v, _ in got] == ["alice@example.org", "MAILER-DAEMON",
                                                    "MAILER-DAEMON"]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["number"], r["stored"], r["deleted"]) for r in records] == [
        (n, f"|{RECORDER}", True) for n in (1, 2, 3)]


def test_the_programs_output_does_not_reach_the_report(sandbox: SandboxServer,
                                                       tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(f'cd {tmp_path} && {sys.executable} -m popctl retr 1 --pipe '
                      "'echo chatter; cat >/dev/null' --format ndjson > report.txt 2> err.txt\n")
    env = {**os.environ, **environment(sandbox), "PYTHONPATH": str(ROOT)}
    subprocess.run(["/bin/sh", str(script)], env=env, check=True, timeout=60,
                   stdin=subprocess.DEVNULL)
    report = (tmp_path / "report.txt").read_text().splitlines()
    assert len(report) == 1 and json.loads(report[0])["number"] == 1
    assert (tmp_path / "err.txt").read_text() == "chatter\n"


def test_a_failing_program_stops_the_batch_and_deletes_nothing(tmp_path: Path) -> None:
    messages = [message(1), message(2), message(3)]
    seen = tmp_path / "seen"
    command = (f'echo "$POPCTL_NUMBER" >> {seen}; cat > /dev/null; '
               'test "$POPCTL_NUMBER" != 2 || exit 75')
    with SandboxServer(messages) as server:
        result = run(server, "retr", "--all", "--pipe", command, "--delete")
        uid = re.search(r"uid (\S+)\)", result.stderr)
        assert uid is not None
        assert outcome(result) == (1, "", (
            f"Error: delivering message 2 (uid {uid[1]}): {command!r} failed (exit status 75); "
            "the message is kept on the server; 1 message(s) already delivered; none was deleted "
            "from the server\n"))
        assert count(server) == 3  # no QUIT after a failed delivery: nothing deleted
    assert seen.read_text().split() == ["1", "2"]  # message 3 was never handed over


def test_a_program_that_hangs_is_stopped(sandbox: SandboxServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipe, "PIPE_TIMEOUT", 0.5)
    started = tmp_path / "started"
    command = f"echo $$ > {started}; exec sleep 60"
    result = run(sandbox, "retr", "1", "--pipe", command, "--delete")
    assert outcome(result) == (1, "", (
        f"Error: delivering message 1 (uid {_uid(sandbox, 1)}): {command!r} did not finish within "
        "0.5 s and was stopped; the message is kept on the server; no message was delivered; "
        "none was deleted from the server\n"))
    pid = int(started.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert count(sandbox) == 5


def _uid(server: SandboxServer, number: int) -> str:
    result = run(server, "uidl", str(number), "--json")
    uid: str = json.loads(result.stdout)[0]["uid"]
    return uid


def test_pipe_is_one_destination_among_others(sandbox: SandboxServer, tmp_path: Path) -> None:
    result = run(sandbox, "retr", "1", "--pipe", "cat", "--mbox", str(tmp_path / "m"))
    assert outcome(result)[0] == 2
    assert "choose one of --output, --output-dir, --maildir, --mbox, --pipe" in result.stderr


# --- --output-dir creates its directory ---------------------------------------------------------


def test_output_dir_is_created_as_in_the_help_example(sandbox: SandboxServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(sandbox, "retr", "--larger-than", "1k", "--output-dir", "big/")
    assert result.exit_code == 0, result.stderr
    big = tmp_path / "big"
    assert stat.S_IMODE(big.stat().st_mode) == 0o700
    stored = sorted(p.read_bytes() for p in big.iterdir())
    assert stored == sorted(m for m in sample_mailbox()[:5] if len(m) > 1024)
    assert outcome(result)[2] == f"{len(stored)} message(s) stored in big/\n"
    shutil.rmtree(big)
