"""Issue 14: `retr --new` (only what this account has not stored in this store before),
`--keep-days`, `popctl seen list|forget`, and exit 75 for [IN-USE] / [LOGIN-DELAY], through the
command line against the scripted server, which proves every byte popctl sent."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import Result

from tests.support.cli import closed_port, invoke
from tests.support.scripted_server import ScriptedServer, Step, close, expect, expect_eof, send
from tests.support.stored import stored_messages

PASSWORD = "s3cret"
M1 = b"Subject: one\r\n\r\nbody one\r\n"
M2 = b"Subject: two\r\n\r\nbody two, longer\r\n"
M3 = b"Subject: three\r\n\r\nbody three\r\n"
CAPS = b"+OK\r\nTOP\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n"
LOGIN = b"USER alice\r\nPASS s3cret\r\nCAPA\r\nUIDL\r\n"
DAY = 86400
T0 = 1_800_000_000


def uidl(uids: Sequence[bytes]) -> bytes:
    return b"+OK\r\n" + b"".join(b"%d %s\r\n" % (n, u) for n, u in enumerate(uids, 1)) + b".\r\n"


def listing(messages: Sequence[bytes]) -> bytes:
    return (b"+OK\r\n" + b"".join(b"%d %d\r\n" % (n, len(m)) for n, m in enumerate(messages, 1))
            + b".\r\n")


def script(uids: Sequence[bytes], messages: Sequence[bytes], fetched: Sequence[int] = (),
           deleted: Sequence[int] = (), error: bool = False) -> list[Step]:
    """A session of `retr --new`: login with UIDL, then (if anything is fetched) LIST and the
    RETRs of ``fetched``, then the DELEs of ``deleted``, then QUIT (none after an error)."""
    steps: list[Step] = [send(b"+OK POP3 ready\r\n"), expect(b"CAPA\r\n"), send(CAPS),
                         expect(LOGIN), send(b"+OK\r\n+OK\r\n" + CAPS + uidl(uids))]
    if fetched:
        steps += [expect(b"LIST\r\n"), send(listing(messages)),
                  expect(b"".join(b"RETR %d\r\n" % n for n in fetched)),
                  send(b"".join(b"+OK\r\n" + messages[n - 1] + b".\r\n" for n in fetched))]
    if error:
        steps.append(expect_eof())
    elif deleted:
        steps += [expect(b"".join(b"DELE %d\r\n" % n for n in deleted)),
                  send(b"+OK\r\n" * len(deleted)), expect(b"QUIT\r\n"), send(b"+OK bye\r\n")]
    else:
        steps += [expect(b"QUIT\r\n"), close()]
    return steps


PORT = 0  # every server of a test listens on this one: the state is per user@host:port


@pytest.fixture(autouse=True)
def _one_port() -> None:
    global PORT
    PORT = closed_port()


def run(steps: list[Step], *args: str, now: int | None = None) -> Result:
    env = {"POPCTL_PASSWORD": PASSWORD, "POPCTL_NOW": str(now) if now is not None else None}
    with ScriptedServer(steps, timeout=3.0, port=PORT) as server:
        result = invoke("--host", "127.0.0.1", "--port", str(server.port), "--tls", "none",
                        "--allow-plaintext", "--user", "alice", "--timeout", "2", *args, env=env)
    server.assert_done()
    return result


def test_a_second_run_with_nothing_new_sends_only_uidl_after_login(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    first = run(script([b"u1", b"u2"], [M1, M2], fetched=[1, 2]), "retr", "--new",
                "--maildir", str(maildir))
    assert (first.exit_code, first.stderr) == (0, f"2 new message(s) stored in {maildir}\n")
    # The whole conversation after the login (which carried UIDL) is QUIT.
    second = run(script([b"u1", b"u2"], [M1, M2]), "retr", "--new", "--maildir", str(maildir))
    assert (second.exit_code, second.stdout, second.stderr) == (0, "", "no new messages\n")
    assert stored_messages("maildir", maildir) == sorted([M1, M2])


def test_only_new_mail_is_fetched_and_each_store_has_its_own_state(tmp_path: Path) -> None:
    maildir, out = tmp_path / "Maildir", tmp_path / "out"
    out.mkdir()
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", str(maildir))
    result = run(script([b"u1", b"u2"], [M1, M2], fetched=[2]), "retr", "--new", "--maildir",
                 str(maildir), "--format", "json")
    assert result.exit_code == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert (record["number"], record["uid"], record["action"], record["deleted"]) == (
        2, "u2", "fetched", False)
    assert stored_messages("maildir", maildir) == sorted([M1, M2])
    # Another store of the same account has fetched nothing yet.
    run(script([b"u1", b"u2"], [M1, M2], fetched=[1, 2]), "retr", "--new", "--output-dir",
        str(out))
    assert stored_messages("output-dir", out) == sorted([M1, M2])


def test_keep_days_deletes_what_was_stored_long_enough_ago(tmp_path: Path) -> None:
    maildir = str(tmp_path / "Maildir")
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", maildir, now=T0)
    run(script([b"u1", b"u2"], [M1, M2], fetched=[2]), "retr", "--new", "--maildir", maildir,
        "--keep-days", "3", now=T0 + 2 * DAY)
    # Day 3.5: u1 (stored on day 0) goes; u2 (day 2) stays; u3 is fetched.
    dry = run(script([b"u1", b"u2", b"u3"], [M1, M2, M3]), "retr", "--new", "--maildir",
              maildir, "--keep-days", "3", "--dry-run", "--json", now=T0 + 3 * DAY + 1)
    assert [(r["uid"], r["action"]) for r in json.loads(dry.stdout)] == [
        ("u3", "would fetch"), ("u1", "would delete")]
    result = run(script([b"u1", b"u2", b"u3"], [M1, M2, M3], fetched=[3], deleted=[1]),
                 "retr", "--new", "--maildir", maildir, "--keep-days", "3",
                 now=T0 + 3 * DAY + 1)
    assert (result.exit_code, result.stderr) == (
        0, f"1 new message(s) stored in {maildir}; 1 deleted from the server\n")
    # u1 was deleted and forgotten; the others are recorded with the time of their first store.
    listed = invoke("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user", "alice",
                    "seen", "list", "--maildir", maildir, "--json")
    assert [(r["uid"], r["stored"]) for r in json.loads(listed.stdout)] == [
        ("u2", "2027-01-17T08:00:00+00:00"), ("u3", "2027-01-18T08:00:01+00:00")]


def test_a_uid_gone_from_the_server_is_forgotten(tmp_path: Path) -> None:
    maildir = str(tmp_path / "Maildir")
    run(script([b"u1", b"u2"], [M1, M2], fetched=[1, 2]), "retr", "--new", "--maildir", maildir)
    run(script([b"u2"], [M2]), "retr", "--new", "--maildir", maildir)
    listed = invoke("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user", "alice",
                    "seen", "list", "--maildir", maildir, "--format", "csv")
    assert [line.split(",")[0] for line in listed.stdout.splitlines()] == ["uid", "u2"]


def test_a_renumbered_mailbox_is_reported_and_nothing_fetched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = [b"old%d" % i for i in range(12)]
    messages = [b"Subject: %d\r\n\r\nbody\r\n" % i for i in range(12)]
    run(script(old, messages, fetched=list(range(1, 13))), "retr", "--new", "--output-dir",
        str(out))
    new = [b"new%d" % i for i in range(12)]
    result = run(script(new, messages, error=True), "retr", "--new", "--output-dir", str(out))
    assert result.exit_code == 5
    assert result.stderr == (
        f"Error: none of the 12 messages popctl stored in {out} is on the server any more, "
        "which holds 12 message(s) with other unique ids: the server seems to have renumbered "
        "them (after a migration?); nothing was fetched. To fetch them all again (copies of "
        "mail already stored): popctl seen forget --all with the same store option, then retr "
        "--new again\n")
    forgot = invoke("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user", "alice",
                    "seen", "forget", "--all", "--output-dir", str(out))
    assert (forgot.exit_code, forgot.stderr) == (
        0, "12 UID(s) forgotten: the next retr of new mail fetches them again\n")
    # Then everything is fetched again under its new UID (the copies the error warned of).
    run(script(new, messages, fetched=list(range(1, 13))), "retr", "--new", "--output-dir",
        str(out))
    assert len(stored_messages("output-dir", out)) == 24


def test_forget_one_uid_fetches_it_again(tmp_path: Path) -> None:
    maildir = str(tmp_path / "Maildir")
    run(script([b"u1", b"u2"], [M1, M2], fetched=[1, 2]), "retr", "--new", "--maildir", maildir)
    forgot = invoke("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user", "alice",
                    "seen", "forget", "--uid", "u2", "--maildir", maildir, "--json")
    assert (forgot.exit_code, json.loads(forgot.stdout)) == (0, [{"uid": "u2"}])
    run(script([b"u1", b"u2"], [M1, M2], fetched=[2]), "retr", "--new", "--maildir", maildir)
    assert stored_messages("maildir", Path(maildir)) == sorted([M1, M2, M2])


def _journal() -> Path:
    [path] = (Path(os.environ["XDG_STATE_HOME"]) / "popctl").glob("seen-*.log")
    return path


@pytest.mark.parametrize("kind", ["maildir", "mbox", "output-dir"])
def test_killed_between_the_store_and_the_record(tmp_path: Path, kind: str) -> None:
    """The message is in the store but its ``S`` record was never written (SIGKILL right
    after the store's commit): the next run finds it there and does not fetch it again."""
    store = tmp_path / "store"
    if kind == "output-dir":
        store.mkdir()
    big = b"Subject: big\r\n\r\n" + b"From here on\r\n" * 400
    run(script([b"u1", b"u2"], [M1, big], fetched=[1, 2]), "retr", "--new", f"--{kind}",
        str(store))
    journal = _journal()
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(line for line in lines if not line.startswith(b"S ")))
    # Message 2 is new to the state: only the output directory fetches it again (and finds
    # its own copy under its name); the others see where the killed run put it.
    again = [1, 2] if kind == "output-dir" else []
    run(script([b"u1", b"u2"], [M1, big], fetched=again), "retr", "--new", f"--{kind}",
        str(store))
    assert stored_messages(kind, store) == sorted([M1, big])


