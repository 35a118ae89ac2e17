"""Tables a person can read (issue 16): on a terminal a listing fits its width, one line per
message, with human sizes and short local dates; piped, the table is what it always was;
--columns chooses and orders the columns (every format); list --sort orders the messages."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime

import pytest
import tabulate as tabulate_module

from popctl.output import textwidth
from tests.support.cli import invoke, outcome
from tests.support.terminal import close_terminal, drain

SHORT_DATE = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d\d \d\d:\d\d"
                        r"|\d{4}-\d\d-\d\d")
HUMAN_SIZE = re.compile(r"\d+(\.\d)?[KMGTPE]|\d{1,4}")


def on_terminal(args: list[str], columns: int, *, env: dict[str, str] | None = None,
                answer: tuple[bytes, bytes] | None = None) -> tuple[int, str]:
    """Run popctl with stdout and stderr on a pseudo-terminal ``columns`` wide (no $COLUMNS
    unless ``env`` sets it); with ``answer`` (prompt, reply), type the reply at the prompt.
    Returns the status and what the terminal showed, with plain newlines."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environment.update({"TZ": "UTC", **(env or {})})
    process = subprocess.Popen([sys.executable, "-m", "popctl", *args], stdin=slave,
                               stdout=slave, stderr=slave, env=environment,
                               start_new_session=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, shown
            if select.select([master], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):
                    shown += os.read(master, 65536)
            if answer is not None and answer[0] in shown:
                os.write(master, answer[1] + b"\n")
                answer = None
        shown += drain(master)
    finally:
        close_terminal(process, master)
    return process.returncode, shown.decode("utf-8").replace("\r\n", "\n")


def table_lines(shown: str) -> list[str]:
    """The table's lines of a terminal's text (the sandbox's note and others left out)."""
    lines = shown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("number"))
    return [line for line in lines[start:] if line and not line.startswith(("sandbox:", "dry"))]


def sandbox_json(*args: str) -> list[dict[str, object]]:
    result = invoke("--sandbox", "-q", *args, "--json")
    assert result.exit_code == 0, result.stderr
    records: list[dict[str, object]] = json.loads(result.stdout)
    return records


# --- fitted to the terminal ----------------------------------------------------------------------


def test_list_at_80_columns_is_one_line_per_message_with_wide_characters() -> None:
    code, shown = on_terminal(["list", "--sandbox"], 80)
    assert code == 0, shown
    lines = table_lines(shown)
    assert len(lines) == 2 + 50  # header, rule, one line per message: nothing wrapped
    assert all(textwidth.wcswidth(line) <= 80 for line in lines), \
        [line for line in lines if textwidth.wcswidth(line) > 80]
    assert lines[0].split() == ["number", "size", "from", "subject", "date"]  # uid went first
    cjk = next(line for line in lines if "田中" in line)
    assert "会議の議事録" in cjk and "…" in cjk
    assert all(SHORT_DATE.fullmatch(line[-12:].strip()) for line in lines[2:]), lines[2:5]
    size_end = lines[0].index("size") + len("size")  # number and size are ASCII: columns = chars
    sizes = [line[size_end - 6:size_end].strip() for line in lines[2:]]
    assert all(HUMAN_SIZE.fullmatch(size) for size in sizes), sizes
    assert "4.0M" in sizes  # the sandbox's 4,195,224-octet message
    # Every row's columns line up by display width: the date starts at the same column.
    assert len({textwidth.wcswidth(line[:-12]) for line in lines[2:]}) == 1


def test_columns_are_left_out_in_order_on_a_narrow_terminal() -> None:
    code, shown = on_terminal(["list", "--sandbox"], 100, env={"COLUMNS": "40"})
    assert code == 0, shown
    lines = table_lines(shown)
    assert lines[0].split() == ["number", "size", "subject"]
    assert all(textwidth.wcswidth(line) <= 40 for line in lines)
    assert len(lines) == 52
    code, shown = on_terminal(["list", "--sandbox"], 60)
    assert table_lines(shown)[0].split() == ["number", "size", "from", "subject"]


def test_full_on_a_terminal_is_the_piped_table() -> None:
    piped = invoke("--sandbox", "list").stdout
    code, shown = on_terminal(["list", "--sandbox", "--full"], 80)
    assert code == 0, shown
    assert "\n".join(table_lines(shown)) + "\n" == piped


