"""SIGKILL at random moments during `popctl retr --all --delete` into a store: nothing is lost.

Used by tests/integration/test_kill.py (a modest count, in CI) and scripts/kill_test.py (a longer
run that prints figures). Each campaign, for one store kind against a real Dovecot:

1. delivers a mailbox (``messages`` small ones plus ``large`` big ones, one with ``From ``
   lines for mboxrd quoting), and times one uninterrupted run to know how long a run lasts;
2. ``runs`` times: tops the mailbox up, starts ``python -m popctl retr --all --<kind> DIR
   --delete``, sends SIGKILL after a random delay (seeded) within that duration (a run that
   ends before its kill came is timed again: the first timing may have been taken while the
   machine was busier, and delays beyond a run's length would kill nothing), waits for
   Dovecot to finish the session, then checks that every message delivered so far is still on
   the server or stored complete (byte for byte) locally, and that the store holds nothing but
   complete copies of delivered messages (duplicates allowed);
3. every ``epoch`` runs, and at the end, lets a run finish: the server is then empty and every
   message delivered is stored. Then the store is emptied and a new epoch begins (so that the
   copies killed runs leave behind do not pile up without end), unless ``keep`` is given: then
   every later run meets the file names of all the earlier ones.

For an mbox, a kill during the append of a record (the only moment the mbox is written) can
leave a torn last record and popctl's dotlock; the next popctl run cuts it off and takes the
lock over. The campaign checks the store as that next run will find it (opening and closing a
MboxStore, which does exactly that) and counts the repairs.

The server is a private Dovecot, or tests/support/quirky_server.py (issue 11: a server without UIDL,
or one that gives several messages one UID), where an output directory's file names collide
within a run and across the killed runs.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from popctl.stores import MboxStore
from tests.support.dovecot_server import DovecotServer
from tests.support.quirky_server import QuirkyServer
from tests.support.stored import stored_messages

USER = "alice"


@dataclass
class Figures:
    kind: str
    runs: int = 0
    kills: int = 0  # runs killed before they finished
    finished: int = 0  # runs that ended before their kill came
    delivered: int = 0  # distinct messages put on the server
    stored: int = 0  # distinct messages stored (summed over epochs)
    duplicates: int = 0  # extra copies stored (allowed; summed over epochs)
    lost: int = 0  # delivered, but neither on the server nor stored: must stay 0
    torn_repaired: int = 0  # mbox: torn last records the next run cut off
    run_seconds: float = 0.0  # an uninterrupted run of a full mailbox (the latest timing)
    delays: list[float] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.kind}: runs {self.runs}, kills {self.kills}, finished before the kill "
                f"{self.finished}, messages {self.delivered}, stored {self.stored}, "
                f"duplicates {self.duplicates}, torn records repaired {self.torn_repaired}, "
                f"lost: {self.lost}")


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def digest(data: bytes) -> str:
    return hashlib.sha256(crlf(data)).hexdigest()


class Campaign:
    def __init__(self, server: DovecotServer | QuirkyServer, kind: str, workdir: Path, *,
                 seed: int,
                 messages: int = 60, large: int = 2, large_size: int = 2 << 20,
                 keep: bool = False, new: bool = False) -> None:
        self.server = server
        self.keep = keep  # never empty the store: every epoch adds to what is there
        # `retr --new --keep-days 0` instead of `retr --all --delete` (issue 14): each run
        # fetches what is new and deletes what earlier runs stored; every message must then
        # be stored exactly once, killed or not.
        self.new = new
        self.kind = kind
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.messages = messages
        self.large = large
        self.large_size = large_size
        self.serial = 0
        self.delivered: dict[str, bytes] = {}
        self.figures = Figures(kind)
        self._local: list[str] = []
        self.store = workdir / {"maildir": "Maildir", "output-dir": "out", "mbox": "mbox"}[kind]
        workdir.mkdir(parents=True, exist_ok=True)
        if kind == "output-dir":
            self.store.mkdir()

    # --- the mailbox ----------------------------------------------------------------------

    def _message(self, big: bool) -> bytes:
        self.serial += 1
        n = self.serial
        head = (f"Return-Path: <sender{n}@example.org>\nFrom: Sender {n} <sender{n}@example.org>\n"
                f"To: alice@example.org\nSubject: kill test {n}\nMessage-ID: <kill-{n}@test>\n\n")
        body = "".join(f"line {i} of message {n}: {'x' * self.rng.randrange(0, 70)}\n"
                       for i in range(self.rng.randrange(1, 40)))
        if n % 7 == 0:
            body += "From the start of a line: mboxrd quotes this\n>From and this\n"
        data = (head + body).encode()
        if big:
            line = f"{n} " + "y" * 74 + "\n"
            data += line.encode() * (self.large_size // len(line))
        return data

    def top_up(self) -> None:
        """Deliver new messages until the server holds ``messages + large`` of them."""
        on_server = len(self.server_digests())
        wanted = self.messages + self.large
        bigs = max(0, self.large - (on_server * self.large) // max(wanted, 1))
        for i in range(max(0, wanted - on_server)):
            data = self._message(big=i < bigs)
            self.delivered[digest(data)] = data
            self.server.deliver(USER, data)

    def server_digests(self) -> list[str]:
        if isinstance(self.server, QuirkyServer):
            return [digest(m) for m in self.server.messages()]  # once the session ended
        self.server._wait_for_mail_processes(10.0)  # a session may still be ending
        maildir = self.server.maildir(USER)
        files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
        found = []
        for path in files:
            try:
                found.append(digest(path.read_bytes()))
            except FileNotFoundError:
                continue  # expunged while we looked: it was DELEd, so it is stored
        return found

    # --- running popctl -------------------------------------------------------------------

    def _command(self) -> list[str]:
        connect = (self.server.options() if isinstance(self.server, QuirkyServer) else
                   ["--host", "localhost", "--port", str(self.server.port), "--tls",
                    "starttls", "--ca-file", self.server.ca_file])
        how = ["--new", "--keep-days", "0"] if self.new else ["--all", "--delete"]
        return [sys.executable, "-m", "popctl", *connect, "--user", USER, "--timeout", "30",
                "-q", "retr", *how, f"--{self.kind}", str(self.store)]

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "POPCTL_PASSWORD": self.server.users[USER]}
        return subprocess.Popen(self._command(), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def run_to_end(self) -> float:
        started = time.monotonic()
        process = self._start()
        _, err = process.communicate(timeout=300)
        if process.returncode != 0:
            raise AssertionError(f"popctl failed ({process.returncode}): {err.decode()}")
        return time.monotonic() - started

    def run_and_kill(self, delay: float) -> float | None:
        """Start popctl, SIGKILL it after ``delay`` s; None if it was still running, else the
        seconds it took to finish (successfully)."""
        started = time.monotonic()
        process = self._start()
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return None
        finally:
            assert process.stderr is not None
            err = process.stderr.read()
            process.stderr.close()
        if process.returncode != 0:
            raise AssertionError(f"popctl failed ({process.returncode}): {err.decode()}")
        return time.monotonic() - started

    # --- the checks -----------------------------------------------------------------------

    def repair_as_next_run_would(self) -> None:
        """An mbox as the next popctl finds it: a torn record left by the kill cut off."""
        if self.kind != "mbox" or not self.store.exists():
            return
        before = self.store.stat().st_size
        MboxStore(self.store, lock_timeout=1.0).close()
        if self.store.stat().st_size != before:
            self.figures.torn_repaired += 1

    def check(self) -> None:
        self.repair_as_next_run_would()
        local = [digest(m) for m in stored_messages(self.kind, self.store)]
        unknown = [d for d in local if d not in self.delivered]
        assert not unknown, f"{len(unknown)} stored message(s) are not complete copies"
        if self.new:
            doubled = len(local) - len(set(local))
            assert not doubled, f"{doubled} message(s) stored twice"
        present = set(local) | set(self.server_digests())
        lost = [d for d in self.delivered if d not in present]
        self.figures.lost = len(lost)
        assert not lost, f"{len(lost)} message(s) lost"
        self._local = local

    def finish_epoch(self) -> None:
        """A run to the end: the server is empty, everything is stored; then start afresh
        (with ``keep``, on top of what is stored: the next messages are numbered from 1 again
        and meet the earlier ones' file names)."""
        self.run_to_end()
        if self.new:  # --keep-days 0: what that run fetched goes at the next one
            self.run_to_end()
        self.check()
        assert self.server_digests() == [], "a finished run left messages on the server"
        assert set(self._local) == set(self.delivered)
        if self.keep:
            self.figures.delivered = len(self.delivered)
            self.figures.stored = len(set(self._local))
            self.figures.duplicates = len(self._local) - len(set(self._local))
            return
        self.figures.delivered += len(self.delivered)
        self.figures.stored += len(set(self._local))
        self.figures.duplicates += len(self._local) - len(set(self._local))
        self.delivered.clear()
        for path in ([self.store] if self.kind == "mbox" else
                     [*self.store.rglob("*.eml"), *self.store.glob("*/*")]):
            if path.is_file():
                path.unlink()

    def run(self, runs: int, epoch: int = 10, kills: int = 0) -> Figures:
        """``runs`` runs, or more until ``kills`` of them were killed (at most twice as many)."""
        self.top_up()
        self.figures.run_seconds = self.run_to_end()
        self.finish_epoch()
        index = -1
        while index + 1 < runs or (self.figures.kills < kills and index + 1 < 2 * runs):
            index += 1
            self.top_up()
            # With --new, a run spends most of its time starting Python: kills are drawn from
            # the later part of a run, where the mail is fetched, recorded and deleted.
            earliest = 0.5 if self.new else 0.0
            delay = self.rng.uniform(earliest * self.figures.run_seconds,
                                     self.figures.run_seconds)
            self.figures.delays.append(delay)
            self.figures.runs += 1
            took = self.run_and_kill(delay)
            if took is None:
                self.figures.kills += 1
            else:
                self.figures.finished += 1
                # A whole run of a full mailbox, shorter than the delay: runs are faster now
                # than when they were timed (a calibration run slowed down by other work on the
                # machine made half the kills come too late). Draw the next delays within it.
                self.figures.run_seconds = took
            self.check()
            if (index + 1) % epoch == 0:
                self.finish_epoch()
        if (index + 1) % epoch:
            self.finish_epoch()
        return self.figures
