"""The margin on the outlier share (``cluster.max_extra_outlier_share``), chosen on the tuning worlds' candidates.

The finest-stable rule (:func:`segmentation.selection.finest_stable`) reads each candidate's stability with the
outliers as one more label; with a margin ``m``, only the candidates (with ``min_segments..max_segments`` segments)
whose outlier share is at most the least such share plus ``m`` are eligible (:func:`segmentation.selection.
outlier_margin`). This script applies each margin of :data:`MARGINS` to recorded candidates and prints the ARI of
the candidate each run would take, per run and as mean and minimum. Two sources, tuning worlds only (taste, style,
light; held-out rows are skipped, never read):

1. ``--candidates``: rows of ``segmentation.py --world-candidates`` (library path, 3,000 users), the centred
   default representation: every candidate's ARI on the segment users (``ari_excl_noise``) and, where recorded, on
   all users with the noise as one more label (``ari``).
2. ``--cli-workdir``: the run folders of ``segmentation.py --worlds-cli`` (10,000 users). Each run's
   ``metrics.json`` holds the candidates; its ``users.parquet`` scored against the world's ``labels.csv`` gives the
   ARI of the whole CLI run (outlier rules included) that chose its candidate. A margin whose pick no run chose
   prints ``?`` (run that world and seed through the CLI with that margin to fill it in).

``python benchmarks/outlier_margin.py`` (seconds; no UMAP).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before benchmarks/, whose segmentation.py would hide the package

from segmentation.config import ClusterConfig  # noqa: E402
from segmentation.selection import Candidate, finest_stable, outlier_margin  # noqa: E402

MARGINS = (None, 0.0, 0.01, 0.02, 0.03, 0.036, 0.04, 0.05, 0.06, 0.08, 0.09, 0.1, 0.15, 0.2)
TUNING = ("taste", "style", "light")


def _candidate(c: dict, cc: ClusterConfig) -> Candidate:
    # runs of the fifth round stored the clustered stability as "stability" and the rule's as "stability_with_noise";
    # eligibility is recomputed from the segment bounds (a run under the margin stored its own margin in "eligible")
    return Candidate(c["min_cluster_size"], c["cluster_selection_method"], c["n_segments"], c["noise_share"],
                     c["dbcv"], c.get("stability_with_noise", c["stability"]), c["score"],
                     cc.min_segments <= c["n_segments"] <= cc.max_segments)  # fmt: skip


def pick(cands: list[Candidate], margin: float | None) -> Candidate:
    """The candidate the finest-stable rule takes under ``margin`` (None: no margin)."""
    return finest_stable([c for c in outlier_margin(cands, margin) if c.eligible])


def _key(c: Candidate | dict) -> tuple[int, str]:
    if isinstance(c, dict):
        return c["min_cluster_size"], c["cluster_selection_method"]
    return c.min_cluster_size, c.cluster_selection_method


def library_runs(path: Path, cc: ClusterConfig) -> dict[str, tuple[list[Candidate], dict]]:
    """(world seed) -> (candidates, {candidate key: ARI}) from ``--world-candidates`` rows (centred only)."""
    out = {}
    for r in json.loads(path.read_text()):
        world = r["data"].removeprefix("world:")
        if world not in TUNING or not r.get("centre"):
            continue
        aris = {_key(c): (c.get("ari"), c["ari_excl_noise"]) for c in r["candidates"]}
        out[f"{world} {r['seed']}"] = ([_candidate(c, cc) for c in r["candidates"]], aris)
    return out


def cli_runs(workdir: Path, cc: ClusterConfig) -> dict[str, tuple[list[Candidate], dict]]:
    """(world seed) -> (candidates, {chosen candidate key: the CLI run's ARI}) from ``--worlds-cli`` run folders."""
    out = {}
    for world in TUNING:
        for folder in sorted(workdir.glob(f"cli-{world}-10000-*")):
            labels = folder / "data" / "labels.csv"
            if not labels.is_file():
                continue
            truth = pl.read_csv(labels, schema_overrides={"user_id": pl.Utf8})
            cands: list[Candidate] = []
            aris: dict = {}
            for metrics in sorted(folder.glob("runs/2*/metrics.json")):
                sel = json.loads(metrics.read_text())["segmentation"]["selection"]
                users = metrics.parent / "users.parquet"
                if not users.is_file():
                    continue
                found = truth.join(pl.read_parquet(users).select(pl.col("user_id").cast(pl.Utf8), "segment_id"),
                                   on="user_id")  # fmt: skip
                ari = float(adjusted_rand_score(found["segment"].to_numpy(), found["segment_id"].to_numpy()))
                cands = cands or [_candidate(c, cc) for c in sel["candidates"]]
                aris[_key(sel["chosen"])] = (ari, None)
            if cands:
                out[f"{world} {folder.name.rsplit('-', 1)[1]}"] = (cands, aris)
    return out


def table(runs: dict[str, tuple[list[Candidate], dict]], title: str, which: int) -> None:
    names = sorted(runs, key=lambda k: (TUNING.index(k.split()[0]), k))
    print(f"\n{title}\n| margin | ARI mean | ARI min | " + " | ".join(names) + " |")
    print("| --- | ---: | ---: |" + " --- |" * len(names))
    for m in MARGINS:
        cells, vals = [], []
        for name in names:
            cands, aris = runs[name]
            c = pick(cands, m)
            a = aris.get(_key(c), (None, None))[which]
            vals.append(a)
            cells.append(f"{c.min_cluster_size}{c.cluster_selection_method[0]} k{c.n_segments} "
                         f"{c.noise_share:.1%} {'?' if a is None else f'{a:.3f}'}")  # fmt: skip
        known = [v for v in vals if v is not None]
        mean = f"{np.mean(known):.3f}" if len(known) == len(vals) else f"({len(known)}/{len(vals)})"
        low = f"{min(known):.3f}" if known else "?"
        print(f"| {'off' if m is None else m} | {mean} | {low} | " + " | ".join(cells) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", type=Path, default=ROOT / "benchmarks/results/segmentation_candidates_outliers.json")
    p.add_argument("--cli-workdir", type=Path, default=Path("/tmp/segflow-bench"))
    args = p.parse_args()
    cc = ClusterConfig()
    lib = library_runs(args.candidates, cc)
    if any(a[0] is not None for _, aris in lib.values() for a in aris.values()):
        table(lib, f"library path, {args.candidates.name}: ARI on all users (noise one more label)", 0)
    table(lib, f"library path, {args.candidates.name}: ARI on the segment users", 1)
    if args.cli_workdir.is_dir():
        table(cli_runs(args.cli_workdir, cc), f"CLI runs in {args.cli_workdir} (10,000 users): the run's ARI", 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
