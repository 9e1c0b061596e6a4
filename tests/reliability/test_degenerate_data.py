"""Degenerate but readable data, and bad data found fast: exit 0 with a run, or exit 2 with a message; never a traceback.

Regression tests of single bugs come first, then the checks ``segflow run``/``serve`` make before Prefect starts,
and last a property-based test over generated odd datasets through the real CLI.
"""

import csv
import importlib
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability_helpers import ROOT, run_env, write_base_files

from embeddings.encoder import Embeddings
from segmentation._errors import DataError, DataWarning
from segmentation.cluster import NOISE, Clusterer
from segmentation.config import ClusterConfig, DataConfig, ReduceConfig


def test_clusterer_without_any_segment_labels_everyone_an_outlier():
    """HDBSCAN finding no cluster (identical points) used to end in IndexError on the empty label mapping."""
    clusterer = Clusterer(15).fit(np.zeros((100, 5), np.float32))
    assert clusterer.n_segments_ == 0
    assert (clusterer.labels_ == NOISE).all() and clusterer.soft_.shape == (100, 0)
    with pytest.warns(UserWarning, match="does not have any defined clusters"):
        labels, strength = clusterer.predict(np.zeros((3, 5)))
    assert labels.tolist() == [NOISE] * 3 and strength.tolist() == [0.0] * 3


@pytest.mark.umap
def test_segment_stage_explains_users_that_cannot_be_told_apart():
    """The run's segmentation with no segment is bad data (every user the same), not a crash."""
    from segmentation.cluster import segment_users

    users = Embeddings(np.array([f"u{i}" for i in range(120)], dtype=object), np.full((120, 16), 0.25, np.float32), "m")
    with pytest.raises(DataError, match="all 120 users have the same user vector"):
        segment_users(users, ReduceConfig(), ClusterConfig(), seed=0)


# ---------------------------------------------------------------- through the CLI

