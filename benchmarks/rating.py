"""Rating prediction on MovieLens 100k: segflow's predictors side by side with tuned scikit-surprise SVD.

    python benchmarks/rating.py [--splits random90 random80 temporal] [--repeats 1] [--segments auto|kmeans]
                                [--svd-grid full|small] [--quick]

For each split (BENCHMARK_PROTOCOL.md) one process runs:

- ``global-mean`` and ``biases`` (damped alternating means, surprise's BaselineOnly);
- ``surprise-svd-tuned``: scikit-surprise SVD, chosen by 3-fold CV on train (train + valid rows) over
  n_factors {100, 200} x n_epochs {30, 50} x lr_all {0.005, 0.01} x reg_all {0.05, 0.1}, refitted on train;
- ``segflow-mf``: the biased MF (``model = "mf"``, early-stopped, no refit);
- ``segflow-global``: the default ``PredictorConfig`` (the blend, refitted on train + valid), plus each of
  its components alone (``segflow-global/<component>``, the refitted component's own predictions);
- ablations of the hybrid SVD++: without the item text embeddings, and without the time-aware biases;
- ``segflow-segmented`` (and ``segflow-segmented-mf``): per-segment fine-tuning behind the validation
  gate, with a paired user-bootstrap 95 % CI of its test RMSE change against the global model;
- ``segflow-random-partition`` (and ``-mf``): the control, the same procedure on a random partition of
  the users with the segments' sizes (does the segmentation itself carry any gain?).

Segments come from the real pipeline (item-mean user vectors -> UMAP -> HDBSCAN, nearest segment for
outliers, as the flow's fine-tuning stage does) when it imports and runs, else from k-means (k=8, seed 0) on
the mean item-embedding user vectors. Test rows are read only to score. Writes
``benchmarks/results/rating.json`` (a list of rows with system, split, rmse, mae, seconds, ...) and prints
a table. Timings are wall seconds on a shared machine: with ``--repeats N`` the segflow global fits run
N times and ``seconds`` is the minimum (``seconds_median`` beside it); each row records the 1-minute load
average when it finished (``load_avg_1min``; 2 cores), so crowded timings can be told apart.
"""

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embeddings.encoder import Embeddings  # noqa: E402
from segmentation._predict_components import baseline_biases  # noqa: E402
from segmentation._predict_mf import Ratings  # noqa: E402
from segmentation.config import PredictorConfig  # noqa: E402
from segmentation.data import Split, Vocab, load_movielens_100k, split_ratings  # noqa: E402
from segmentation.evaluate import mae, rmse  # noqa: E402
from segmentation.predict import fit_global_predictor, fit_segment_predictors, paired_bootstrap_ci, random_partition  # noqa: E402

logger = logging.getLogger("benchmarks.rating")

SVD_GRID = {
    "full": {"n_factors": [100, 200], "n_epochs": [30, 50], "lr_all": [0.005, 0.01], "reg_all": [0.05, 0.1]},
    "small": {"n_factors": [100, 200], "n_epochs": [40], "lr_all": [0.005], "reg_all": [0.05, 0.1]},
}


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    pred = np.clip(pred, 1.0, 5.0)
    return {"rmse": round(rmse(y, pred), 4), "mae": round(mae(y, pred), 4)}


def item_embeddings(items: pl.DataFrame) -> Embeddings:
    """MiniLM embeddings of one description per item (cached on disk by text hash)."""
    from embeddings.encoder import Encoder

    try:
        from embeddings.text import describe_items

        texts = describe_items(items)["description"].to_list()
    except ImportError:  # the lead's text module not there: title (year). Genres: ...
        texts = [
            f"{t} ({y}). Genres: {', '.join(c)}" for t, y, c in items.select("title", "year", "categories").iter_rows()
        ]
    vectors = Encoder("all-MiniLM-L6-v2", cache_dir=Path.home() / ".cache/segflow/embeddings").encode(texts)
    return Embeddings(items["item_id"].to_numpy().astype(object), np.asarray(vectors, np.float32), "all-MiniLM-L6-v2")


