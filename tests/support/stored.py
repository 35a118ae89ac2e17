"""What a message store holds, read back independently of popctl.stores (for the reliability
tests: test_faults, test_bad_input, test_kill).

``stored_messages`` returns every message in a Maildir (new/ and cur/), an output directory
(``*.eml``) or an mbox (parsed with the standard library's ``mailbox.mbox``), as the server sent
it (CRLF line ends), and fails on anything that is not a message: a temporary file left behind,
a stray file, a torn mbox record (one not ending with the blank line that closes a record), a
dotlock left behind.
"""

from __future__ import annotations

import mailbox
from pathlib import Path


def stored_messages(kind: str, path: Path) -> list[bytes]:
    """The messages in the store ``kind`` ("maildir", "output-dir" or "mbox") at ``path``,
    sorted, with CRLF line ends. AssertionError if the store holds anything else."""
    if kind == "maildir":
        if not path.exists():
            return []
        assert sorted(p.name for p in path.iterdir()) == ["cur", "new", "tmp"], path
        leftovers = list((path / "tmp").iterdir())
        assert not leftovers, f"left in tmp/: {leftovers}"
        files = [*(path / "new").iterdir(), *(path / "cur").iterdir()]
        return sorted(p.read_bytes().replace(b"\n", b"\r\n") for p in files)
    if kind == "output-dir":
        files = list(path.iterdir())
        strays = [p.name for p in files if p.name.startswith(".") or p.suffix != ".eml"]
        assert not strays, f"not messages: {strays}"
        return sorted(p.read_bytes() for p in files)
    assert kind == "mbox", kind
    assert not Path(f"{path}.lock").exists(), "the dotlock was left behind"
    if not path.exists() or path.stat().st_size == 0:
        return []
    data = path.read_bytes()
    assert data.startswith(b"From "), data[:80]
    assert data.endswith(b"\n\n"), f"torn last record: ...{data[-80:]!r}"
    box = mailbox.mbox(path, create=False)
    try:
        messages = []
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            # mboxrd: one '>' was added to every line matching ^>*From ; take it off again.
            lines = [line[1:] if line.lstrip(b">").startswith(b"From ") and line.startswith(b">")
                     else line for line in raw.split(b"\n")]
            messages.append(b"\n".join(lines).replace(b"\n", b"\r\n"))
        return sorted(messages)
    finally:
        box.close()
