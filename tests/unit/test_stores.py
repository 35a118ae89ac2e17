"""popctl.stores: byte-exactness, line-end conversion, mboxrd quoting, locking, failures."""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import mailbox
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from popctl.errors import ExitCode, UsageError
from popctl.stores import (
    DirectoryStore,
    FileStore,
    MaildirStore,
    MboxStore,
    MboxStreamStore,
    MessageSink,
    PipeStore,
    StdoutStore,
    StoreError,
    envelope_sender,
    uid_filename,
)

# --- helpers ---------------------------------------------------------------------------------

_TOKENS = [b"From ", b">From ", b">>From x", b"From", b"Fro", b">", b">>", b"\r", b"\n", b"",
           b"Return-Path: <a@b>", b" ", b"x"]
_line = st.one_of(st.binary(max_size=12),
                  st.lists(st.sampled_from(_TOKENS), max_size=4).map(b"".join))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """CRLF-terminated lines full of From-ish prefixes, with stray CRs and LFs."""
    lines = draw(st.lists(_line, max_size=12))
    text = b"\r\n".join(lines)
    if draw(st.booleans()):
        text += b"\r\n"
    return text


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random places, and (often) between every CR and LF."""
    cuts = set(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    if draw(st.booleans()):
        cuts.update(m.start() + 1 for m in re.finditer(rb"\r\n", data))
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed(sink: MessageSink, pieces: list[bytes]) -> str:
    for piece in pieces:
        sink.write(piece)
    return sink.commit()


def mboxrd_unquote(body: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", body)


def mboxrd_expected(message: bytes) -> bytes:
    """What an mboxrd reader should return: LF line ends, a final newline."""
    lf = message.replace(b"\r\n", b"\n")
    return lf if lf == b"" or lf.endswith(b"\n") else lf + b"\n"


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


_FIXED_DATE = "Thu Jan  1 00:00:00 1970"


# --- stdout, file, directory: byte for byte --------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_stdout_is_byte_exact(data: st.DataObject) -> None:
    bodies = data.draw(st.lists(messages(), min_size=1, max_size=3))
    stream = io.BytesIO()
    store = StdoutStore(stream)
    for n, body in enumerate(bodies, 1):
        assert feed(store.open(n, None), data.draw(split(body))) == "standard output"
    store.close()
    assert stream.getvalue() == b"".join(bodies)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_file_store_is_byte_exact(data: st.DataObject) -> None:
    body = data.draw(messages())
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp, "out.eml")
        store = FileStore(target)
        assert feed(store.open(1, "uid"), data.draw(split(body))) == str(target)
        store.close()
        assert target.read_bytes() == body
        assert listing(Path(tmp)) == ["out.eml"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_directory_store_is_byte_exact(data: st.DataObject) -> None:
    bodies = data.draw(st.lists(messages(), min_size=1, max_size=3))
    with tempfile.TemporaryDirectory() as tmp, DirectoryStore(tmp) as store:
        for n, body in enumerate(bodies, 1):
            path = feed(store.open(n, f"uid-{n}"), data.draw(split(body)))
            assert path == os.path.join(tmp, f"uid-{n}.eml")
        for n, body in enumerate(bodies, 1):
            assert Path(tmp, f"uid-{n}.eml").read_bytes() == body
        assert len(os.listdir(tmp)) == len(bodies)


def test_file_store_replaces_the_target_and_takes_one_message(tmp_path: Path) -> None:
    target = tmp_path / "out.eml"
    target.write_bytes(b"old")
    with FileStore(target) as store:
        feed(store.open(1, None), [b"new\r\n"])
        with pytest.raises(UsageError, match="a FileStore takes one message"):
            store.open(2, None)
    assert target.read_bytes() == b"new\r\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert listing(tmp_path) == ["out.eml"]


CRLF = b"\r\n"


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_directory_store_never_replaces_a_file(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path) as store:
        assert feed(store.open(1, "same"), [b"first\r\n"]) == str(tmp_path / "same.eml")
        feed(store.open(2, "same"), [b"second\r\n"])
        feed(store.open(3, None), [b"third\r\n"])
        feed(store.open(4, "same"), [b"first\r\n"])  # the same bytes again, in one run
        feed(store.open(5, "same"), [b"first\r\n"])
    assert {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)} == {
        "same.eml": b"first\r\n",
        f"same~{_h(b'second' + CRLF)}.eml": b"second\r\n",
        f"msg~{_h(b'third' + CRLF)}.eml": b"third\r\n",
        f"same~{_h(b'first' + CRLF)}.eml": b"first\r\n",
        f"same~{_h(b'first' + CRLF)}~2.eml": b"first\r\n"}


def test_directory_store_finds_what_an_earlier_run_stored(tmp_path: Path) -> None:
    runs = []
    for _ in range(2):
        with DirectoryStore(tmp_path) as store:
            runs.append([feed(store.open(n, uid), [body]) for n, (uid, body) in enumerate(
                [("u", b"one\r\n"), ("u", b"two\r\n"), (None, b"three\r\n"),
                 ("u", b"one\r\n")], 1)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 4 == len(listing(tmp_path))


def test_directory_store_compares_only_regular_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.eml")  # opening it to read would block
    (tmp_path / "link.eml").symlink_to(tmp_path / "target")
    (tmp_path / "target").write_bytes(b"m\r\n")
    with DirectoryStore(tmp_path) as store:
        fifo = feed(store.open(1, "fifo"), [b"m\r\n"])
        link = feed(store.open(2, "link"), [b"m\r\n"])
    assert fifo == str(tmp_path / f"fifo~{_h(b'm' + CRLF)}.eml")
    assert link == str(tmp_path / f"link~{_h(b'm' + CRLF)}.eml")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "a.", "a%2E", "b b", "\udcff", "\ufffd", None]),
                          st.sampled_from([b"x\r\n", b"y\r\n", b""])), max_size=8))
def test_directory_store_keeps_every_message_once_per_file(
        messages: list[tuple[str | None, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):  # a second run finds each message where the first stored it
            with DirectoryStore(tmp) as store:
                paths = [feed(store.open(n, uid), [body])
                         for n, (uid, body) in enumerate(messages, 1)]
            assert len(set(paths)) == len(paths)  # one file per message of a run
            assert [Path(p).read_bytes() for p in paths] == [body for _, body in messages]
        assert len(os.listdir(tmp)) == len(messages)


def test_directory_store_without_o_tmpfile(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system has no O_TMPFILE: named temporary files, the same names, and
    nothing left behind (nor the probe)."""
    monkeypatch.setattr("popctl.stores.base._try_unnamed", lambda *args, **kwargs: None)
    for _ in range(2):
        with DirectoryStore(tmp_path) as store:
            paths = [feed(store.open(n, uid), [body]) for n, (uid, body) in enumerate(
                [("u", b"one\r\n"), ("u", b"two\r\n"), (None, b"three\r\n")], 1)]
        assert paths == [str(tmp_path / "u.eml"), str(tmp_path / f"u~{_h(b'two' + CRLF)}.eml"),
                         str(tmp_path / f"msg~{_h(b'three' + CRLF)}.eml")]
    assert len(listing(tmp_path)) == 3  # no temporary file, no probe, nothing twice


