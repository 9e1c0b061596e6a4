"""Run folders under crashes: killed writers leave only stale ``.partial-*`` folders, found and cleaned safely."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import ROOT, make_published_run, snapshot

import segmentation.runs as runs
from flows.cli import main
from segmentation._errors import DataError
from segmentation.runs import RunWriter, complete_runs, load_run, stale_partials

WRITER = """
import sys, time
from segmentation.runs import RunWriter
w = RunWriter(sys.argv[1]).__enter__()
for name in ("users.parquet", "segments.parquet", "metrics.json"):
    (w.path / name).write_text("half")
(w.path / "manifest.json").write_text('{"schema_version": 1}')
print(w.path, flush=True)
time.sleep(120)
"""


def _killed_writer(out):
    """A real process that dies by SIGKILL while its run folder is being written (every file already there)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        partial = proc.stdout.readline().strip()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert partial, "the writer did not start"
    return Path(partial)


def test_killed_writer_leaves_latest_and_a_stale_partial(tmp_path):
    out = tmp_path / "runs"
    good = make_published_run(out)
    partial = _killed_writer(out)
    assert partial.is_dir() and partial.name.startswith(".partial-")
    assert (out / "latest").resolve() == good.resolve()
    assert complete_runs(out) == [good]
    with pytest.raises(DataError, match="unfinished run"):  # every file is there, yet it is not a run
        load_run(partial)
    assert stale_partials(out) == [partial]  # its writer is gone, though it is newer than the complete run


def test_a_killed_writers_pid_reused_by_a_live_process_does_not_keep_its_folder_alive(tmp_path):
    # liveness is the writer's file lock, which the kernel drops at death, not a pid that may be reused
    out = tmp_path / "runs"
    make_published_run(out)
    partial = _killed_writer(out)
    writer = json.loads((partial / runs.WRITER_FILE).read_text())
    (partial / runs.WRITER_FILE).write_text(json.dumps({**writer, "pid": os.getpid()}))  # a live process took the pid
    assert stale_partials(out) == [partial]
    assert (partial / runs.LOCK_FILE).is_file()  # the dead writer's lock file is there, unlocked


def test_live_and_unknown_writers(tmp_path):
    out = tmp_path / "runs"
    old_unknown = out / ".partial-20000101-000000-aaaa"  # e.g. from another machine, older than any run
    old_unknown.mkdir(parents=True)
    assert stale_partials(out) == []  # no complete run yet: nothing says it is abandoned
    good = make_published_run(out)
    new_unknown = out / ".partial-29991231-235959-ffff"
    new_unknown.mkdir()
    with RunWriter(out) as live:
        assert stale_partials(out) == [old_unknown]  # not the live writer's, nor the newer unknown one
        (live.path / "x").write_text("1")
    assert (out / "latest").resolve() == live.final_path.resolve() != good.resolve()


def test_clean_command_removes_only_stale_folders(tmp_path, capsys):
    out = tmp_path / "runs"
    good = make_published_run(out)
    partial = _killed_writer(out)
    dead_link = out / ".latest-0badc0de"
    os.symlink("nowhere", dead_link)
    os.utime(dead_link, (time.time() - 7200, time.time() - 7200), follow_symlinks=False)
    assert main(["clean", "--output", str(out), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert f"would remove {partial}" in said and partial.exists()
    with RunWriter(out) as live:
        assert main(["clean", "--output", str(out)]) == 0
        said = capsys.readouterr().out
        assert f"removed {partial}" in said and f"kept {live.path}" in said
        assert not partial.exists() and not dead_link.is_symlink() and live.path.exists()
    assert main(["clean", "--output", str(out)]) == 0
    assert "nothing to clean" in capsys.readouterr().out
    load_run(good)


def test_publish_reports_stale_partials(tmp_path, caplog):
    out = tmp_path / "runs"
    partial = _killed_writer(out)
    with caplog.at_level(logging.WARNING, logger="segmentation.runs"), RunWriter(out):
        pass
    assert any("unfinished run folder" in r.getMessage() and partial.name in r.getMessage() and "segflow clean" in
               r.getMessage() for r in caplog.records)  # fmt: skip


def test_same_second_run_ids_do_not_collide(tmp_path, monkeypatch):
    ids = iter(["20260101-000000-abcd", "20260101-000000-abcd", "20260101-000000-abce"])
    monkeypatch.setattr(runs, "new_run_id", lambda: next(ids))
    with RunWriter(tmp_path) as a, RunWriter(tmp_path) as b:
        assert a.run_id != b.run_id
    assert {p.name for p in complete_runs(tmp_path)} == {"20260101-000000-abcd", "20260101-000000-abce"}
    with pytest.raises(DataError, match="already exists"), RunWriter(tmp_path, run_id="20260101-000000-abcd"):
        pass


def test_failure_inside_the_writer_removes_its_folder(tmp_path):
    out = tmp_path / "runs"
    make_published_run(out)
    before = snapshot(out)
    with pytest.raises(OSError), RunWriter(out) as w:
        (w.path / "users.parquet").write_text("x")
        raise OSError(28, "No space left on device")
    assert snapshot(out) == before


def test_output_dir_checked_before_the_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="exists and is not a folder"):
        runs.check_output_dir(tmp_path / "file")
    runs.check_output_dir(tmp_path / "new" / "deeper")  # created later by the writer
    assert not (tmp_path / "new").exists()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(DataError, match="not a writable folder"):
            runs.check_output_dir(locked / "runs")
    finally:
        locked.chmod(0o700)


def test_writer_file_is_gone_from_published_runs(tmp_path):
    with RunWriter(tmp_path) as w:
        assert json.loads((w.path / runs.WRITER_FILE).read_text())["pid"] == os.getpid()
    assert not (w.final_path / runs.WRITER_FILE).exists()
