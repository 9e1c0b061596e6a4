"""Two whole runs on hostile data: same data, configuration and seed give the same outputs, and nothing escapes.

The data's ids and titles hold ``..``, ``/``, ``\\``, NUL-like text (``%00``, ``\\0``, ``␀``) and HTML
(``<script>``, ``<img onerror>``), plus repairs the loader makes (duplicates, ratings of undescribed items,
users without ratings). The two runs use separate caches, so the second recomputes every stage.
"""

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from reliability_helpers import write_planted_files

from flows.cli import main
from flows.pipeline import segflow_pipeline  # noqa: F401  (Prefect's console log bound to the session's stderr)
from segmentation._errors import DataWarning
from segmentation.runs import complete_runs, load_run

pytestmark = [pytest.mark.umap, pytest.mark.usefixtures("prefect_harness")]

SETTINGS = ["predictor.svdpp.epochs=5", "predictor.autorec.epochs=5", "evaluate.bootstrap=50"]
NOT_RESULTS = {"timings", "seconds", "run_id", "numba_import"}  # wall-clock figures and the run's own id


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    files = write_planted_files(root / "data", hostile=True)
    work = root / "work"
    work.mkdir()
    caught = []
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", DataWarning)
        mp.chdir(work)  # anything written relative to the working folder would land here
        mp.setenv("SEGFLOW_CACHE", str(root / "default-cache"))  # must stay unused: cache_dir is given
        paths = []
        for cache in ("cache-a", "cache-b"):
            args = ["run", "--ratings", str(files["ratings"]), "--items", str(files["items"]), "--users",
                    str(files["users"]), "--output", str(work / "runs"), "--set", f"cache_dir='{work / cache}'"]  # fmt: skip
            for s in SETTINGS:
                args += ["--set", s]
            assert main(args) == 0
            paths.append((work / "runs" / "latest").resolve())
        caught = [str(x.message) for x in w]
    return root, files, paths, caught


def _comparable(metrics: dict) -> dict:
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in NOT_RESULTS}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(metrics)


def _differences(a, b, where="metrics") -> list[str]:
    """Paths where ``a`` and ``b`` differ.

    Floats may differ by float noise: the rating model's multi-threaded training is not bit-reproducible
    (about 1e-8 on an RMSE), which a difference of two RMSEs (a fairness gap) turns into a larger relative one.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one run" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += _differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
        return [] if same else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_two_runs_published_separately(two_runs):
    root, _, (a, b), _ = two_runs
    assert a != b and a.parent == b.parent
    assert complete_runs(a.parent) == sorted([a, b])
    assert not list(a.parent.glob(".partial-*"))


def test_same_data_config_and_seed_give_identical_segments(two_runs):
    _, _, (a, b), _ = two_runs
    ra, rb = load_run(a), load_run(b)
    for name, x, y in (("users.parquet", ra.users, rb.users), ("segments.parquet", ra.segments, rb.segments)):
        assert x.columns == y.columns and x.height == y.height, f"{name}: columns or rows differ"
        differ = {c: [(p, q) for p, q in zip(x[c].to_list(), y[c].to_list()) if p != q][:2]
                  for c in x.columns if not x[c].equals(y[c])}  # fmt: skip
        assert not differ, f"{name} differs in {sorted(differ)}: {differ}"
    for name in ("users.npy", "items.npy", "user_ids.npy", "item_ids.npy"):
        assert np.array_equal(np.load(a / "embeddings" / name), np.load(b / "embeddings" / name)), name


def test_same_data_config_and_seed_give_identical_metrics(two_runs):
    _, _, (a, b), _ = two_runs
    diffs = _differences(_comparable(load_run(a).metrics), _comparable(load_run(b).metrics))
    assert not diffs, f"{len(diffs)} metrics differ between identical runs, e.g. " + "; ".join(sorted(diffs)[:8])


def test_nothing_written_outside_the_run_folders_and_the_caches(two_runs):
    root, files, (a, b), _ = two_runs
    allowed = [root / "data", root / "work" / "cache-a", root / "work" / "cache-b", a, b]
    stray = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == root / "work" / "runs" / "latest" or any(p == d or d in p.parents for d in allowed):
                continue
            if p in (root / "work", root / "work" / "runs") or any(p in d.parents for d in allowed):
                continue  # a parent of an allowed folder
            stray.append(str(p.relative_to(root)))
    assert stray == [], f"written outside the run folders and caches: {stray}"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["items.csv", "ratings.csv", "users.csv"]
    assert not (root / "default-cache").exists()


def test_file_names_in_a_run_are_plain(two_runs):
    _, _, (a, _), _ = two_runs
    for p in a.rglob("*"):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name), f"a file name built from data: {p.relative_to(a)}"
        assert not p.is_symlink()
        assert a in p.resolve().parents


def test_hostile_ids_survive_and_text_is_escaped(two_runs):
    _, files, (a, _), _ = two_runs
    ids = set(load_run(a).users["user_id"].to_list())
    expected = set(pl.read_csv(files["ratings"], infer_schema=False)["user_id"].to_list())
    assert ids == expected and {"..", "/", "."} <= ids  # ids are data, never paths: kept exactly
    html = "\n".join(p.read_text(encoding="utf-8") for p in (a / "report").rglob("*.html"))
    assert "<script>alert(" not in html and "<img src=x onerror" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "\\u003cscript\\u003ealert(1)" in html
    assert html.count("<script") == html.count("</script>"), "data text opened or closed a <script> block"
    for block in re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S):
        assert "<script>alert" not in block and "<img src=x" not in block, "raw HTML from data in a <script> block"


def test_repairs_are_reported_in_the_run(two_runs):
    _, _, (a, _), caught = two_runs
    notes = " | ".join(json.loads((a / "metrics.json").read_text())["data"]["notes"])
    assert "3 duplicate (user, item) rows; kept the latest of each" in notes
    assert "dropped 2 interactions with items missing" in notes
    assert "2 users have no ratings" in notes
    assert any("duplicate" in w for w in caught)
