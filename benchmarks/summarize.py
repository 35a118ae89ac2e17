"""CPU cost of ``headers.summarize`` per realistic header block (issue 13).

    python benchmarks/summarize.py                  # this checkout's popctl
    python benchmarks/summarize.py --code DIR       # another copy of popctl (DIR/popctl)
    python benchmarks/summarize.py --runs 9 --count 2000

The header blocks are those of ``benchmarks/mailboxes.py``'s realistic mailbox (Received chains,
DKIM signatures, encoded From names and Subjects), each cut at its blank line as ``TOP n 0``
returns it. Prints the median over ``--runs`` of the mean µs per block, the fastest run, and the
median of the process's CPU time per block.
No timing is asserted anywhere: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def header_blocks(count: int) -> list[bytes]:
    from benchmarks.mailboxes import realistic

    return [message[:message.index(b"\r\n\r\n") + 4]
            for message in realistic(count, big=())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="directory holding popctl/")
    parser.add_argument("--count", type=int, default=1000, help="header blocks per run")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    blocks = header_blocks(args.count)
    sys.path.insert(0, str(args.code.resolve()))
    for name in [m for m in sys.modules if m == "popctl" or m.startswith("popctl.")]:
        del sys.modules[name]
    from popctl import headers

    for block in blocks[:50]:  # warm the caches (charsets, regexes, lazy imports)
        headers.summarize(block)
    per_block, cpu_per_block = [], []
    for _ in range(args.runs):
        start, cpu = time.perf_counter(), time.process_time()
        for block in blocks:
            headers.summarize(block)
        per_block.append((time.perf_counter() - start) / len(blocks) * 1e6)
        cpu_per_block.append((time.process_time() - cpu) / len(blocks) * 1e6)
    size = statistics.mean(len(b) for b in blocks)
    print(f"popctl from {Path(headers.__file__).parent}")
    print(f"{len(blocks)} realistic header blocks (mean {size:.0f} octets), {args.runs} runs")
    print(f"summarize: median {statistics.median(per_block):.2f} µs per block, "
          f"fastest run {min(per_block):.2f} µs; CPU time: median "
          f"{statistics.median(cpu_per_block):.2f} µs (on shared cores, the steadier figure)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