def segments_for(
    split: Split, items: pl.DataFrame, emb: Embeddings, how: str, seed: int = 0
) -> tuple[pl.DataFrame, str]:
    """user_id, segment_id for the predictors (outliers get their nearest segment, as the pipeline does)."""
    train = split.train_full
    if how == "auto":
        try:
            from segmentation.cluster import fit_segments
            from segmentation.config import PipelineConfig
            from segmentation.represent import build_user_vectors

            cfg = PipelineConfig()
            users = build_user_vectors(train, emb, method=cfg.represent.method, items=items, seed=seed)
            seg = fit_segments(users, cfg.reduce, cfg.cluster, seed=seed)
            frame = seg.assignments.select("user_id", pl.col("nearest_segment").alias("segment_id"))
            return frame, f"pipeline ({cfg.represent.method} + UMAP + HDBSCAN, {seg.n_segments} segments)"
        except Exception as err:  # noqa: BLE001 - any failure of the young pipeline falls back, and says so
            logger.warning("segment pipeline failed (%s: %s); using k-means", type(err).__name__, err)
    from sklearn.cluster import KMeans

    pos = emb.index_of()
    grouped = train.group_by("user_id", maintain_order=True).agg("item_id").sort("user_id")
    vectors = np.stack([emb.vectors[[pos[i] for i in its]].mean(axis=0) for its in grouped["item_id"].to_list()])
    labels = KMeans(8, n_init=10, random_state=seed).fit_predict(vectors)
    return pl.DataFrame(
        {"user_id": grouped["user_id"], "segment_id": labels.astype(np.int32)}
    ), "k-means (k=8) on item-mean vectors"


def surprise_svd(split: Split, grid: dict, seed: int = 0) -> tuple[np.ndarray, dict, float]:
    """Tuned SVD: GridSearchCV (3-fold, RMSE) on train + valid, best refitted there, test predicted."""
    from surprise import SVD, Dataset, Reader
    from surprise.model_selection import GridSearchCV

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.tsv"
        split.train_full.select("user_id", "item_id", "rating").write_csv(path, separator="\t", include_header=False)
        data = Dataset.load_from_file(str(path), Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5)))
    search = GridSearchCV(SVD, {**grid, "random_state": [seed]}, measures=["rmse"], cv=3, n_jobs=1)
    search.fit(data)
    best = search.best_params["rmse"]
    algo = SVD(**best).fit(data.build_full_trainset())
    pred = np.array([algo.predict(u, i).est for u, i in split.test.select("user_id", "item_id").iter_rows()])
    return pred, {k: v for k, v in best.items() if k != "random_state"}, time.perf_counter() - t0


def biases(split: Split) -> np.ndarray:
    train = split.train_full
    uv, iv = Vocab.from_ids(train["user_id"].unique()), Vocab.from_ids(train["item_id"].unique())
    r = Ratings(uv.lookup(train["user_id"]), iv.lookup(train["item_id"]), train["rating"].to_numpy())
    mu, bu, bi = baseline_biases(r, len(uv), len(iv))
    u, i = uv.lookup(split.test["user_id"], missing=-1), iv.lookup(split.test["item_id"], missing=-1)
    return mu + np.where(u >= 0, bu[np.maximum(u, 0)], 0.0) + np.where(i >= 0, bi[np.maximum(i, 0)], 0.0)


def timed(fn, repeats: int):  # noqa: ANN001, ANN201
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), statistics.median(times)