def test_uidl_on_a_narrow_terminal_keeps_the_uids_whole() -> None:
    code, shown = on_terminal(["uidl", "--sandbox", "1-3"], 30)
    assert code == 0, shown
    lines = table_lines(shown)
    assert lines[0].split() == ["number", "uid"]
    assert all(re.fullmatch(r" +\d  [0-9a-f]{32}", line) for line in lines[2:])


def test_dele_question_table_fits_the_terminal() -> None:
    code, shown = on_terminal(["dele", "--sandbox", "1-5"], 80,
                              answer=(b"Delete 5 message(s)?", b"n"))
    assert code != 0  # declined: nothing deleted
    assert "Delete 5 message(s)?" in shown
    lines = table_lines(shown.split("Delete 5")[0])
    assert len(lines) == 2 + 5
    assert lines[0].split() == ["number", "size", "from", "subject", "date"]
    assert all(textwidth.wcswidth(line) <= 80 for line in lines)


def test_dele_question_table_on_a_wide_terminal_has_no_deleted_column() -> None:
    """Nothing is deleted yet when the question is asked: a column of "no" says nothing."""
    code, shown = on_terminal(["dele", "--sandbox", "1-2"], 250,
                              answer=(b"Delete 2 message(s)?", b"n"))
    assert code != 0
    lines = table_lines(shown.split("Delete 2")[0])
    assert lines[0].split() == ["number", "size", "uid", "from", "subject", "date"]
    assert len(lines) == 2 + 2


# --- piped: unchanged ----------------------------------------------------------------------------


def _reference_table(records: list[dict[str, object]], columns: list[str]) -> str:
    """The table as popctl 0.1 wrote it: tabulate's "simple" format over the records, text cut
    at 60 characters, CJK and emoji measured as two columns."""
    def cell(value: object) -> object:
        if isinstance(value, str) and len(value) > 60:
            return value[:59] + "…"
        return "" if value is None else value
    rows = [[cell(record[key]) for key in columns] for record in records]
    text = [i for i, key in enumerate(columns) if any(isinstance(r[key], str) for r in records)]
    saved = tabulate_module.wcwidth, tabulate_module.WIDE_CHARS_MODE
    tabulate_module.wcwidth, tabulate_module.WIDE_CHARS_MODE = textwidth, True
    try:
        return str(tabulate_module.tabulate(rows, headers=columns, tablefmt="simple",
                                            disable_numparse=text or False)) + "\n"
    finally:
        tabulate_module.wcwidth, tabulate_module.WIDE_CHARS_MODE = saved


def test_piped_list_table_is_unchanged() -> None:
    records = sandbox_json("list")
    result = invoke("--sandbox", "-q", "list", env={"COLUMNS": "40"})  # a pipe has no width
    assert outcome(result) == (0, _reference_table(records, [
        "number", "size", "uid", "from", "subject", "date"]), "")
    assert max(len(line) for line in result.stdout.splitlines()) > 170  # not fitted to 80
    third = result.stdout.splitlines()[2]  # message 1: octets and the ISO 8601 date
    assert str(records[0]["size"]) in third and str(records[0]["date"]) in third


def test_piped_dele_table_is_unchanged() -> None:
    records = sandbox_json("dele", "1-4", "--dry-run")
    result = invoke("--sandbox", "-q", "dele", "1-4", "--dry-run", "--format", "table")
    for record in records:
        record["deleted"] = "no"
    assert outcome(result) == (0, _reference_table(records, [
        "number", "size", "uid", "from", "subject", "date", "deleted"]), "")


# --- --columns -----------------------------------------------------------------------------------


def test_columns_choose_and_order_the_table_and_csv() -> None:
    records = sandbox_json("list", "1-3")
    result = invoke("--sandbox", "-q", "list", "1-3", "--columns", "subject,number")
    assert outcome(result) == (0, _reference_table(records, ["subject", "number"]), "")
    result = invoke("--sandbox", "-q", "list", "1-3", "--columns", "number, from_address",
                    "--format", "csv")
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["number", "from_address"], *[[str(r["number"]), str(r["from_address"])]
                                      for r in records]]


