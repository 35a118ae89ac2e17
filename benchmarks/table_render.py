"""Rendering a 1,000-row listing as a table against the same listing as JSON (issue 13: a table
within 10 ms of JSON, its text unchanged), and what ``import tabulate`` costs in a fresh Python.
Prints medians; asserts nothing.

    python benchmarks/table_render.py [--reps N] [--rows N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from popctl.output import Layout, render


def listing(rows: int) -> list[dict[str, object]]:
    """Records as `list` makes them: one in five with a CJK sender, one in seven a CJK subject."""
    return [{"number": n, "size": 1000 + n * 37, "uid": f"{n:032x}",
             "from": "田中 由紀 <yuki@tokyo.example>" if n % 5 == 0
             else f"Person {n} <person{n}@example.org>",
             "subject": "会議の議事録 第3四半期" if n % 7 == 0
             else f"Subject line number {n} about things",
             "date": "2026-10-05T21:43:45-07:00"} for n in range(1, rows + 1)]


def median_ms(records: list[dict[str, object]], fmt: str, reps: int,
              layout: Layout | None = None) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        render(records, fmt, io.StringIO(), layout=layout)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def import_ms(module: str, reps: int) -> float:
    code = f"import time; s = time.perf_counter(); import {module}; " \
           "print(time.perf_counter() - s)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], check=True,
                                                  capture_output=True, text=True).stdout)
                             for _ in range(reps)) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    records = listing(args.rows)
    table, json = median_ms(records, "table", args.reps), median_ms(records, "json", args.reps)
    fitted = median_ms(records, "table", args.reps, Layout(width=80, human=True))
    print(f"{table:9.1f} ms  table, {args.rows} rows (piped: full width)")
    print(f"{fitted:9.1f} ms  table, {args.rows} rows, fitted to 80 columns, human sizes/dates")
    print(f"{json:9.1f} ms  json, {args.rows} rows")
    print(f"{table - json:9.1f} ms  table minus json (target: at most 10)")
    print(f"{import_ms('tabulate', min(args.reps, 5)):9.1f} ms  import tabulate (fresh Python; "
          "only a single-record table needs it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