def run_split(name: str, ds, emb: Embeddings, args: argparse.Namespace) -> list[dict]:  # noqa: ANN001
    split = split_ratings(ds.interactions, name)
    y = split.test["rating"].to_numpy()
    users = split.test["user_id"].to_numpy()
    rows: list[dict] = []

    def add(system: str, pred: np.ndarray, seconds: float, **extra: object) -> None:
        row = {"system": system, "split": name, **scores(y, pred), "seconds": round(seconds, 2), **extra,
               "load_avg_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
        rows.append(row)
        logger.info("%-34s %-9s RMSE %.4f  MAE %.4f  %6.1f s", system, name, row["rmse"], row["mae"], seconds)

    mean = split.train_full["rating"].mean()
    add("global-mean", np.full(len(y), mean), 0.0)
    t0 = time.perf_counter()
    add("biases", biases(split), time.perf_counter() - t0)

    if not args.skip_surprise:
        pred, best, secs = surprise_svd(split, SVD_GRID[args.svd_grid])
        add("surprise-svd-tuned", pred, secs, params=best, grid=args.svd_grid)

    cfg = PredictorConfig()
    mf_cfg = PredictorConfig(model="mf", refit=False)
    mf, s_min, s_med = timed(lambda: fit_global_predictor(split, mf_cfg, item_embeddings=emb, seed=0), args.repeats)
    p_mf = mf.predict(split.test)
    add("segflow-mf", p_mf, s_min, seconds_median=round(s_med, 2), valid_rmse=round(mf.valid_rmse_["model"], 4))

    model, s_min, s_med = timed(lambda: fit_global_predictor(split, cfg, item_embeddings=emb, seed=0), args.repeats)
    p_global = model.predict(split.test)
    enc = model._encode(split.test)
    add("segflow-global", p_global, s_min, seconds_median=round(s_med, 2), model=cfg.model,
        components=model.component_names, weights=[round(w, 4) for w in model.weights_.tolist()],
        valid_rmse=round(model.valid_rmse_["model"], 4))  # fmt: skip
    for comp in model.components_:
        add(f"segflow-global/{comp.name}", comp.predict(enc.users, enc.items, enc.times), 0.0,
            valid_rmse=round(model.valid_rmse_[comp.name], 4), note="component of the blend, refitted; time in the blend's")  # fmt: skip
    if not args.quick:
        for label, update in (("segflow-svdpp-no-text", {"side_features": False}),
                              ("segflow-svdpp-no-time", {"time_bins": 0, "user_day_bias": False}),
                              ("segflow-svdpp", {})):  # fmt: skip
            c = cfg.model_copy(update={"model": "svdpp", "svdpp": cfg.svdpp.model_copy(update=update)})
            m, s_min, _ = timed(lambda c=c: fit_global_predictor(split, c, item_embeddings=emb, seed=0), 1)
            add(label, m.predict(split.test), s_min, valid_rmse=round(m.valid_rmse_["model"], 4))

    t0 = time.perf_counter()
    assignments, how = segments_for(split, ds.items, emb, args.segments)
    seg_seconds = time.perf_counter() - t0
    # the control: the same fine-tuning and gate on random partitions with the segments' sizes
    control = random_partition(assignments, seed=0)
    for label, g, c, parts in (("segflow-segmented", model, cfg, assignments),
                               ("segflow-segmented-mf", mf, mf_cfg, assignments),
                               ("segflow-random-partition", model, cfg, control),
                               ("segflow-random-partition-mf", mf, mf_cfg, control)):  # fmt: skip
        t0 = time.perf_counter()
        seg = fit_segment_predictors(g, split, parts, c, seed=0)
        secs = time.perf_counter() - t0
        p_seg = seg.predict(split.test)
        p_ref = p_global if g is model else p_mf
        diff, lo, hi = paired_bootstrap_ci(y, p_ref, p_seg, users, n_boot=1000, seed=0)
        add(label, p_seg, secs, segments=how if parts is assignments else f"random partition of the sizes of {how}",
            segmentation_seconds=round(seg_seconds, 1),
            n_segments=seg.report_.height, kept=int(seg.report_["kept"].sum()),
            strategies_kept=sorted(set(seg.report_.filter(pl.col("kept"))["strategy"].to_list())),
            rmse_change_vs_global=round(diff, 5), ci95=[round(lo, 5), round(hi, 5)],
            note="seconds: fine-tuning only; the global model's fit is in its own row")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["random90", "random80", "temporal"])
    parser.add_argument("--repeats", type=int, default=1, help="runs of the segflow global fits (timings: min, median)")
    parser.add_argument("--segments", choices=["auto", "kmeans"], default="auto")
    parser.add_argument("--svd-grid", choices=sorted(SVD_GRID), default="full")
    parser.add_argument("--skip-surprise", action="store_true")
    parser.add_argument("--quick", action="store_true", help="no single-model ablations")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rating.json")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of --out that this run does not redo (same system and split are replaced)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("segmentation", "embeddings", "numba", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)

    ds = load_movielens_100k()
    emb = item_embeddings(ds.items)
    rows: list[dict] = []
    for name in args.splits:
        rows.extend(run_split(name, ds, emb, args))
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "command": " ".join(["python", "benchmarks/rating.py", *sys.argv[1:]])}  # fmt: skip
    for row in rows:
        row.update(meta)
    if args.merge and args.out.exists():
        redone = {(r["system"], r["split"]) for r in rows}
        kept = [r for r in json.loads(args.out.read_text(encoding="utf-8")) if (r["system"], r["split"]) not in redone]
        order = {name: i for i, name in enumerate(["random90", "random80", "temporal"])}
        rows = sorted(kept + rows, key=lambda r: order.get(r["split"], 9))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'system':34s} {'split':9s} {'RMSE':>7s} {'MAE':>7s} {'seconds':>8s}  notes")
    for r in rows:
        notes = []
        if "ci95" in r:
            notes.append(f"kept {r['kept']}/{r['n_segments']}, change {r['rmse_change_vs_global']:+.4f} "
                         f"CI [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")  # fmt: skip
        if "params" in r:
            notes.append(str(r["params"]))
        if "valid_rmse" in r:
            notes.append(f"valid {r['valid_rmse']}")
        print(
            f"{r['system']:34s} {r['split']:9s} {r['rmse']:7.4f} {r['mae']:7.4f} {r['seconds']:8.1f}  {'; '.join(notes)}"
        )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
