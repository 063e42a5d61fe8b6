"""corrotune.files: a file is replaced whole or left as it was; no temporary file stays behind."""

from __future__ import annotations

import json
import os

import pytest

from corrotune.files import atomic_open, atomic_path, temporary_name, write_bytes, write_json, write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_writes_replace_the_file_whole(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    assert write_json(target, {"epoch": 3}, indent=1) == target
    assert json.loads(target.read_text()) == {"epoch": 3}
    write_text(target, "a,b\r\n", newline="")
    assert target.read_bytes() == b"a,b\r\n"
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_a_failing_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "trials.csv"
    target.write_text("old rows\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target, newline="") as handle:
            handle.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old rows\n"
    assert _leftovers(tmp_path) == []


def test_the_target_is_untouched_until_the_block_ends(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with atomic_open(target) as handle:
        handle.write("new")
        handle.flush()
        assert target.read_text() == "old"  # a reader sees the old file meanwhile
        assert len(_leftovers(tmp_path)) == 1
    assert target.read_text() == "new"


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    target = tmp_path / "study.journal"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".study.journal.")
        temporary.write_text("journal")
    assert target.read_text() == "journal" and _leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError):  # the block wrote nothing: the old file stays
        with atomic_path(target):
            pass
    assert target.read_text() == "journal"


def test_temporary_names_are_hidden_unique_and_beside_the_target(tmp_path):
    names = {temporary_name(tmp_path / "a.json") for _ in range(20)}
    assert len(names) == 20
    assert all(n.parent == tmp_path and n.name.startswith(f".a.json.{os.getpid()}.") for n in names)


def test_mode_must_write_a_new_file(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
