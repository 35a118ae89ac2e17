#!/usr/bin/env python3
"""The long kill test: SIGKILL `popctl retr --all --delete` many times, count what is lost.

Starts a private Dovecot on 127.0.0.1 (tests/support/dovecot_server.py; needs dovecot-core and
dovecot-pop3d) and runs tests/support/kill_harness.py's campaign for each store, printing the
figures that docs/RELIABILITY.md reports. The CI version is tests/integration/test_kill.py (10 kills
per store).

    python3 scripts/kill_test.py                      # 100 kills per store, seed 1
    python3 scripts/kill_test.py --runs 500 --seed 7 --kinds mbox
    python3 scripts/kill_test.py --kinds no-uidl shared-uids   # issue 11: colliding names
    python3 scripts/kill_test.py --new --messages 30 --large 1 --large-size 262144  # issue 14

``no-uidl`` and ``shared-uids`` run --output-dir against tests/support/quirky_server.py (a server
without UIDL, or one giving several messages one UID), never emptying the directory, so every
run meets the file names of all the earlier ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.dovecot_server import start_dovecot
from tests.support.kill_harness import Campaign
from tests.support.quirky_server import QuirkyServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="kills per store (default 100)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--messages", type=int, default=60, help="small messages in the box")
    parser.add_argument("--large", type=int, default=2, help="large messages in the box")
    parser.add_argument("--large-size", type=int, default=2 << 20, help="octets (2 MiB)")
    parser.add_argument("--kinds", nargs="+", default=["maildir", "output-dir", "mbox"],
                        choices=["maildir", "output-dir", "mbox", "no-uidl", "shared-uids"])
    parser.add_argument("--new", action="store_true",
                        help="kill `retr --new --keep-days 0` instead (issue 14): nothing may be "
                             "stored twice either")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="popctl-kill-", dir="/tmp") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")  # retr --new's state: not the user's
        server = start_dovecot(root / "dovecot", {"alice": "kill-test-pw"})
        totals = {"runs": 0, "kills": 0, "messages": 0, "lost": 0}
        try:
            for index, kind in enumerate(args.kinds):
                server.reset("alice")
                started = time.monotonic()
                if kind in ("no-uidl", "shared-uids"):
                    with QuirkyServer(kind) as quirky:  # type: ignore[arg-type]
                        figures = Campaign(quirky, "output-dir", root / kind,
                                           seed=args.seed + index, messages=args.messages,
                                           large=args.large, large_size=args.large_size,
                                           keep=True).run(args.runs)
                        figures.kind = f"output-dir, {kind}"
                else:
                    figures = Campaign(server, kind, root / kind, seed=args.seed + index,
                                       messages=args.messages, large=args.large,
                                       large_size=args.large_size, new=args.new
                                       ).run(args.runs)
                print(f"{figures.line()} ({time.monotonic() - started:.0f} s; an uninterrupted "
                      f"run took {figures.run_seconds:.2f} s)", flush=True)
                totals["runs"] += figures.runs
                totals["kills"] += figures.kills
                totals["messages"] += figures.delivered
                totals["lost"] += figures.lost + (figures.duplicates if args.new else 0)
        finally:
            server.stop()
    print(f"total: runs {totals['runs']}, kills {totals['kills']}, messages "
          f"{totals['messages']}, lost: {totals['lost']}")
    return 0 if totals["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