@pytest.mark.parametrize(("uid", "name"), [
    ("../x", "%2E%2E%2Fx.eml"),
    ("a/b", "a%2Fb.eml"),
    ("a\x00b", "a%00b.eml"),
    ("..", "%2E%2E.eml"),
    (".hidden", "%2Ehidden.eml"),
    ("a..b", "a.%2Eb.eml"),
    ("end.", "end%2E.eml"),
    ("100%", "100%25.eml"),
    ("a~2", "a%7E2.eml"),
    ("é", "%C3%A9.eml"),
    ("\udcff", "%FF.eml"),  # a byte that is not UTF-8, kept by surrogateescape
    ("Abc-0_9.z", "Abc-0_9.z.eml"),
])
def test_uid_filename_is_safe(uid: str, name: str) -> None:
    assert uid_filename(uid) == name
    assert "/" not in name and ".." not in name.removesuffix(".eml")


def test_uid_filename_shortens_overlong_uids_distinctly() -> None:
    a, b = uid_filename("x" * 300), uid_filename("x" * 299 + "y")
    assert a != b and len(a) <= 255 and len(b) <= 255
    assert a == "x" * 150 + "~" + hashlib.sha256(b"x" * 300).hexdigest()[:32] + ".eml"
    # No UID escapes to a shortened name: escaping writes every "~" as %7E.
    assert uid_filename(a.removesuffix(".eml")) != a


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_uid_filename_is_injective(a: str, b: str) -> None:
    assert (uid_filename(a) == uid_filename(b)) == (a == b)


