"""popctl/listing.py: the fast path (a whole read at once) against its slow twin (line by line),
in any split of the reply, and the compact listing against a plain list and dict."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl import query
from popctl.errors import RemoteProtocolError
from popctl.listing import ListingSink, SizeListing, UidListing
from popctl.models import MessageSize, MessageUid

# Strictly increasing numbers, with gaps sometimes (deleted or hidden messages).
numbers = st.lists(st.integers(1, 5), max_size=60).map(
    lambda steps: [sum(steps[:i + 1]) for i in range(len(steps))])
uid_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                   max_size=70)
odd_uid = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
                  min_size=1, max_size=10).filter(lambda u: u.split() == [u])
line_end = st.sampled_from([b"\r\n", b"\n"])
separator = st.sampled_from([b" ", b" ", b" ", b"\t", b"  "])


def feed(sink: ListingSink, data: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in sorted(set(cuts)):
        if start < cut < len(data):
            sink.write(data[start:cut])
            start = cut
    sink.write(data[start:])


@settings(max_examples=150, deadline=None)
@given(numbers, st.data(), st.lists(st.integers(0, 3000), max_size=8))
def test_sizes_any_split_equals_line_by_line(nums: list[int], data: st.DataObject,
                                             cuts: list[int]) -> None:
    sizes = [data.draw(st.integers(0, 2**40)) for _ in nums]
    lines = [b"%d%s%d%s%s" % (n, data.draw(separator), s,
                              data.draw(st.sampled_from([b"", b" extra"])), data.draw(line_end))
             for n, s in zip(nums, sizes, strict=True)]
    reply = b"".join(lines)
    sink = ListingSink(SizeListing(), 1 << 20)
    feed(sink, reply, cuts)
    got = sink.finish()
    twin = SizeListing()
    for line in lines:
        twin.add_line(line)
    expected = [MessageSize(n, s) for n, s in zip(nums, sizes, strict=True)]
    assert list(got) == list(twin) == expected
    assert got == expected and len(got) == len(nums) and got.last == (nums[-1] if nums else 0)
    for n in range(0, (nums[-1] if nums else 0) + 2):
        assert got.get(n) == next((e for e in expected if e.number == n), None)


@settings(max_examples=150, deadline=None)
@given(numbers, st.data(), st.lists(st.integers(0, 3000), max_size=8))
def test_uids_any_split_equals_line_by_line(nums: list[int], data: st.DataObject,
                                            cuts: list[int]) -> None:
    uids = [data.draw(st.one_of(uid_text, odd_uid)) for _ in nums]
    lines = [b"%d%s%s%s" % (n, data.draw(separator), u.encode(), data.draw(line_end))
             for n, u in zip(nums, uids, strict=True)]
    reply = b"".join(lines)
    sink = ListingSink(UidListing(), 1 << 20)
    feed(sink, reply, cuts)
    got = sink.finish()
    assert isinstance(got, UidListing)
    twin = UidListing()
    for line in lines:
        twin.add_line(line)
    expected = [MessageUid(n, u) for n, u in zip(nums, uids, strict=True)]
    assert list(got) == list(twin) == expected
    assert list(got.uids()) == uids and list(got.numbers()) == nums
    by_number = dict(zip(nums, uids, strict=True))
    for n in range(0, (nums[-1] if nums else 0) + 2):
        assert got.uid_of(n) == by_number.get(n)


def test_blank_lines_are_skipped_and_the_last_line_may_lack_its_end() -> None:
    sink = ListingSink(SizeListing(), 1000)
    sink.write(b"1 10\r\n\r\n2 20")
    assert list(sink.finish()) == [MessageSize(1, 10), MessageSize(2, 20)]


ERRORS = {
    "twice": (b"1 10\r\n1 10\r\n", "server listed message 1 twice in its LIST reply"),
    "falling": (b"1 10\r\n3 10\r\n2 10\r\n", "server listed message 2 after message 3"),
    "zero": (b"0 10\r\n", "server sent LIST message number 0 (message numbers start at 1)"),
    "2**31": (b"2147483648 10\r\n", "server sent LIST message number 2147483648, more"),
    "1-TiB": (b"1 1099511627777\r\n", "server sent LIST size 1099511627777 for message 1"),
    "not-a-number": (b"1 big\r\n", "server sent LIST size 'big', not a number"),
    "long-line": (b"1 " + b"9" * 9000, "server sent a LIST line longer than 8192 octets"),
    "too-long": (b"".join(b"%d 10\r\n" % n for n in range(1, 20000)),
                 "LIST reply larger than 100000 octets"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
@pytest.mark.parametrize("piece", [1, 7, 100000])
def test_errors_do_not_depend_on_the_split(case: str, piece: int) -> None:
    reply, error = ERRORS[case]
    sink = ListingSink(SizeListing(), 100000)
    with pytest.raises(RemoteProtocolError, match=re.escape(error)):
        for at in range(0, len(reply), piece):
            sink.write(reply[at:at + piece])
        sink.finish()


def test_wide_sizes_and_gaps_widen_the_arrays() -> None:
    listing = SizeListing.of([MessageSize(7, 2**33), MessageSize(2, 5)])
    assert list(listing) == [MessageSize(2, 5), MessageSize(7, 2**33)]
    assert listing.index_of(7) == 1 and listing.index_of(3) == -1
    assert listing[-1] == MessageSize(7, 2**33) and listing[:1] == [MessageSize(2, 5)]


@settings(max_examples=150, deadline=None)
@given(numbers, numbers)
def test_same_numbers_compares_the_numbers(first: list[int], second: list[int]) -> None:
    sizes = SizeListing.of([MessageSize(n, 10 * n) for n in first])
    uids = UidListing.of([MessageUid(n, f"u{n}") for n in second])
    assert sizes.same_numbers(uids) == uids.same_numbers(sizes) == (first == second)
    assert list(sizes.sizes()) == [10 * n for n in first]


@settings(max_examples=150, deadline=None)
@given(numbers, numbers, st.booleans(), st.sampled_from([None, 0, 12]))
def test_rows_of_every_message_pair_sizes_and_uids_by_number(
        listed: list[int], uidl: list[int], with_uids: bool, larger: int | None) -> None:
    # The rows of a whole listing walk LIST and UIDL side by side when they list the same
    # numbers (query._candidates); by number when they differ or a filter chooses: the same rows.
    sizes = SizeListing.of([MessageSize(n, 3 * n) for n in listed])
    uids = UidListing.of([MessageUid(n, f"u{n}") for n in uidl]) if with_uids else None
    rows, count = query._candidates(query.Query(larger_than=larger), sizes, uids)
    got = [(row.number, row.size, row.uid) for row in rows]
    known = set(uidl) if with_uids else set()
    assert got == [(n, 3 * n, f"u{n}" if n in known else None) for n in listed
                   if larger is None or 3 * n > larger]
    assert count() == len(got)
