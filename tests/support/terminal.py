"""Helpers for tests that run popctl on a pseudo-terminal."""

from __future__ import annotations

import os
import select
import subprocess


def drain(master: int) -> bytes:
    """What the terminal still has to show once the program ended (until it falls silent)."""
    shown = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    return shown


def close_terminal(process: subprocess.Popen[bytes], master: int) -> None:
    """The end of a run on a pseudo-terminal, however the test went: the terminal closed, the
    program killed if it still runs, and reaped."""
    os.close(master)
    if process.poll() is None:
        process.kill()
    process.wait()