def test_directory_store_keeps_unsafe_uids_inside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with DirectoryStore(out) as store:
        for n, uid in enumerate(["../x", "a/b", "a\x00b", "/etc/passwd"], 1):
            path = feed(store.open(n, uid), [b"m\r\n"])
            assert os.path.dirname(path) == str(out)
    names = ["%2E%2E%2Fx.eml", "a%2Fb.eml", "a%00b.eml", "%2Fetc%2Fpasswd.eml"]
    assert listing(tmp_path) == sorted(f"out/{name}" for name in names)


# --- Maildir ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_maildir_converts_crlf_across_splits(data: st.DataObject) -> None:
    bodies = data.draw(st.lists(messages(), min_size=1, max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        maildir = Path(tmp, "Mail")
        with MaildirStore(maildir) as store:
            paths = [feed(store.open(n, None), data.draw(split(body)))
                     for n, body in enumerate(bodies, 1)]
        assert len(set(paths)) == len(bodies)
        for path, body in zip(paths, bodies, strict=True):
            assert os.path.dirname(path) == str(maildir / "new")
            assert Path(path).read_bytes() == body.replace(b"\r\n", b"\n")
        assert os.listdir(maildir / "tmp") == []
        assert os.listdir(maildir / "cur") == []
        assert len(mailbox.Maildir(maildir, create=False)) == len(bodies)


def test_maildir_layout_and_names(tmp_path: Path) -> None:
    maildir = tmp_path / "Mail"
    with mock.patch("popctl.stores.base._nodename", return_value="h/o:st"), \
            MaildirStore(maildir) as store:
        path = feed(store.open(1, "u"), [b"Subject: x\r\n\r\nbody\r\n"])
    for sub in ("", "tmp", "new", "cur"):
        assert (maildir / sub).stat().st_mode & 0o777 == 0o700
    name = os.path.basename(path)
    assert re.fullmatch(r"\d+\.M\d+P\d+Q\d+R[0-9a-f]+\.h\\057o\\072st", name), name
    assert ":" not in name and "/" not in name
    assert oct(Path(path).stat().st_mode & 0o777) == "0o600"


# --- mbox ------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mbox_round_trips_through_python_mailbox(data: st.DataObject) -> None:
    bodies = data.draw(st.lists(messages(), min_size=1, max_size=4))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "mbox")
        with MboxStore(path) as store:
            for n, body in enumerate(bodies, 1):
                assert feed(store.open(n, None), data.draw(split(body))) == str(path)
        assert not Path(tmp, "mbox.lock").exists()
        box = mailbox.mbox(path, create=False)
        try:
            keys = box.keys()
            assert len(keys) == len(bodies)
            for key, body in zip(keys, bodies, strict=True):
                assert mboxrd_unquote(box.get_bytes(key)) == mboxrd_expected(body)
        finally:
            box.close()
        # Every line beginning with "From " is a record's From_ line: nothing else was left.
        text = path.read_bytes()
        assert len(re.findall(rb"(?m)^From ", text)) == len(bodies)
        assert text.endswith(b"\n\n")


def test_mboxrd_quoting_split_inside_the_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    body = (b"Subject: q\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\nFrom\r\nFromage\r\n"
            b" From d\r\n>>>\r\nFrom")
    pieces = [body[i:i + 1] for i in range(len(body))]  # one byte at a time
    with mock.patch("popctl.stores.mbox.time.asctime", return_value=_FIXED_DATE), \
            MboxStore(path) as store:
        feed(store.open(1, None), pieces)
        feed(store.open(2, None), [b"Subject: r\r\n\r\n>", b">", b"Fr", b"om e\r", b"\nok"])
    assert path.read_bytes() == (
        f"From MAILER-DAEMON {_FIXED_DATE}\n".encode()
        + b"Subject: q\n\n>From a\n>>From b\n>>>From c\nFrom\nFromage\n From d\n>>>\nFrom\n\n"
        + f"From MAILER-DAEMON {_FIXED_DATE}\n".encode()
        + b"Subject: r\n\n>>>From e\nok\n\n")


@pytest.mark.parametrize(("head", "sender"), [
    (b"Return-Path: <alice@example.org>\r\nSubject: x\r\n\r\n", "alice@example.org"),
    (b"Received: by x\r\nreturn-path:\r\n <bob@example.org>\r\n\r\n", "bob@example.org"),
    (b"Return-Path: <>\r\n\r\n", "MAILER-DAEMON"),
    (b"Return-Path: <a b@c>\r\n\r\n", "MAILER-DAEMON"),
    (b"Subject: x\r\n\r\nReturn-Path: <late@example.org>\r\n", "MAILER-DAEMON"),
    (b"\r\nReturn-Path: <late@example.org>\r\n", "MAILER-DAEMON"),
    (b"", "MAILER-DAEMON"),
])
def test_envelope_sender(head: bytes, sender: str) -> None:
    assert envelope_sender(head) == sender


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mboxrd_on_a_stream_is_what_the_mbox_file_gets(data: st.DataObject) -> None:
    """``retr --mbox -`` (issue 16) writes the very records MboxStore appends to a file."""
    bodies = data.draw(st.lists(messages(), min_size=1, max_size=3))
    pieces = [data.draw(split(body)) for body in bodies]
    stream = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch("popctl.stores.mbox.time.asctime", return_value=_FIXED_DATE):
        with MboxStore(Path(tmp, "mbox")) as store:
            for n, parts in enumerate(pieces, 1):
                feed(store.open(n, None), parts)
        with MboxStreamStore(stream) as streamed:
            for n, parts in enumerate(pieces, 1):
                assert feed(streamed.open(n, None), parts) == "standard output"
        assert stream.getvalue() == Path(tmp, "mbox").read_bytes()


def test_pipe_store_hands_each_message_to_a_program(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    command = f'cat > {out}/"$POPCTL_NUMBER-$POPCTL_UID-$POPCTL_ACCOUNT-$POPCTL_SENDER"'
    with PipeStore(command, account="acct") as store:
        assert feed(store.open(1, "u1"), [b"Return-Path: <a@b.c>\r", b"\n\r\nx\ry\r\n"]) == (
            f"|{command}")
        assert feed(store.open(2, None), [b"From me\r\n"]) == f"|{command}"
    assert (out / "1-u1-acct-a@b.c").read_bytes() == b"Return-Path: <a@b.c>\n\nx\ry\n"
    assert (out / "2--acct-MAILER-DAEMON").read_bytes() == b"From me\n"  # no From_ line added


@pytest.mark.parametrize(("command", "how"), [("cat >/dev/null; exit 75", "exit status 75"),
                                              ("kill -9 $$", "killed by signal 9"),
                                              ("no-such-program-here", "exit status 127")])
def test_pipe_store_failures_name_the_message(command: str, how: str) -> None:
    with PipeStore(command) as store:
        sink = store.open(3, "u3")
        sink.write(b"m\r\n")
        with pytest.raises(StoreError) as caught:
            sink.commit()
    assert str(caught.value) == (f"delivering message 3 (uid u3): {command!r} failed ({how}); "
                                 "the message is kept on the server")
    assert caught.value.exit_code == ExitCode.FAILURE


def test_pipe_store_discard_runs_nothing(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    with PipeStore(f"touch {ran}") as store:
        sink = store.open(1, None)
        sink.write(b"partial")
        sink.discard()
    assert not ran.exists()  # half a message never reaches the program


def test_mbox_from_line_uses_return_path_split_across_pieces(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    with mock.patch("popctl.stores.mbox.time.asctime", return_value=_FIXED_DATE), \
            MboxStore(path) as store:
        feed(store.open(1, None), [b"Return-Pa", b"th: <x@y.z>\r", b"\nSubject: s\r\n\r", b"\nb"])
    assert path.read_bytes() == (
        f"From x@y.z {_FIXED_DATE}\n".encode()
        + b"Return-Path: <x@y.z>\nSubject: s\n\nb\n\n")


def test_mbox_appends_after_a_record_without_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(b"From old Thu Jan  1 00:00:00 1970\nSubject: old\n\nno final newline")
    with MboxStore(path) as store:
        feed(store.open(1, None), [b"Subject: new\r\n\r\nFrom here\r\n"])
    box = mailbox.mbox(path, create=False)
    try:
        assert [box.get_bytes(k) for k in box.iterkeys()] == [
            b"Subject: old\n\nno final newline\n", b"Subject: new\n\n>From here\n"]
    finally:
        box.close()


def test_mbox_refuses_a_file_that_is_not_an_mbox(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my notes\n")
    with pytest.raises(UsageError, match="not an mbox"):
        MboxStore(path)
    assert path.read_bytes() == b"my notes\n"
    assert not (tmp_path / "notes.txt.lock").exists()


def test_mbox_discard_truncates_back(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    with MboxStore(path) as store:
        feed(store.open(1, None), [b"Subject: kept\r\n\r\nbody\r\n"])
        before = path.read_bytes()
        sink = store.open(2, None)
        sink.write(b"Subject: torn\r\n\r\n")
        sink.write(b"x" * 200_000 + b"\r\n")  # past the buffer: staged, not in the mbox yet
        assert path.read_bytes() == before
        sink.discard()
        sink.discard()  # idempotent
        assert path.read_bytes() == before
        feed(store.open(3, None), [b"Subject: after\r\n\r\n"])
        sink = store.open(4, None)
        sink.write(b"Subject: unfinished\r\n\r\n" + b"y" * 100_000)
    # closing the store discarded the unfinished message
    box = mailbox.mbox(path, create=False)
    try:
        assert [m["subject"] for m in box] == ["kept", "after"]
    finally:
        box.close()


_HOLD_LOCK = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
"""

_TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("busy")
    else:
        print("free")
"""


def _try_lock(path: Path) -> str:
    return subprocess.run([sys.executable, "-c", _TRY_LOCK, str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_mbox_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(b"")
    with subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="another program holds a lock") as caught:
            MboxStore(path, lock_timeout=0.2)
        holder.stdin.close()
        holder.wait()
    assert caught.value.exit_code == ExitCode.FAILURE
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "mbox.lock").exists()
    with MboxStore(path, lock_timeout=0.2) as store:  # free again
        assert _try_lock(path) == "busy"
        assert (tmp_path / "mbox.lock").read_text().splitlines()[0] == str(os.getpid())
        store.close()
    assert _try_lock(path) == "free"
    assert not (tmp_path / "mbox.lock").exists()


def test_mbox_stale_dotlock_is_an_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    (tmp_path / "mbox.lock").write_text("12345\n")
    with pytest.raises(StoreError, match=r"lock file .*mbox\.lock exists.*stale"):
        MboxStore(path, lock_timeout=0.1)
    assert (tmp_path / "mbox.lock").read_text() == "12345\n"
    assert _try_lock(path) == "free"  # the fcntl lock was released


def test_mbox_second_open_in_the_same_process(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    with MboxStore(path, lock_timeout=0.1) as store:
        with pytest.raises(StoreError, match="already in use"):
            MboxStore(path, lock_timeout=0.1)
        with pytest.raises(StoreError, match="already in use"):
            MboxStore(tmp_path / "." / "mbox", lock_timeout=0.1)
        assert _try_lock(path) == "busy"  # the failed attempt did not drop our fcntl lock
        assert (tmp_path / "mbox.lock").exists()
        feed(store.open(1, None), [b"Subject: a\r\n\r\n"])
    assert not (tmp_path / "mbox.lock").exists()


# --- discard, close ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "dir", "maildir"])
def test_discard_leaves_nothing(tmp_path: Path, kind: str) -> None:
    store: FileStore | DirectoryStore | MaildirStore
    if kind == "file":
        store = FileStore(tmp_path / "out.eml")
    elif kind == "dir":
        store = DirectoryStore(tmp_path)
    else:
        store = MaildirStore(tmp_path / "Mail")
    sink = store.open(1, "u1")
    sink.write(b"partial\r\n" * 20_000)
    sink.discard()
    sink.discard()
    if kind != "file":
        unfinished = store.open(2, "u2")
        unfinished.write(b"x\r")
    store.close()  # discards the unfinished one
    store.close()
    assert listing(tmp_path) == []
    with pytest.raises(RuntimeError):
        sink.write(b"more")


def test_committed_message_is_not_discarded(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path) as store:
        sink = store.open(1, "u")
        path = feed(sink, [b"m\r\n"])
        sink.discard()
        assert sink.commit() == path
    assert Path(path).read_bytes() == b"m\r\n"


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "dir", "maildir", "mbox"])
def test_missing_parent_fails_at_construction(tmp_path: Path, kind: str) -> None:
    missing = tmp_path / "no" / "such"
    make = {"file": FileStore, "dir": DirectoryStore, "maildir": MaildirStore,
            "mbox": MboxStore}[kind]
    with pytest.raises(StoreError, match="No such file or directory") as caught:
        make(missing)
    assert str(tmp_path / "no") in str(caught.value)
    assert listing(tmp_path) == []


def test_stdout_write_failure() -> None:
    with open("/dev/full", "wb", buffering=0) as full:
        sink = StdoutStore(full).open(1, None)
        with pytest.raises(StoreError, match="cannot write to standard output: No space left"):
            sink.write(b"x")


def test_failing_sync_leaves_no_file(tmp_path: Path) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    store = DirectoryStore(tmp_path)
    sink = store.open(1, "u")
    sink.write(b"m\r\n")
    with mock.patch("popctl.stores.files.os.fsync", broken_fsync), \
            pytest.raises(StoreError, match=r"cannot sync .*u\.eml: Input/output error"):
        sink.commit()
    sink.discard()
    store.close()
    assert listing(tmp_path) == []


@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount(2); skipped where unavailable)."""
    yield from _mount("size=64k")


@pytest.fixture
def readonly_fs() -> Iterator[Path]:
    yield from _mount("size=64k,ro")


def _mount(options: str) -> Iterator[Path]:
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = Path(tempfile.mkdtemp(prefix="popctl-tmpfs-"))
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                            capture_output=True, check=False)
    if result.returncode != 0:
        point.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)
        point.rmdir()


_BIG = b"0123456789abcdef" * 4 + b"\r\n"


def _fill(sink: MessageSink) -> None:
    for _ in range(20_000):  # ~1.3 MB
        sink.write(_BIG)
    sink.commit()


@pytest.mark.parametrize("kind", ["file", "dir", "maildir"])
def test_full_disk_leaves_no_partial_file(tiny_fs: Path, kind: str) -> None:
    store: FileStore | DirectoryStore | MaildirStore
    if kind == "file":
        store = FileStore(tiny_fs / "out.eml")
    elif kind == "dir":
        store = DirectoryStore(tiny_fs)
    else:
        store = MaildirStore(tiny_fs / "Mail")
    with store:
        sink = store.open(1, "u")
        with pytest.raises(StoreError, match="No space left on device") as caught:
            _fill(sink)
        sink.discard()
    assert str(tiny_fs) in str(caught.value) and "\n" not in str(caught.value)
    assert listing(tiny_fs) == []


def test_full_disk_mbox_is_truncated_back(tiny_fs: Path) -> None:
    path = tiny_fs / "mbox"
    with MboxStore(path) as store:
        feed(store.open(1, None), [b"Subject: kept\r\n\r\nbody\r\n"])
        before = path.read_bytes()
        sink = store.open(2, None)
        with pytest.raises(StoreError, match=f"cannot write {path}: No space left on device"):
            _fill(sink)
        sink.discard()
        assert path.read_bytes() == before
    assert listing(tiny_fs) == ["mbox"]


@pytest.mark.parametrize("kind", ["file", "dir", "maildir", "mbox"])
def test_read_only_location_fails_at_construction(readonly_fs: Path, kind: str) -> None:
    target = readonly_fs if kind == "dir" else readonly_fs / "target"
    make = {"file": FileStore, "dir": DirectoryStore, "maildir": MaildirStore,
            "mbox": MboxStore}[kind]
    with pytest.raises(StoreError, match="Read-only file system"):
        make(target)


# --- the receiving path of a big message, fast against careful (issue 13) ----------------------

_WIRE_BYTES = st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"x", b"abc", b"\x00",
                                        b"\r\n.", b"\n.", b"From "]), max_size=60).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_crlf_conversion_is_replace_over_any_split(data: bytes, cuts: list[int]) -> None:
    from popctl.stores.convert import _CRLFToLF

    bounds = [0, *sorted(cuts), len(data)]
    convert = _CRLFToLF()
    out = b"".join(convert.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + convert.finish() == data.replace(b"\r\n", b"\n")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), _WIRE_BYTES), st.integers(0, 210), st.integers(0, 210))
@example(b"\n.", 1, 2).via("a dot at start after a LF before it")
@example(b".\n.", 0, 3).via("a dot at start, the LF before it at the other end")
@example(b"x.\n.", 0, 4).via("a dot not at a line start, then one that is")
def test_line_start_dot_search_is_find(data: bytes, start: int, end: int) -> None:
    from popctl.protocol import _line_start_dot

    buf = bytearray(data)
    assert _line_start_dot(buf, start, end) == buf.find(b"\n.", start, end)


@settings(max_examples=200, deadline=None)
@given(_WIRE_BYTES, st.lists(st.integers(min_value=1, max_value=9), max_size=80))
def test_maildir_gets_the_unstuffed_body_with_lf_over_any_split(body: bytes,
                                                               chunks: list[int]) -> None:
    # What the server sends (every line starting with a dot stuffed, the terminator after a
    # CRLF), cut anywhere, through the protocol into a Maildir: the body, CRLF -> LF, lone CRs
    # and LFs kept, whatever the cuts split (CRLF, a stuffed dot, the terminator).
    from popctl.protocol import NEED_DATA, Command, Data, EndOfData, POP3Protocol

    body += b"\r\n"
    protocol = POP3Protocol()
    protocol.receive_data(b"+OK ready\r\n")
    protocol.next_event()
    protocol.send(Command("USER", ("u",)))
    protocol.send(Command("PASS", ("p",)))
    protocol.receive_data(b"+OK\r\n+OK\r\n")
    protocol.next_event()
    protocol.next_event()
    protocol.send(Command("RETR", ("1",)))
    wire = b"+OK\r\n" + re.sub(rb"(^|\n)\.", rb"\1..", body) + b".\r\n"
    with tempfile.TemporaryDirectory() as tmp, MaildirStore(Path(tmp, "Mail")) as store:
        sink = store.open(1, "u")
        ends, pos = 0, 0
        for size in [*chunks, len(wire)]:
            protocol.receive_data(wire[pos:pos + size])
            pos += size
            while (event := protocol.next_event()) is not NEED_DATA:
                if isinstance(event, Data):
                    sink.write(event.data)
                ends += isinstance(event, EndOfData)
            if pos >= len(wire):
                break
        assert ends == 1
        path = sink.commit()
        assert Path(path).read_bytes() == body.replace(b"\r\n", b"\n")
