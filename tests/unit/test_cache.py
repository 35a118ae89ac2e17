"""The header cache (popctl/cache.py): keyed by UIDL and size, per account, pruned, safe under
concurrent runs, never fatal; and end to end against Dovecot, counting TOP in ``--trace``."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from popctl import query as query_module
from popctl.cache import CACHE_FORMAT, HeaderCache, account_key, cache_dir, cache_path
from popctl.cli import cli
from popctl.models import MessageHeaders, MessageSize, MessageUid
from tests.support.dovecot_server import DovecotServer

ACCOUNT = "me@pop.example.org:995"


def _cache(tmp_path: Path, account: str = ACCOUNT) -> HeaderCache:
    return HeaderCache(account, tmp_path / "c" / "headers.json")


# --- the file ----------------------------------------------------------------------------------


def test_round_trip_by_uid_and_size(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert len(cache) == 0 and cache.get("u1", 10) is None
    cache.put("u1", 10, '"Ann, Dr" <a@example.org>', "Grüße", "2020-03-02T09:15:00+01:00",
              "Ann, Dr", "a@example.org")
    cache.put("u2", 20, "", "", None, "", None)
    assert cache.save()
    again = _cache(tmp_path)
    assert again.get("u1", 10) == (10, '"Ann, Dr" <a@example.org>', "Grüße",
                                   "2020-03-02T09:15:00+01:00", "Ann, Dr", "a@example.org")
    assert again.get("u2", 20) == (20, "", "", None, "", None)
    # the same UID with another size is not trusted (a server reusing UIDs, a rewritten message)
    assert again.get("u1", 11) is None
    assert (again.hits, again.misses) == (2, 1)


def test_file_is_private_and_compact(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    for n in range(100):
        cache.put(f"{n:016x}", 5000 + n, f"Sender {n} <s{n}@example.org>", f"Subject {n}",
                  "2026-11-26T10:00:00+00:00")
    assert cache.save()
    assert stat.S_IMODE(Path(cache.path).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(cache.path).parent.stat().st_mode) == 0o700
    assert Path(cache.path).stat().st_size < 100 * 120  # about 100 octets an entry
    document = json.loads(Path(cache.path).read_bytes())
    assert document["popctl-header-cache"] == CACHE_FORMAT and document["account"] == ACCOUNT
    written = Path(cache.path)
    assert not [p for p in written.parent.iterdir() if p != written]  # no temp file left


def test_unchanged_cache_is_not_rewritten(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.put("u1", 1, "a", "b", None)
    assert cache.save()
    before = Path(cache.path).stat()
    again = _cache(tmp_path)
    again.prune(["u1"])
    again.put("u1", 1, "a", "b", None)
    assert again.save()
    after = Path(cache.path).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_prune_forgets_messages_gone_from_the_server(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    for uid in ("a", "b", "c"):
        cache.put(uid, 1, uid, uid, None)
    cache.save()
    again = _cache(tmp_path)
    again.prune(["b", "new"])
    assert again.save()
    assert set(json.loads(Path(cache.path).read_bytes())["entries"]) == {"b"}


_HEAD = b'{"popctl-header-cache":2,"account":"me@pop.example.org:995",'


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe garbage", b"[]", b"null", b'{"popctl-header-cache":2}',
    b'{"popctl-header-cache":99,"account":"me@pop.example.org:995","entries":{}}',
    # what 0.1.0 wrote: format 1, entries without the From name and address
    b'{"popctl-header-cache":1,"account":"me@pop.example.org:995",'
    b'"entries":{"u":[1,"a","b",null]}}',
    b'{"popctl-header-cache":2,"account":"other@x:1","entries":{"u":[1,"a","b",null,"",null]}}',
    _HEAD + b'"entries":[]}',
    _HEAD + b'"entries":{"u":[1,"a","b",null,"",null],"v":["1","a","b",null,"",null]}}',
    _HEAD + b'"entries":{"u":[1,2]}}',
    _HEAD + b'"entries":{"u":[1,"a","b",null]}}',
    # what no popctl writes: a lone surrogate (which could not be written back), an over-long text
    _HEAD + b'"entries":{"u":[1,"\\ud800","b",null,"",null]}}',
    _HEAD + b'"entries":{"u":[1,"a","' + b"x" * 1001 + b'",null,"",null]}}',
], ids=["empty", "truncated", "not-utf8", "list", "null", "no-entries", "other-version",
        "version-1", "other-account", "entries-not-a-map", "bad-size", "short-entry",
        "four-fields", "surrogate", "too-long"])
def test_corrupt_file_is_discarded_and_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c" / "headers.json"
    path.parent.mkdir()
    path.write_bytes(content)
    cache = _cache(tmp_path)
    assert len(cache) == 0 and cache.get("u", 1) is None
    cache.put("u", 1, "a", "b", None, "", None)
    assert cache.save()
    assert _cache(tmp_path).get("u", 1) == (1, "a", "b", None, "", None)


def test_directory_is_a_file_or_unwritable_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("a file where the directory should be")
    cache = _cache(tmp_path)
    cache.put("u", 1, "a", "b", None)
    assert cache.save() is False  # reported, not raised
    assert cache.get("u", 1) is not None  # still usable for this run


def test_concurrent_writers_merge_and_readers_never_see_half_a_file(tmp_path: Path) -> None:
    first, second = _cache(tmp_path), _cache(tmp_path)
    live = ["a", "b", "gone"]
    first.prune(live)
    second.prune(["a", "b"])
    first.put("a", 1, "A", "a", None)
    first.put("gone", 1, "G", "g", None)
    second.put("b", 2, "B", "b", None)
    assert first.save() and second.save()
    # the second run kept what the first added for messages still there, not the pruned one
    assert set(json.loads(Path(first.path).read_bytes())["entries"]) == {"a", "b"}

    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(30):
                cache = _cache(tmp_path)
                cache.put(f"w{k}-{i}", i, "x" * 200, "y" * 200, None)
                cache.save()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            data = Path(first.path).read_bytes()  # the path always exists once written
            json.loads(data)  # a half-written file would not parse

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    watcher.join(30)
    assert not errors
    assert not [p for p in Path(first.path).parent.iterdir() if p.name.startswith(".tmp-")]


def test_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Path(cache_dir()) == tmp_path / "xdg" / "popctl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Path(cache_dir()) == tmp_path / "home" / ".cache" / "popctl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert Path(cache_dir()) == tmp_path / "home" / ".cache" / "popctl"


def test_one_file_per_account(tmp_path: Path) -> None:
    key = account_key("Me@Example.org", "POP.Example.org.", 995)
    assert key == "Me@Example.org@pop.example.org:995"
    paths = {Path(cache_path(k, tmp_path)) for k in (key, account_key("me@example.org", "pop", 995),
                                                account_key("me", "pop", 110),
                                                account_key("me/../x", "pop", 110))}
    assert len(paths) == 4
    for path in paths:
        assert path.parent == tmp_path
        assert re.fullmatch(r"headers-[A-Za-z0-9@._-]+-[0-9a-f]{8}\.json", path.name)


# --- query.run with a cache, against a stand-in session -----------------------------------------


class FakeSession:
    """LIST/UIDL from a dict; headers() records what TOPs would be sent."""

    def __init__(self, messages: dict[int, tuple[str, int, bytes]], uidl: bool = True) -> None:
        self.messages = messages
        self.uidl = uidl
        self.tops: list[int] = []
        self.deleted: list[int] = []

    def scan(self) -> tuple[list[MessageSize], list[MessageUid] | None]:
        sizes = [MessageSize(n, m[1]) for n, m in sorted(self.messages.items())]
        uids = [MessageUid(n, m[0]) for n, m in sorted(self.messages.items())]
        return sizes, uids if self.uidl else None

    def headers(self, numbers: Iterable[int],
                delete: Iterable[int] = ()) -> Iterator[MessageHeaders]:
        numbers = list(numbers)
        self.deleted += [n for n in delete if n not in numbers]
        for n in numbers:
            self.tops.append(n)
            yield MessageHeaders(n, self.messages[n][2])
            if n in delete:
                self.deleted.append(n)


def _message(n: int) -> tuple[str, int, bytes]:
    return (f"uid{n}", 100 + n,
            b"From: Sender %d <s%d@example.org>\r\nSubject: message %d\r\n"
            b"X-Tag: t%d\r\n\r\n" % (n, n, n, n % 2))


def _run(session: FakeSession, cache: HeaderCache | None,
         query: query_module.Query | None = None) -> list[tuple[int, str | None, str | None]]:
    plan = query_module.Plan(query or query_module.Query(), headers=True)
    rows = query_module.run(session, plan, cache=cache)  # type: ignore[arg-type]
    return [(r.number, r.sender, r.subject) for r in rows]


def test_second_run_sends_no_top_and_new_messages_only(tmp_path: Path) -> None:
    session = FakeSession({n: _message(n) for n in range(1, 6)})
    first = _run(session, cache := _cache(tmp_path))
    cache.save()
    assert session.tops == [1, 2, 3, 4, 5]
    session.tops.clear()
    assert _run(session, _cache(tmp_path)) == first
    assert session.tops == []
    # message 2 deleted, 6 and 7 arrive (numbers shift): only their headers are fetched
    del session.messages[2]
    session.messages = {i + 1: m for i, m in enumerate(
        [session.messages[n] for n in sorted(session.messages)] + [_message(6), _message(7)])}
    rows = _run(session, cache := _cache(tmp_path))
    cache.save()
    assert session.tops == [5, 6]
    assert [subject for _n, _s, subject in rows] == [
        "message 1", "message 3", "message 4", "message 5", "message 6", "message 7"]
    assert set(json.loads(Path(cache.path).read_bytes())["entries"]) == {
        "uid1", "uid3", "uid4", "uid5", "uid6", "uid7"}


def test_delete_covers_cached_and_fetched_messages(tmp_path: Path) -> None:
    session = FakeSession({n: _message(n) for n in range(1, 4)})
    _run(session, cache := _cache(tmp_path), query_module.Query(ranges=("1-2",)))
    cache.save()
    session.tops.clear()
    plan = query_module.Plan(query_module.Query(larger_than=101), headers=True, delete=True)
    rows = list(query_module.run(session, plan, cache=_cache(tmp_path)))  # type: ignore[arg-type]
    assert [r.number for r in rows] == [2, 3]
    assert [r.subject for r in rows] == ["message 2", "message 3"]
    assert session.tops == [3]  # 2's headers came from the cache
    assert sorted(session.deleted) == [2, 3]
    with pytest.raises(ValueError, match="does not depend on headers"):
        query_module.Plan(query_module.Query(subject=re.compile("x")), headers=True, delete=True)


def test_filters_use_the_cache_but_header_filters_fetch(tmp_path: Path) -> None:
    session = FakeSession({n: _message(n) for n in range(1, 5)})
    _run(session, cache := _cache(tmp_path))
    cache.save()
    session.tops.clear()
    subject = re.compile("message [13]")
    assert [n for n, _s, _j in _run(session, _cache(tmp_path),
                                     query_module.Query(subject=subject))] == [1, 3]
    assert session.tops == []
    header = (("X-Tag", re.compile("t1")),)
    assert [n for n, _s, _j in _run(session, _cache(tmp_path),
                                     query_module.Query(header=header))] == [1, 3]
    assert session.tops == [1, 2, 3, 4]  # raw headers are not cached


def test_without_uidl_nothing_is_cached(tmp_path: Path) -> None:
    session = FakeSession({n: _message(n) for n in range(1, 4)}, uidl=False)
    _run(session, cache := _cache(tmp_path))
    cache.save()
    _run(session, _cache(tmp_path))
    assert session.tops == [1, 2, 3, 1, 2, 3]
    assert not Path(cache.path).exists()


# --- end to end: popctl list against Dovecot, TOP counted in --trace ----------------------------

USER = "carol"


def _tops(result: Result) -> list[str]:
    return re.findall(r"^ *[0-9.]+ C: (TOP \d+ 0)$", result.stderr, re.MULTILINE)


@pytest.fixture
def carol(dovecot: DovecotServer) -> Iterator[DovecotServer]:
    dovecot.reset(USER)
    for n in range(1, 4):
        dovecot.deliver(USER, _message(n)[2] + b"body\r\n")
    yield dovecot
    dovecot.reset(USER)


def _popctl(server: DovecotServer, *args: str) -> Result:
    options = ["--host", "localhost", "--port", str(server.port), "--tls", "starttls",
               "--ca-file", server.ca_file, "--user", USER, "--trace"]
    result = CliRunner().invoke(cli, [*options, *args],
                                env={"POPCTL_PASSWORD": server.users[USER]})
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.dovecot
def test_second_list_sends_no_top(carol: DovecotServer) -> None:
    first = _popctl(carol, "list", "--json")
    assert _tops(first) == ["TOP 1 0", "TOP 2 0", "TOP 3 0"]
    files = list((Path(os.environ["XDG_CACHE_HOME"]) / "popctl").glob("headers-carol@*.json"))
    assert len(files) == 1
    second = _popctl(carol, "list", "--json")
    assert _tops(second) == [] and second.stdout == first.stdout
    assert "C: UIDL" in second.stderr or "C: LIST" in second.stderr

    carol.deliver(USER, _message(4)[2] + b"body\r\n")
    third = _popctl(carol, "list", "--json")
    assert _tops(third) == ["TOP 4 0"]
    subjects = [r["subject"] for r in json.loads(third.stdout)]
    assert subjects == [f"message {n}" for n in (1, 2, 3, 4)]

    assert _tops(_popctl(carol, "list", "--from", "Sender 2", "--json")) == []
    assert _tops(_popctl(carol, "list", "--no-cache", "--json")) == [
        "TOP 1 0", "TOP 2 0", "TOP 3 0", "TOP 4 0"]
    assert len(_tops(_popctl(carol, "list", "--header", "X-Tag: t1", "--json"))) == 4

    # A message named by number is looked up alone (LIST 1, UIDL 1) and its header read with
    # the login, riding with the DELE (issue 13): a lookup that sees one UID cannot tell one
    # shared with another message, so the cache is not trusted for it.
    deleted = _popctl(carol, "dele", "1", "--yes", "--json")
    assert _tops(deleted) == ["TOP 1 0"]
    assert json.loads(deleted.stdout)[0]["subject"] == "message 1"
    after = _popctl(carol, "list", "--json")
    assert _tops(after) == [] and len(json.loads(after.stdout)) == 3
    assert len(json.loads(files[0].read_bytes())["entries"]) == 3  # message 1 pruned


@pytest.mark.dovecot
def test_corrupt_cache_file_is_not_fatal(carol: DovecotServer) -> None:
    first = _popctl(carol, "list", "--json")
    [path] = (Path(os.environ["XDG_CACHE_HOME"]) / "popctl").glob("headers-*.json")
    path.write_bytes(path.read_bytes()[:40])
    again = _popctl(carol, "list", "--json")
    assert again.stdout == first.stdout and len(_tops(again)) == 3
    assert len(json.loads(path.read_bytes())["entries"]) == 3  # replaced by a good one


# --- hostile text (issue 11) ---------------------------------------------------------------------


def test_entry_texts_are_valid_and_bounded_whatever_put_is_given(tmp_path: Path) -> None:
    from popctl.cache import MAX_ENTRY_TEXT
    from popctl.headers import MAX_TEXT

    assert MAX_ENTRY_TEXT == MAX_TEXT  # the cache keeps whatever a summary holds, no more
    cache = _cache(tmp_path)
    cache.put("u", 1, "a\ud800b", "s" * 200_000, None, "\udfff", "x@y")
    assert cache.save()  # 0.1.0 raised UnicodeEncodeError here, on every run
    entry = _cache(tmp_path).get("u", 1)
    assert entry is not None
    assert entry[1] == "a\ufffdb" and entry[4] == "\ufffd" and entry[5] == "x@y"
    assert entry[2] == "s" * (MAX_ENTRY_TEXT - 1) + "\u2026"
    assert Path(cache.path).stat().st_size < 1200


def test_an_account_that_cannot_be_encoded_is_not_fatal(tmp_path: Path) -> None:
    # a user name from argv with bytes that are not UTF-8 (surrogateescape): nothing raises
    cache = HeaderCache("b\udcffd@pop:110", tmp_path / "c" / "headers.json")
    cache.put("u", 1, "a", "b", None)
    assert cache.save() is False
    assert cache_path("b\udcffd@pop:110", tmp_path).endswith(".json")


def test_numbers_are_kept_beside_the_entries(tmp_path: Path) -> None:
    """Where each UID last was (for `retr --uid` without the listings): saved with its entry,
    pruned with it, and optional (a file without them, or with bad ones, keeps its entries)."""
    path = tmp_path / "c.json"
    cache = HeaderCache("a@h:110", path)
    cache.put("u1", 10, "A", "S", None)
    cache.put("u2", 20, "B", "T", None)
    cache.note_number("u1", 1)
    cache.note_number("u2", 2)
    cache.note_number("u9", 9)  # no entry: not saved
    assert cache.save()
    again = HeaderCache("a@h:110", path)
    assert (again.number_of("u1"), again.number_of("u2"), again.number_of("u9")) == (1, 2, None)
    again.prune(["u2"])
    assert again.number_of("u1") is None and again.number_of("u2") == 2
    document = json.loads(path.read_bytes())
    document["numbers"] = {"u1": "1", "u2": -2}
    path.write_text(json.dumps(document, separators=(",", ":")))
    bad = HeaderCache("a@h:110", path)
    assert len(bad) == 2 and bad.number_of("u1") is bad.number_of("u2") is None
    del document["numbers"]
    path.write_text(json.dumps(document, separators=(",", ":")))
    assert len(HeaderCache("a@h:110", path)) == 2
