"""Files people hand in are read in chunks and refused past the documented limits
(hkops.textfiles: size, line count, line length), before anything is imported: an endless
file (/dev/zero) stops at once with exit status 2 instead of eating the memory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hkops import textfiles
from hkops.cards.vendor_files import read_card_file
from hkops.errors import InvalidValue
from strategies import snapshot

sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def hkops_import(db, path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url, "HKOPS_ACTOR": "cli-user"}
    return subprocess.run([sys.executable, "-m", "hkops", "numbers", "import", str(path)], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.fixture
def empty_block(world):
    from hkops.numbers import service

    service.add_blocks(world, ["1380015"], actor="setup", empty=True)
    return world


def refused_by_the_cli(db, path, *fragments):
    before = snapshot(db)
    done = hkops_import(db, path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith("hkops: error: ")
    for fragment in fragments:
        assert fragment in done.stderr
    assert snapshot(db) == before
    return done


@sqlite_only
def test_an_endless_file_is_refused_at_once(empty_block):
    refused_by_the_cli(empty_block, "/dev/zero", "line 1: file '/dev/zero'",
                       f"longer than {textfiles.MAX_LINE_BYTES:,} bytes")


@sqlite_only
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(empty_block, tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as out:  # sparse: no disk written
        out.truncate(textfiles.MAX_FILE_BYTES + 1)
    refused_by_the_cli(empty_block, path, f"file '{path}': is larger than 256 MiB")


@sqlite_only
def test_a_file_with_too_many_lines_is_refused(empty_block, tmp_path):
    path = tmp_path / "many.txt"
    path.write_bytes(b"13800150001\n" + b"\n" * textfiles.MAX_LINES)
    refused_by_the_cli(empty_block, path, f"has more than {textfiles.MAX_LINES:,} lines")


@sqlite_only
def test_an_over_long_line_is_refused_by_its_number_and_good_files_still_import(empty_block, tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_text("13800150001\n13800150002\n" + "1" * (textfiles.MAX_LINE_BYTES + 1) + "\n", encoding="utf-8")
    refused_by_the_cli(empty_block, path, "line 3: file", "a line is longer than")
    path.write_text("13800150001\n" + "1" * textfiles.MAX_LINE_BYTES + "\n", encoding="utf-8")
    done = hkops_import(empty_block, path)
    assert "line 2" in done.stderr and "longer than" not in done.stderr  # at the limit: read, then refused as a number
    path.write_text("13800150001\n13800150002\n", encoding="utf-8")
    done = hkops_import(empty_block, path)
    assert done.returncode == 0 and done.stdout == f"imported 2 numbers from {path}\n", done.stderr


def test_the_limit_holds_across_chunks_and_for_card_files(tmp_path):
    path = tmp_path / "cards.csv"
    # a line that starts in one 1 MiB chunk and ends in the next
    path.write_bytes(b"iccid,imsi\n" + b"x" * (textfiles._CHUNK - 20) + b"\n" + b"y" * (textfiles.MAX_LINE_BYTES + 1))
    with pytest.raises(InvalidValue) as caught:
        read_card_file(path, carrier="China Mobile")
    assert caught.value.line == 2
    path.write_bytes(b"a" * (textfiles._CHUNK - 100) + b"b" * (textfiles.MAX_LINE_BYTES + 1) + b"\n")
    with pytest.raises(InvalidValue) as caught:
        textfiles.read_text(path)
    assert caught.value.line == 1