# Settings that shrink a run's work without skipping a stage (the property test runs many whole runs).
FAST = ["evaluate.bootstrap=0", "evaluate.stability_seeds=0", "evaluate.stability_subsamples=0", "predictor.model='mf'",
        "predictor.mf.epochs=3", "predictor.per_segment.epochs=2", "predictor.per_segment.gate_bootstrap=50",
        "ranker.rankers=['most-popular']"]  # fmt: skip


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _cli(ratings: Path, items: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    args = [
        "run",
        "--ratings",
        str(ratings),
        "--items",
        str(items),
        "--output",
        str(out),
        "--set",
        f"cache_dir='{cache}'",
    ]
    for s in FAST:
        args += ["--set", s]
    return args + list(extra)


@pytest.fixture(scope="module", autouse=True)
def _prefect_logging_outside_capfd():
    """Set Prefect's logging up before any test's ``capfd`` is active. Prefect binds its console handler to the
    ``sys.stderr`` of the moment it sets up logging (on its first import, inside the first ``main`` call here when
    this file runs alone); ``capfd`` closes that stream after its test, and every later log line then printed a
    "Logging error" traceback into the next test's output."""
    importlib.import_module("flows.cli")  # first: it sets PREFECT_LOGGING_EXTRA_LOGGERS, as segflow does
    from prefect.logging.configuration import setup_logging

    setup_logging()


def _run(args: list[str], capfd) -> tuple[int, str]:
    from flows.cli import main

    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        code = main(args)
    captured = capfd.readouterr()
    return code, captured.out + captured.err


def _items(ids: list[str]) -> list[list]:
    return [[i, f"Film {i}", "Drama|Comedy"] for i in ids]


def test_all_ratings_on_one_item_is_explained_before_the_flow(tmp_path, capfd):
    """The reported bug: every user rated the one same item; it ended in IndexError from cluster.py, exit 1."""
    ratings = _write(tmp_path / "ratings.csv", ["user_id", "item_id", "rating", "timestamp"],
                     [[f"u{u}", "i0", 1 + u % 5, 1_600_000_000 + u] for u in range(300)])  # fmt: skip
    items = _write(tmp_path / "items.csv", ["item_id", "title", "categories"], _items(["i0", "i1", "i2"]))
    code, text = _run(_cli(ratings, items, tmp_path / "runs", tmp_path / "cache"), capfd)
    assert code == 2, text
    assert "Traceback" not in text
    assert f"segflow: error: ratings file {ratings}: all 300 interactions are with the one item 'i0'" in text
    assert "temporary server" not in text
    assert not (tmp_path / "runs").exists()


@pytest.mark.umap
@pytest.mark.usefixtures("prefect_harness")
def test_users_who_all_chose_the_same_items_and_the_data_is_read_once(tmp_path, capfd, monkeypatch):
    """Two items, every user rated both: (nearly) identical user vectors reach the segment stage, which explains
    that it found no segment (it raised IndexError before). Which users keep both items in train depends on the split.

    The flow's load stage takes the data the CLI checked (the files are unchanged): it does not read them again.
    """
    from segmentation import preflight

    reads = []
    real = preflight.load_dataset
    monkeypatch.setattr(preflight, "load_dataset", lambda *a, **k: reads.append(a) or real(*a, **k))
    rows = [[f"u{u}", i, 1 + (u + k) % 5, 1_600_000_000 + u] for u in range(80) for k, i in enumerate(("i0", "i1"))]
    ratings = _write(tmp_path / "ratings.csv", ["user_id", "item_id", "rating", "timestamp"], rows)
    items = _write(tmp_path / "items.csv", ["item_id", "title", "categories"], _items(["i0", "i1"]))
    code, text = _run(_cli(ratings, items, tmp_path / "runs", tmp_path / "cache", "--set", "represent.method='item-mean'"),
                      capfd)  # fmt: skip
    assert code == 2, text
    assert "Traceback" not in text
    assert re.search(
        r"segflow: error: cluster: (all \d+ users have the same user vector|HDBSCAN found no segment)", text
    )
    assert f"(data: ratings file {ratings}, items file {items})" in text
    assert len(reads) == 1, "the data files were read again after the CLI's check (the flow's load stage read them)"


def _child(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``segflow ARGS`` in a fresh process that reports which heavy packages it imported."""
    code = ("import sys\nfrom flows.cli import main\nrc = main(sys.argv[1:])\n"
            "print('IMPORTED', sorted(m for m in ('prefect', 'torch', 'sentence_transformers', 'transformers', 'umap')"
            " if m in sys.modules), file=sys.stderr)\nsys.exit(rc)")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=run_env(tmp_path), capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("command", ["run", "serve"])
def test_bad_data_is_found_before_prefect_is_imported(command, tmp_path):
    """``segflow run`` and ``serve`` read and check the data before they import Prefect, torch or the encoder.

    (serve used to say only that PREFECT_API_URL is unset; run found the bad row inside the flow, 20-40 s later.)
    """
    files = write_base_files(tmp_path)
    with files["ratings"].open("a") as f:
        f.write("u1,i3,five,1600000000\n")
    proc = _child(tmp_path, command, "--ratings", str(files["ratings"]), "--items", str(files["items"]), "--output",
                  str(tmp_path / "runs"), "--set", f"cache_dir='{tmp_path / 'cache'}'")  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"segflow: error: ratings file {files['ratings']}, column 'rating': expected numbers; row 321" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "IMPORTED []" in proc.stderr


def test_checked_data_is_handed_over_once_and_only_while_the_files_are_unchanged(tmp_path):
    from segmentation.config import PipelineConfig
    from segmentation.preflight import check_before_run, checked_dataset

    files = write_base_files(tmp_path)
    data = DataConfig(source="files", ratings=files["ratings"], items=files["items"])
    config = PipelineConfig(data=data, output_dir=tmp_path / "runs", cache_dir=tmp_path / "cache")
    cache = tmp_path / "cache"
    dataset = check_before_run(config)
    assert checked_dataset(data, cache) is dataset
    assert checked_dataset(data, cache) is None, "handed over once, then dropped"

    check_before_run(config)
    assert checked_dataset(data.model_copy(update={"max_users": 10}), cache) is None, "other settings: read again"

    check_before_run(config)
    st = files["items"].stat()
    os.utime(files["items"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the export was rewritten
    assert checked_dataset(data, cache) is None

    check_before_run(config, keep=False)
    assert checked_dataset(data, cache) is None


def test_rating_evaluation_leaves_test_users_without_a_segment_out_of_the_segment_figures():
    """A test user with no train rows has no segment; evaluate_ratings indexed with a null mask (IndexError)."""
    import polars as pl

    from segmentation.evaluate import evaluate_ratings

    test = pl.DataFrame(
        {"user_id": ["a", "a", "b", "c"], "item_id": ["i", "j", "i", "j"], "rating": [4.0, 2.0, 5.0, 3.0]}
    )
    groups = pl.DataFrame(
        {"user_id": ["a", "b"], "segment_id": [0, 1]}, schema={"user_id": pl.String, "segment_id": pl.Int32}
    )
    res = evaluate_ratings(test, {"global": np.array([3.5, 2.5, 4.0, 3.0])}, groups, n_boot=0)["global"]
    assert res["n"] == 4 and set(res["per_segment"]) == {"0", "1"}
    assert res["per_segment"]["0"]["n"] == 2 and res["per_segment"]["1"]["n"] == 1


# ---------------------------------------------------------------- property: odd datasets never crash

ID_STYLES = {
    "plain": lambda p, i: f"{p}{i}",
    "numeric": lambda p, i: str(i),
    "negative": lambda p, i: str(-i),
    "zero-padded": lambda p, i: f"{i:04d}" if i % 2 else str(i),  # '0001' and '1' are two ids
    "unicode": lambda p, i: f"{'üΩ用😀'[i % 4]}{p}{i}",
    "spaces": lambda p, i: f" {p}{i // 2} " if i % 2 else f"{p}{i // 2}",  # collide once whitespace is stripped
}
TIMES = {
    "epoch": lambda k: str(1_600_000_000 + 3600 * k),
    "zero": lambda k: "0",
    "negative": lambda k: str(-1_000_000_000 - k),
    "far-future": lambda k: str(32_503_680_000 + k),  # year 3000
    "iso-date": lambda k: f"20{10 + k % 10}-0{1 + k % 9}-1{k % 10}",
    "iso-datetime": lambda k: f"1969-12-31T23:59:{k % 60:02d}",
    "mixed": lambda k: str(1_600_000_000 + k) if k % 2 else "2021-03-04",
    "float-seconds": lambda k: f"{1_600_000_000 + k}.5",
    "int64-edges": lambda k: ["-9223372036854775808", "1e18", "-1e18", "9223372036854775000"][k % 4],
    "not-finite": lambda k: ["1e300", "nan", "inf", str(1_600_000_000 + k)][k % 4],
}
RATINGS = {
    "constant": lambda r: 4,
    "stars": lambda r: 1 + r.integers(0, 5),
    "half-stars": lambda r: 0.5 * r.integers(1, 11),
    "zeros": lambda r: 0,
    "counts": lambda r: int(r.integers(1, 10_000)),
    "huge": lambda r: 10.0 ** int(r.integers(6, 300)),
}


@st.composite
def odd_datasets(draw):
    """Small data sets with the oddities exports have: few users or items, taste groups or none, odd ids/times."""
    return {
        "n_users": draw(st.integers(1, 90)),
        "n_items": draw(st.integers(1, 12)),
        "groups": draw(st.integers(1, 3)),
        "per_user": draw(st.integers(1, 6)),
        "user_ids": draw(st.sampled_from(sorted(ID_STYLES))),
        "item_ids": draw(st.sampled_from(sorted(ID_STYLES))),
        "times": draw(st.sampled_from(sorted(TIMES))),
        "ratings": draw(st.sampled_from(sorted(RATINGS))),
        "duplicates": draw(st.booleans()),
        "implicit": draw(st.booleans()),
        "seed": draw(st.integers(0, 1000)),
    }


def write_dataset(spec: dict, folder: Path) -> tuple[Path, Path, list[str]]:
    """The CSV files of ``spec``: users of group g choose items of block g; returns extra CLI arguments."""
    rng = np.random.default_rng(spec["seed"])
    uid, iid = ID_STYLES[spec["user_ids"]], ID_STYLES[spec["item_ids"]]
    n_items, groups = spec["n_items"], spec["groups"]
    blocks = [b for b in np.array_split(np.arange(n_items), groups) if len(b)] or [np.arange(n_items)]
    rows = []
    for u in range(spec["n_users"]):
        block = blocks[u % len(blocks)]
        chosen = rng.choice(block, min(spec["per_user"], len(block)), replace=False)
        for j in chosen:
            rows.append([uid("u", u), iid("i", int(j)), RATINGS[spec["ratings"]](rng), TIMES[spec["times"]](len(rows))])
    if spec["duplicates"]:
        rows += [list(r) for r in rows[: max(1, len(rows) // 4)]]
    item_ids = list(dict.fromkeys(iid("i", j) for j in range(n_items)))
    ratings = _write(folder / "ratings.csv", ["user_id", "item_id", "rating", "timestamp"], rows)
    items = _write(folder / "items.csv", ["item_id", "title", "categories"],
                   [[i, f"Film {i} (19{70 + k % 30})", ["Drama", "Comedy|Action", "Horror"][k % groups]]
                    for k, i in enumerate(item_ids)])  # fmt: skip
    return ratings, items, (["--rating-col", ""] if spec["implicit"] else [])


@pytest.fixture(scope="module")
def property_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("property-cache")


PLAIN = {"n_users": 60, "n_items": 1, "groups": 1, "per_user": 1, "user_ids": "plain", "item_ids": "plain",
         "times": "epoch", "ratings": "stars", "duplicates": False, "implicit": False, "seed": 0}  # fmt: skip


@pytest.mark.umap
@pytest.mark.usefixtures("prefect_harness")
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@example(spec=PLAIN)  # every user on the same single item: IndexError in cluster.py
@example(spec={**PLAIN, "n_items": 12, "groups": 3, "per_user": 2})  # test users without a segment: evaluate.py
@example(spec={**PLAIN, "n_items": 12, "groups": 3, "per_user": 2, "times": "not-finite"})  # polars cast error
@example(spec={**PLAIN, "n_users": 71, "n_items": 6, "per_user": 4, "user_ids": "unicode", "ratings": "huge",
               "seed": 61})  # ratings of 1e300: NaN predictions, ValueError in evaluate  # fmt: skip
@given(spec=odd_datasets())
def test_odd_data_completes_or_is_explained(spec, capfd, property_cache):
    """Every generated data set either completes (exit 0, a run published) or exits 2 with one message.

    Never exit 1, never a traceback (an exception out of ``main`` fails the test with its traceback). The runs
    go through ``flows.cli.main`` in this process (UMAP's numba compilation happens once) with the FAST
    settings above: no bootstrap, no stability refits (that stage records it skipped them), a 3-epoch MF
    predictor and the most-popular ranker; every other stage runs in full. At most 25 generated examples (plus
    the explicit ones) keep it under two minutes: 65 s alone, numba compilation included, plus 24 s for the
    Prefect harness, at load average 11 on 2 cores (13 s for 15 + 4 once UMAP was compiled by another test).
    """
    with tempfile.TemporaryDirectory(prefix="segflow-odd-") as tmp:
        folder = Path(tmp)
        ratings, items, extra = write_dataset(spec, folder)
        out = folder / "runs"
        code, text = _run(_cli(ratings, items, out, property_cache, *extra), capfd)
        assert "Traceback" not in text, text[-3000:]
        assert code in (0, 2), text[-3000:]
        if code == 0:
            from segmentation.runs import load_run

            load_run(out / "latest")
            assert not list(out.glob(".partial-*"))
        else:
            assert "segflow: error: " in text and "Nothing was published" in text, text[-3000:]
            assert not (out / "latest").exists()
