#!/usr/bin/env python3
"""Issue 11's hostile servers against `python -m popctl`: wall time, peak RSS, exit status, message.

A small threaded POP3 server on 127.0.0.1 (a child process of its own, so that its payloads do not
count in popctl's memory) plays one attack per connection; each popctl runs in a child process
whose peak RSS comes from wait4(). The figures are those of docs/RELIABILITY.md
("Hangs and unbounded resources"). To measure another popctl (an older one, say), put it first
on PYTHONPATH with --popctl DIR.

    python3 scripts/hang_attacks.py                       # every attack
    python3 scripts/hang_attacks.py drip-greeting huge-listing
    python3 scripts/hang_attacks.py --popctl /tmp/old --kill-after 40 --memory-limit 4096
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPA = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n"
HUGE = 64 * 1024 * 1024 - 100  # just under MAX_LISTING_BYTES


def _rising(template: bytes, limit: int) -> bytes:
    """A listing of lines ``template % n`` for n = 1, 2, ... up to ``limit`` octets."""
    out, size, n = [], 0, 1
    while size < limit:
        line = template.replace(b"N", b"%d" % n).replace(b"X", b"%x" % n)
        out.append(line)
        size += len(line)
        n += 1
    return b"+OK\r\n" + b"".join(out) + b".\r\n"


Reply = bytes | Callable[[socket.socket], None]


class Attack:
    """What the server does on each command (a callable may write slowly), and what to run.
    ``replies`` is a function, so that only the server process builds the payloads."""

    def __init__(self, name: str, args: list[str],
                 replies: Callable[[], dict[bytes, Reply]] = dict,
                 greeting: Callable[[socket.socket], None] | None = None, note: str = "") -> None:
        self.name, self.args, self.replies, self.greeting = name, args, replies, greeting
        self.note = note


def drip(data: bytes, interval: float, piece: int = 1, repeat: bool = False
         ) -> Callable[[socket.socket], None]:
    def play(conn: socket.socket) -> None:
        while True:
            for at in range(0, len(data), piece):
                conn.sendall(data[at:at + piece])
                time.sleep(interval)
            if not repeat:
                return
    return play


def paced(data: bytes, rate: float, piece: int = 8192) -> Callable[[socket.socket], None]:
    """``data`` at ``rate`` octets/s."""
    def play(conn: socket.socket) -> None:
        started = time.monotonic()
        for at in range(0, len(data), piece):
            conn.sendall(data[at:at + piece])
            pause = started + (at + piece) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    return play


def attacks() -> list[Attack]:
    lines_every_half_second = b"".join(b"%d 1000\r\n" % n for n in range(1, 10**5))
    absurd = b"+OK\r\n1 10\r\n9223372036854775807 10\r\n.\r\n"
    uidl_ok = b"+OK\r\n1 a\r\n2 b\r\n.\r\n"
    message = b"Subject: x\r\n\r\nbody\r\n"

    def big(octets: int) -> bytes:
        return b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (octets // 1000)

    return [
        Attack("drip-greeting", ["--timeout", "3", "stat"],
               greeting=drip(b"+OK POP3 ready, slowly\r\n" * 10, 1.0),
               note="greeting at 1 octet/s"),
        Attack("slow-list", ["--timeout", "3", "list", "--sizes-only"],
               lambda: {b"LIST": lambda c: (c.sendall(b"+OK\r\n"),
                                            drip(lines_every_half_second, 0.5, 9)(c))},
               note="LIST, one line every 0.5 s"),
        Attack("absurd-uidl", ["--timeout", "3", "uidl", "1-"],
               lambda: {b"UIDL": uidl_ok, b"LIST": absurd},
               note="LIST with message 9223372036854775807"),
        Attack("absurd-retr", ["--timeout", "3", "retr", "2-"],
               lambda: {b"UIDL": uidl_ok, b"LIST": absurd}, note="the same, retr 2-"),
        Attack("duplicate-flood", ["--timeout", "10", "retr", "1"],
               lambda: {b"UIDL": b"+OK\r\n" + b"1 a\n" * (HUGE // 4) + b".\r\n",
                        b"LIST": b"+OK\r\n" + b"1 1\n" * (HUGE // 4) + b".\r\n",
                        b"RETR 1": b"+OK\r\n" + message + b".\r\n"},
               note="64 MiB of '1 1' lines in LIST and UIDL"),
        Attack("huge-listing", ["--timeout", "10", "retr", "1"],
               lambda: {b"UIDL": _rising(b"N X\r\n", HUGE),
                        b"LIST": _rising(b"N 1\r\n", HUGE),
                        b"RETR 1": b"+OK\r\n" + message + b".\r\n"},
               note="64 MiB LIST + 64 MiB UIDL, numbers rising"),
        Attack("just-fast-enough", ["--timeout", "3", "--session-timeout", "20", "retr", "1"],
               lambda: {b"UIDL": uidl_ok, b"LIST": b"+OK\r\n1 10\r\n2 10\r\n.\r\n",
                        b"RETR 1": lambda c: (c.sendall(b"+OK\r\n"), drip(
                            b"w" * 1022 + b"\r\n", 0.5, 1024, repeat=True)(c))},
               note="RETR at 2 KiB/s, never ending"),
        Attack("legit-200MB", ["--timeout", "3", "retr", "1"],
               lambda: {b"UIDL": uidl_ok,
                        b"LIST": b"+OK\r\n1 200000000\r\n2 10\r\n.\r\n",
                        b"RETR 1": b"+OK\r\n" + big(200_000_000) + b".\r\n"},
               note="a 200 MB message over loopback"),
        Attack("legit-2Mbit", ["--timeout", "3", "retr", "1"],
               lambda: {b"UIDL": uidl_ok, b"LIST": b"+OK\r\n1 3000000\r\n2 10\r\n.\r\n",
                        b"RETR 1": lambda c: (c.sendall(b"+OK\r\n"),
                                              paced(big(3_000_000) + b".\r\n", 250_000)(c))},
               note="a 3 MB message at 2 Mbit/s"),
    ]


def serve(conn: socket.socket, attack: Attack, replies: dict[bytes, Reply]) -> None:
    with conn:
        reader = conn.makefile("rb")
        try:
            if attack.greeting is not None:
                attack.greeting(conn)
                return
            conn.sendall(b"+OK ready\r\n")
            for raw in reader:
                command = raw.strip()
                verb = command.split(b" ")[0].upper()
                reply = replies.get(command, replies.get(verb))
                if reply is None:
                    reply = {b"CAPA": CAPA, b"QUIT": b"+OK bye\r\n"}.get(verb, b"+OK\r\n")
                if callable(reply):
                    reply(conn)
                else:
                    conn.sendall(reply)
                if verb == b"QUIT":
                    return
        except OSError:
            return


def listen(attack: Attack) -> socket.socket:
    replies = attack.replies()
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn, attack, replies), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def run(attack: Attack, popctl: Path, kill_after: float, memory_mb: int) -> str:
    server = subprocess.Popen([sys.executable, __file__, "--serve", attack.name],
                              stdout=subprocess.PIPE)
    assert server.stdout is not None
    port = int(server.stdout.readline())

    def limit() -> None:
        if memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    env = {**os.environ, "PYTHONPATH": str(popctl), "POPCTL_PASSWORD": "x",
           "POPCTL_CONFIG": os.devnull}
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "popctl", "--host", "127.0.0.1", "--port", str(port), "--tls",
         "none", "--allow-plaintext", "--user", "u", "--no-cache", *attack.args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, cwd=popctl, preexec_fn=limit)  # cwd: -m puts it first on sys.path
    timer = threading.Timer(kill_after, lambda: child.send_signal(signal.SIGKILL))
    timer.start()
    assert child.stderr is not None
    stderr = child.stderr.read().decode(errors="replace").strip().splitlines()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    elapsed = time.monotonic() - started
    server.kill()
    server.wait()
    if child.returncode == -signal.SIGKILL:
        outcome = f"killed after {kill_after:g} s"
    else:
        outcome = f"exit {child.returncode}"
    line = stderr[-1] if stderr else ""
    return (f"| {attack.name} | {attack.note} | `{' '.join(attack.args)}` | {elapsed:.1f} s | "
            f"{usage.ru_maxrss / 1024:.0f} MB | {outcome} | {line} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="attacks to run (default: all)")
    parser.add_argument("--popctl", type=Path, default=ROOT, help="directory holding popctl/")
    parser.add_argument("--kill-after", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--memory-limit", type=int, default=0,
                        help="address-space limit of popctl in MiB (default: none)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # the server process: print the port, serve until killed
        attack = next(a for a in attacks() if a.name == args.serve)
        listener = listen(attack)
        print(listener.getsockname()[1], flush=True)
        threading.Event().wait()
    chosen = [a for a in attacks() if not args.names or a.name in args.names]
    print("| attack | server | command | time | peak RSS | outcome | last stderr line |")
    print("|---|---|---|---|---|---|---|")
    for attack in chosen:
        print(run(attack, args.popctl, args.kill_after, args.memory_limit), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
