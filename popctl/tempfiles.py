"""A new private file beside the one it will replace, for writes made atomic by os.replace.

``tempfile.mkstemp`` does the same, but importing ``tempfile`` (and ``random`` and ``hashlib``
with it) costs ~2.5 ms, which every listing that saves its header cache would pay.
"""

from __future__ import annotations

import os

_ATTEMPTS = 100  # names are 48 random bits: a clash is a stale file, not bad luck


def create_private(directory: str, prefix: str, suffix: str = "") -> tuple[int, str]:
    """Open a new file in ``directory``, readable and writable by its owner only (0600), never
    an existing one or a symbolic link (O_EXCL); return its descriptor and path."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(_ATTEMPTS):
        path = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name in {directory}")
