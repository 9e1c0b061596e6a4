"""A run killed by SIGKILL mid-stage loses nothing; two runs started at once into one folder both complete.

Three ``segflow run`` child processes on planted data (200 users) with their own output and cache
folders: the first is killed while segmenting (once the ``represent`` stage's result is in the cache),
then two start at the same moment, resume from the first one's cache, and publish side by side.
Slow (each child starts Prefect's temporary server and compiles UMAP's numba code): ``-m slow``.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import ROOT, make_published_run, run_env, write_planted_files

from segmentation._errors import DataError
from segmentation.runs import complete_runs, load_run, stale_partials

pytestmark = [pytest.mark.slow, pytest.mark.umap]

SETTINGS = ["predictor.svdpp.epochs=5", "predictor.autorec.epochs=5", "evaluate.bootstrap=50"]
STAGE_DONE = r"\[{}-[0-9a-f]+\] Finished in state (Completed|Cached)"  # the CLI's log line of a task run


def _command(files: dict[str, Path], out: Path, cache: Path) -> list[str]:
    cmd = [sys.executable, "-m", "flows.cli", "run", "--ratings", str(files["ratings"]), "--items",
           str(files["items"]), "--users", str(files["users"]), "--output", str(out), "--set", f"cache_dir='{cache}'"]  # fmt: skip
    for s in SETTINGS:
        cmd += ["--set", s]
    return cmd


def _start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    with log.open("w") as f:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run itself (the crash), then whatever it started (Prefect's temporary server)."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """The first run, killed while the ``segment`` stage runs; a published run was there before it."""
    root = tmp_path_factory.mktemp("crash")
    files = write_planted_files(root / "data")
    out, cache = root / "runs", root / "cache"
    previous = make_published_run(out)
    env = run_env(root)
    log = root / "killed.log"
    proc = _start(_command(files, out, cache), log, env)
    deadline = time.monotonic() + 400
    store = cache / "prefect-results"
    try:
        while not (store.is_dir() and any(p.name.startswith("represent-") for p in store.iterdir())):
            assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no 'represent' stage after 400 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.05)
        time.sleep(1.0)  # well inside the segment stage (UMAP takes seconds even when compiled)
        assert proc.poll() is None, "the run finished before the kill"
    finally:
        _kill_group(proc)
    return root, files, out, cache, previous, env, log.read_text()


@pytest.fixture(scope="module")
def two_at_once(crashed):
    """Two runs started at the same moment, same output folder, same cache (the killed run's)."""
    root, files, out, cache, _, env, _ = crashed
    procs = [_start(_command(files, out, cache), root / f"concurrent-{i}.log", env) for i in (1, 2)]
    try:
        for p in procs:
            p.wait(timeout=600)
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_group(p)
    logs = [(root / f"concurrent-{i}.log").read_text() for i in (1, 2)]
    return [p.returncode for p in procs], logs


def test_killed_run_leaves_latest_on_the_last_complete_run(crashed):
    _, _, out, _, previous, _, log = crashed
    assert re.search(STAGE_DONE.format("represent"), log)
    assert not re.search(STAGE_DONE.format("segment"), log), "killed too late: the segment stage had finished"
    assert (out / "latest").resolve() == previous.resolve()
    assert complete_runs(out) == [previous]
    load_run(out / "latest")


def test_no_half_written_run_looks_complete(crashed):
    _, _, out, _, _, _, _ = crashed
    for partial in out.glob(".partial-*"):  # only if the kill came during publishing
        with pytest.raises(DataError):
            load_run(partial)
        assert partial in stale_partials(out)
    complete = {p.name for p in complete_runs(out)}
    for p in out.iterdir():
        assert p.name == "latest" or p.name in complete or p.name.startswith((".partial-", ".latest-")), p


def test_finished_stages_were_persisted_before_the_kill(crashed):
    _, _, _, cache, _, _, _ = crashed
    stored = {p.name.split("-")[0] for p in (cache / "prefect-results").iterdir()}
    assert {"split", "represent"} <= stored


def test_two_runs_at_once_both_complete(two_at_once, crashed):
    codes, logs = two_at_once
    _, _, out, _, previous, _, _ = crashed
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    published = [Path(re.search(r"^Report: (.+)/report/index\.html$", log, re.M).group(1)) for log in logs]
    assert published[0] != published[1]
    assert complete_runs(out) == sorted([previous, *published])
    for path in published:
        run = load_run(path)
        assert run.users.height == 200
    assert (out / "latest").resolve() in {p.resolve() for p in published}
    assert not list(out.glob(".partial-*"))
    assert load_run(published[0]).users.equals(load_run(published[1]).users)


def test_runs_after_the_crash_reuse_its_work(two_at_once):
    _, logs = two_at_once
    for log in logs:
        for stage in ("split", "represent"):
            assert re.search(rf"\[{stage}-[0-9a-f]+\] Finished in state Cached", log), f"{stage} not cached"
        assert re.search(r"cache: \d+ of \d+ cached stages reused \(.*split.*represent", log)
        assert "Traceback" not in log
