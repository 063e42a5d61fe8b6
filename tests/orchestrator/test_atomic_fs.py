"""The storage filesystem given to Ray: a writer killed mid-file leaves the old file whole."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import pyarrow.fs
import pytest

from orchestrator.ray_repairs.atomic_fs import TMP_SUFFIX, atomic_local_filesystem, is_local, remove_leftovers
from orchestrator.storage import StudyPlace

OLD = b'{"epoch": 1}\n{"epoch": 2}\n'


def _kill_mid_write(target, how: str) -> subprocess.CompletedProcess:
    """Runs a process that starts rewriting ``target`` through the filesystem and SIGKILLs itself."""
    code = textwrap.dedent(f"""
        import os, signal, pyarrow.fs
        from orchestrator.ray_repairs.atomic_fs import atomic_local_filesystem
        fs = atomic_local_filesystem() if {how == "atomic"!r} else pyarrow.fs.LocalFileSystem()
        stream = fs.open_output_stream({str(target)!r})
        stream.write(b'{{"epoch": 1}}\\n')
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True)


@pytest.mark.parametrize("how", ["atomic", "plain"])
def test_a_writer_killed_mid_file_leaves_the_old_file_whole_only_with_the_atomic_filesystem(tmp_path, how):
    target = tmp_path / "result.json"
    target.write_bytes(OLD)
    assert _kill_mid_write(target, how).returncode == -9
    if how == "plain":  # what Ray's own local filesystem does: the file is cut short
        assert target.read_bytes() == b'{"epoch": 1}\n'
        return
    assert target.read_bytes() == OLD
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX))
    assert len(leftovers) == 1 and leftovers[0].startswith(".result.json.")
    assert remove_leftovers(tmp_path) == [tmp_path / leftovers[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_closed_stream_replaces_the_file_with_the_files_usual_mode(tmp_path):
    fs = atomic_local_filesystem()
    target = tmp_path / "params.json"
    target.write_bytes(OLD)
    with fs.open_output_stream(str(target)) as stream:
        stream.write(b"new")
        assert target.read_bytes() == OLD  # readers see the old file until the new one is whole
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_rays_folder_copy_through_it_reproduces_the_folder(tmp_path):
    source = tmp_path / "staging"
    (source / "trial_1" / "checkpoint_000000").mkdir(parents=True)
    files = {"tuner.pkl": os.urandom(3000), "trial_1/result.json": OLD, "trial_1/checkpoint_000000/state.pt": os.urandom(70_000)}
    for name, data in files.items():
        (source / name).write_bytes(data)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "tuner.pkl").write_bytes(b"old")

    pyarrow.fs.copy_files(str(source), str(tmp_path / "study"), destination_filesystem=atomic_local_filesystem(), chunk_size=4096)

    copied = {p.relative_to(tmp_path / "study").as_posix(): p.read_bytes() for p in (tmp_path / "study").rglob("*") if p.is_file()}
    assert copied == files


def test_copy_and_move_within_it(tmp_path):
    fs = atomic_local_filesystem()
    (tmp_path / "a").write_bytes(OLD)
    fs.copy_file(str(tmp_path / "a"), str(tmp_path / "b"))
    fs.move(str(tmp_path / "b"), str(tmp_path / "c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"] and (tmp_path / "c").read_bytes() == OLD
    with pytest.raises(FileNotFoundError, match="missing"):
        fs.open_output_stream(str(tmp_path / "missing" / "x"))


def test_it_travels_to_workers_and_counts_as_local():
    fs = pickle.loads(pickle.dumps(atomic_local_filesystem()))
    assert fs.equals(atomic_local_filesystem()) and is_local(fs)
    assert is_local(pyarrow.fs.LocalFileSystem()) and not is_local(pyarrow.fs.SubTreeFileSystem("/tmp", pyarrow.fs.LocalFileSystem()))


def test_a_path_study_gets_it_and_a_cloud_study_keeps_rays(tmp_path):
    assert is_local(StudyPlace.create(tmp_path, "demo").storage_filesystem)
    assert StudyPlace.create("s3://bucket/corrotune", "demo").storage_filesystem is None


def _snapshot(source, target) -> None:
    """What Ray's experiment snapshot does: copy the whole staging folder to the study folder."""
    pyarrow.fs.copy_files(str(source), str(target), destination_filesystem=atomic_local_filesystem())


def test_a_settled_trials_files_are_copied_once_more_then_left_out_of_later_snapshots(tmp_path):
    from orchestrator.ray_repairs.atomic_fs import forget_settled, settle

    staging, study = tmp_path / "staging", tmp_path / "study"
    (staging / "trial_1").mkdir(parents=True)
    (staging / "trial_1" / "result.json").write_bytes(OLD)
    (staging / "trial_1" / "error.txt").write_text("boom")
    (staging / "trial_2").mkdir()
    (staging / "trial_2" / "result.json").write_bytes(OLD)
    (staging / "tuner.pkl").write_bytes(b"state 1")
    study.mkdir()
    try:
        _snapshot(staging, study)
        settle(staging / "trial_2", str(study / "trial_2"))
        with (staging / "trial_1" / "result.json").open("ab") as handle:  # the trial's last result
            handle.write(b'{"epoch": 3}\n')
        assert settle(staging / "trial_1", str(study / "trial_1")) == 1  # result.json only: error.txt is not Ray's logger's

        _snapshot(staging, study)  # the first snapshot after: a whole copy of the final bytes
        assert (study / "trial_1" / "result.json").read_bytes() == OLD + b'{"epoch": 3}\n'
        assert (staging / "trial_1" / "result.json").exists()

        (staging / "tuner.pkl").write_bytes(b"state 2")
        _snapshot(staging, study)  # the next: nothing rewritten, the staged copy gone
        assert not (staging / "trial_1" / "result.json").exists()
        assert (staging / "trial_1" / "error.txt").exists()  # not settled: stays, and is copied
        assert not (staging / "trial_2" / "result.json").exists()
        assert (staging / "trial_2").is_dir()  # emptied, kept: a late W&B actor makes it its working directory
        assert (study / "trial_1" / "result.json").read_bytes() == OLD + b'{"epoch": 3}\n'
        assert (study / "tuner.pkl").read_bytes() == b"state 2"
        _snapshot(staging, study)
        assert (study / "trial_1" / "result.json").read_bytes() == OLD + b'{"epoch": 3}\n'
    finally:
        forget_settled()


def test_a_settled_file_written_again_is_copied_as_before(tmp_path):
    from orchestrator.ray_repairs.atomic_fs import forget_settled, settle

    staging, study = tmp_path / "staging", tmp_path / "study"
    (staging / "trial_1").mkdir(parents=True)
    (staging / "trial_1" / "result.json").write_bytes(OLD)
    study.mkdir()
    try:
        settle(staging / "trial_1", str(study / "trial_1"))
        _snapshot(staging, study)
        os.utime(staging / "trial_1" / "result.json", ns=(1, 1))  # a restarted trial writes it again
        with (staging / "trial_1" / "result.json").open("ab") as handle:
            handle.write(b'{"epoch": 3}\n')
        _snapshot(staging, study)
        assert (staging / "trial_1" / "result.json").exists()
        assert (study / "trial_1" / "result.json").read_bytes() == OLD + b'{"epoch": 3}\n'
    finally:
        forget_settled()