def test_a_pending_message_not_in_the_store_is_fetched_again(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", str(maildir))
    journal = _journal()
    journal.write_bytes(b"".join(line for line in journal.read_bytes().splitlines(True)
                                 if not line.startswith(b"S ")))
    for path in (maildir / "new").iterdir():
        path.unlink()  # the kill came before the store's commit
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", str(maildir))
    assert stored_messages("maildir", maildir) == [M1]


def test_a_server_without_uidl_cannot_be_used(tmp_path: Path) -> None:
    caps = b"+OK\r\nTOP\r\nUSER\r\nPIPELINING\r\n.\r\n"
    steps: list[Step] = [send(b"+OK POP3 ready\r\n"), expect(b"CAPA\r\n"), send(caps),
                         expect(LOGIN), send(b"+OK\r\n+OK\r\n" + caps + b"-ERR no UIDL\r\n"),
                         expect_eof()]
    result = run(steps, "retr", "--new", "--maildir", str(tmp_path / "Maildir"))
    assert (result.exit_code, result.stderr) == (
        5, "Error: the server does not support UIDL (unique ids), so popctl cannot tell which "
           "messages are new: --new cannot be used with this server\n")


@pytest.mark.parametrize("code", [b"IN-USE", b"LOGIN-DELAY"])
@pytest.mark.parametrize("command", [["stat"], ["retr", "--new", "--maildir", "{tmp}/M"]])
def test_a_busy_mailbox_exits_75_so_cron_retries(tmp_path: Path, code: bytes,
                                                 command: list[str]) -> None:
    steps: list[Step] = [send(b"+OK POP3 ready\r\n"), expect(b"CAPA\r\n"), send(CAPS)]
    login = LOGIN if command[0] == "retr" else b"USER alice\r\nPASS s3cret\r\nCAPA\r\n"
    steps += [expect(login), send(b"+OK\r\n-ERR [%s] try later\r\n" % code), expect_eof()]
    result = run(steps, *(arg.format(tmp=tmp_path) for arg in command))
    assert result.exit_code == 75
    assert result.stderr.startswith(f"Error: login failed: server said: [{code.decode()}] "
                                    "try later")


@pytest.mark.parametrize(("args", "message"), [
    (["--keep-days", "3", "--maildir", "M"], "--keep-days and --dry-run go with --new"),
    (["--new"], "--new needs a store to remember what it holds"),
    (["--new", "--output", "f"], "--new needs a store to remember what it holds"),
    (["--new", "3", "--maildir", "M"], "--new chooses the messages itself"),
    (["--new", "--delete", "--keep-days", "1", "--maildir", "M"], "choose --delete"),
])
def test_new_usage_errors(args: list[str], message: str) -> None:
    result = invoke("--host", "127.0.0.1", "--user", "alice", "retr", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")


def test_messages_sharing_a_uid_are_named(tmp_path: Path) -> None:
    """popa3d gives identical header fields one UID: the state cannot tell those messages
    apart, so the first is fetched and the user hears which ones were not."""
    maildir = tmp_path / "Maildir"
    result = run(script([b"u1", b"u1", b"u2"], [M1, M2, M3], fetched=[1, 3]), "retr", "--new",
                 "--maildir", str(maildir))
    assert (result.exit_code, result.stderr) == (
        0, "warning: messages 1, 2 share the UID 'u1', so only message 1 is fetched as new; "
           f"fetch the others by number\n2 new message(s) stored in {maildir}\n")
    assert stored_messages("maildir", maildir) == sorted([M1, M3])


def test_a_second_run_on_the_same_account_and_store_exits_75(tmp_path: Path) -> None:
    from popctl.seen import SeenState, store_key

    maildir = str(tmp_path / "Maildir")
    with SeenState(store_key(f"alice@127.0.0.1:{PORT}", "maildir", maildir)):
        result = run(script([b"u1"], [M1], error=True), "retr", "--new", "--maildir", maildir)
    assert result.exit_code == 75
    assert result.stderr.startswith("Error: another popctl run is using ")
    assert result.stderr.endswith(" (the same account and store); try again when it has "
                                  "finished\n")


def test_forgetting_an_unknown_uid_or_nothing(tmp_path: Path) -> None:
    maildir = str(tmp_path / "Maildir")
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", maildir)
    seen = ("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user", "alice",
            "seen")
    result = invoke(*seen, "forget", "--uid", "u1", "--uid", "u9", "--maildir", maildir)
    assert (result.exit_code, result.stderr) == (
        2, "1 UID(s) forgotten: the next retr of new mail fetches them again\n"
           "Error: UID 'u9' was not recorded for this account and store\n")
    assert invoke(*seen, "forget", "--maildir", maildir).stderr == (
        "Error: say what to forget: --uid UID (repeatable) or --all\n")
    assert invoke(*seen, "list", "--maildir", maildir, "--mbox", "x").stderr == (
        "Error: say which store: one of --maildir, --mbox, --output-dir\n")
    assert invoke(*seen, "list", "--maildir", maildir).stderr == (
        "nothing recorded for this account and store\n")


def test_a_damaged_state_is_one_clear_error(tmp_path: Path) -> None:
    maildir = str(tmp_path / "Maildir")
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", maildir)
    journal = _journal()
    journal.write_bytes(journal.read_bytes() + b"garbage\n")
    result = run(script([b"u1"], [M1], error=True), "retr", "--new", "--maildir", maildir)
    assert (result.exit_code, result.stderr) == (
        1, f"Error: {journal}: unreadable line 'garbage'; move it away\n")


def test_new_with_delete_also_deletes_what_was_stored_before(tmp_path: Path) -> None:
    maildir = str(tmp_path / "Maildir")
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", maildir)
    steps = script([b"u1", b"u2"], [M1, M2], fetched=[2])[:-2]  # up to the RETR's reply
    steps += [expect(b"DELE 2\r\n"), send(b"+OK\r\n"), expect(b"DELE 1\r\n"), send(b"+OK\r\n"),
              expect(b"QUIT\r\n"), send(b"+OK bye\r\n")]
    result = run(steps, "retr", "--new", "--delete", "--maildir", maildir, "--json")
    assert result.exit_code == 0, result.stderr
    assert [(r["uid"], r["action"], r["deleted"]) for r in json.loads(result.stdout)] == [
        ("u2", "fetched", True), ("u1", "expired", True)]
    assert stored_messages("maildir", Path(maildir)) == sorted([M1, M2])
    # Both were deleted and forgotten: the state is empty again.
    listed = invoke("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user",
                    "alice", "seen", "list", "--maildir", maildir, "--json")
    assert json.loads(listed.stdout) == []


def test_inside_the_shell_deletions_wait_for_quit(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    lines = (f"retr --new --maildir {maildir}\nretr --new --maildir {maildir} --keep-days 0\n"
             "stat --json\nquit\n")
    result = invoke("--sandbox", "shell", input=lines)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[1:] == [
        f"50 new message(s) stored in {maildir}",
        "no new messages; 50 marked deleted (committed when the shell quits)"]
    assert json.loads(result.stdout)["count"] == 0
    assert len(list((maildir / "new").iterdir())) == 50


def _state_files() -> dict[str, bytes]:
    root = Path(os.environ["XDG_STATE_HOME"])
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_dry_run_writes_no_state(tmp_path: Path) -> None:
    """--dry-run reads the journal, if there is one, and never creates, repairs or appends to
    it: before, a first dry run left an empty journal and its lock file behind."""
    maildir = str(tmp_path / "Maildir")
    dry = run(script([b"u1"], [M1]), "retr", "--new", "--maildir", maildir, "--dry-run",
              "--json")
    assert [(r["uid"], r["action"]) for r in json.loads(dry.stdout)] == [("u1", "would fetch")]
    assert _state_files() == {}
    assert not os.path.exists(maildir)
    run(script([b"u1"], [M1], fetched=[1]), "retr", "--new", "--maildir", maildir, now=T0)
    [journal] = [name for name in _state_files() if name.endswith(".log")]
    # A torn last line, as a run killed while writing leaves it: a real run cuts it off.
    path = Path(os.environ["XDG_STATE_HOME"], journal)
    path.write_bytes(path.read_bytes() + b"S 18")
    before = _state_files()
    dry = run(script([b"u1", b"u2"], [M1, M2]), "retr", "--new", "--maildir", maildir,
              "--keep-days", "0", "--dry-run", "--json", now=T0 + 1)
    assert [(r["uid"], r["action"]) for r in json.loads(dry.stdout)] == [
        ("u2", "would fetch"), ("u1", "would delete")]
    assert _state_files() == before


def test_seen_list_of_a_store_never_fetched_into_writes_no_state(tmp_path: Path) -> None:
    listed = invoke("--host", "127.0.0.1", "--port", str(PORT), "--tls", "none", "--user",
                    "alice", "seen", "list", "--maildir", str(tmp_path / "Maildir"), "--json")
    assert (listed.exit_code, listed.stdout) == (0, "[]\n")
    assert _state_files() == {}