def test_columns_choose_the_json_keys() -> None:
    records = sandbox_json("list", "1-2", "--columns", "uid,size")
    assert [list(r) for r in records] == [["uid", "size"], ["uid", "size"]]
    assert sandbox_json("uidl", "1", "--columns", "uid") == [
        {"uid": sandbox_json("uidl", "1")[0]["uid"]}]
    assert sandbox_json("dele", "2", "--dry-run", "--columns", "number,deleted") == [
        {"number": 2, "deleted": False}]
    result = invoke("--sandbox", "-q", "list", "1-2", "--columns", "number,date",
                    "--format", "ndjson")
    assert [list(json.loads(line)) for line in result.stdout.splitlines()] == [
        ["number", "date"], ["number", "date"]]


@pytest.mark.parametrize(("args", "message"), [
    (["list", "--columns", "number,sender"],
     "Error: unknown column 'sender': the columns are number, size, uid, from, subject, date, "
     "from_name, from_address, date_utc, date_epoch\n"),
    (["list", "--sizes-only", "--columns", "uid"],
     "Error: unknown column 'uid': the columns are number, size\n"),
    (["uidl", "--columns", "size"], "Error: unknown column 'size': the columns are number, uid\n"),
    (["dele", "1", "--yes", "--columns", ","], "Error: name at least one column, separated by "
                                                "commas\n"),
])
def test_unknown_columns_are_a_usage_error_naming_the_valid_ones(args: list[str],
                                                                 message: str) -> None:
    assert outcome(invoke("--sandbox", *args)) == (2, "", message)


# --- --sort --------------------------------------------------------------------------------------


def _instant(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["date"])).timestamp()


def test_sort_by_size_descending_and_by_date_as_instants() -> None:
    records = sandbox_json("list")
    by_size = sandbox_json("list", "--sort", "-size")
    assert [r["size"] for r in by_size] == sorted((r["size"] for r in records),  # type: ignore[arg-type, return-value]
                                                  reverse=True)
    assert sorted(by_size, key=lambda r: r["number"]) == records  # type: ignore[arg-type, return-value]
    by_date = sandbox_json("list", "--sort=date")
    assert [_instant(r) for r in by_date] == sorted(_instant(r) for r in records)
    # Offsets differ (-07:00, +09:00): as text the order would be another one.
    assert [r["date"] for r in by_date] != sorted(str(r["date"]) for r in records)


def test_sort_by_several_fields_and_text_ignoring_case() -> None:
    records = sandbox_json("list")
    by_from = sandbox_json("list", "--sort", "from,-number")
    expected = sorted(records, key=lambda r: -r["number"])  # type: ignore[operator]
    expected.sort(key=lambda r: str(r["from"]).casefold())
    assert [r["number"] for r in by_from] == [r["number"] for r in expected]
    table = invoke("--sandbox", "-q", "list", "--sort", "-size", "--sizes-only").stdout
    sizes = [int(line.split()[1]) for line in table.splitlines()[2:]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 50


@pytest.mark.parametrize(("args", "message"), [
    (["--sort", "sender"], "Error: cannot sort by 'sender': sort by number, size, date, from, "
                           "subject, uid (a leading - for descending: -size)\n"),
    (["--sizes-only", "--sort", "-date"], "Error: cannot sort by 'date': sort by number, size "
                                          "(a leading - for descending: -size)\n"),
])
def test_unknown_sort_field_is_a_usage_error(args: list[str], message: str) -> None:
    assert outcome(invoke("--sandbox", "list", *args)) == (2, "", message)


def test_single_results_and_reports_show_human_sizes_on_a_terminal(tmp_path: object) -> None:
    code, shown = on_terminal(["stat", "--sandbox"], 80)
    assert code == 0, shown
    assert "size   8.0M\n" in shown
    assert invoke("--sandbox", "-q", "stat").stdout == "count  50\nsize   8374557\n"  # piped
    code, shown = on_terminal(["retr", "--sandbox", "38", "--output-dir", str(tmp_path),
                               "--format", "table"], 80)
    assert code == 0, shown
    row = table_lines(shown)[2].split()
    assert row[:3] == ["38", "4.0M", "4.0M"]  # size and listed_size
