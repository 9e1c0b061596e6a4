"""Where segments pay (issue 16): cold start with segment priors, and segments whose behaviour differs.

    python benchmarks/cold_start.py [--data ml100k planted] [--ks 1 3 5 10] [--quick] [--part cold behaviour]

Protocol (``--part cold``), on MovieLens 100k and on planted data (:func:`planted_segment_behaviour`,
segments that differ in rating style and single-item taste):

1. ``random90`` (BENCHMARK_PROTOCOL.md) gives train (train + valid rows) and test. 20 % of the users
   (seed 0) are *new*: each keeps only its first ``k`` train rows (by timestamp, then item id); its other
   train rows and its test rows are scored. Every other (*warm*) user keeps all its train rows and is
   scored on its test rows.
2. Segments come from the warm users only (the pipeline's default representation, UMAP + HDBSCAN,
   nearest segment for outliers); a new user gets a segment by the similarity-weighted vote of its 15
   nearest warm users (:func:`segmentation.cluster.assign_by_neighbours`), its vector built from its ``k``
   rows alone. The control reassigns the warm users to random segments of the same sizes.
3. Systems, all fitted on the cold train: ``global`` (biased MF, ``model = "mf"``, early-stopped on a 10 %
   carve of the warm users' rows, for ratings; EASE, lambda 300, for top-10), ``popularity`` (damped item
   mean; most popular), ``global-prior`` (new users' MF parameters re-solved toward the mean of all warm
   users; EASE blended with overall popularity), ``segment-aware`` (re-solved toward their segment's mean;
   EASE blended with the segment's popularity), ``segment-aware-fit`` (the same, the segment chosen as the
   one whose prior best predicts the user's k ratings), ``random-partition`` (the same with the control's segments),
   and ``segment-aware-gated`` (each of its two parts used only where the validation gate passed, else the
   global one).
4. Validation, for the prior strength ``reg``, the blend weight ``alpha`` and the gate, is simulated inside
   the cold train: 20 % of the warm users (seed 1) are cut to their first ``k`` rows, a model is fitted
   without their other rows, and those rows are the validation set. The gate passes when the paired
   user-bootstrap 95 % interval of the validation change (RMSE, NDCG@10) excludes zero in the good
   direction. Test rows are read only to score.

``--part behaviour`` (item 3): planted segment-specific behaviour, ``random90``, a global MF
(``model = "mf"``, no refit), then :func:`fit_segment_predictors` with the true segments and with a
random partition of the same sizes; reports segments kept (true positives) and the gate's diagnostics.

Writes ``benchmarks/results/cold_start.json``: rows with data, k, system, population, n_users, rmse,
ndcg@10, and the change against ``global`` (and against ``global-prior``) with paired user-bootstrap
95 % CIs. Full run about 16 min on 2 shared cores (behaviour 2.5 min, cold start 13.5 min).
"""

import argparse
import json
import logging
import platform
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embeddings.encoder import Embeddings  # noqa: E402
from segmentation.cluster import fit_segments  # noqa: E402
from segmentation.coldstart import (  # noqa: E402
    SegmentPriorPredictor,
    cold_start_split,
    fit_cold_model,
    fit_prior_predictor,
    mean_diff_ci,
    ndcg_per_user,
    pick_new_users,
    place_users,
    planted_segment_behaviour,
    segment_popularity_scores,
    warm_priors,
)
from segmentation.config import PipelineConfig, PredictorConfig  # noqa: E402
from segmentation.data import Vocab, load_movielens_100k, split_ratings  # noqa: E402
from segmentation.evaluate import rmse  # noqa: E402
from segmentation.predict import fit_global_predictor, fit_segment_predictors, paired_bootstrap_ci, random_partition  # noqa: E402
from segmentation.rank.base import zscore  # noqa: E402
from segmentation.rank.ease import ease_weights  # noqa: E402
from segmentation.represent import DEFAULT_METHOD, build_user_vectors  # noqa: E402

logger = logging.getLogger("benchmarks.cold_start")

NEW_FRACTION = 0.2
THRESHOLD = 4.0
EASE_REG = 300.0  # chosen on validation in benchmarks/ranking.py (BENCHMARK_PROTOCOL.md)
REG_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
ALPHA_GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 0.9, 1.0)
SYSTEMS = ("global-prior", "segment-aware", "segment-aware-fit", "random-partition")
MF = PredictorConfig(model="mf", refit=False, threads=2)


def r5(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 5)


# ------------------------------------------------------------------------------------------------ data


def load(name: str, quick: bool, n_users: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """(interactions, items, truth or None)."""
    ds = load_movielens_100k()
    if name == "ml100k":
        return ds.interactions, ds.items, None
    counts = ds.interactions.group_by("item_id").len()
    pop = ds.items.join(counts, on="item_id", how="left")["len"].fill_null(0).to_numpy() + 1.0
    planted, _ = planted_segment_behaviour(ds.items, n_users or (1200 if quick else 2500), rng=np.random.default_rng(0),
                                           item_popularity=pop)  # fmt: skip
    return planted.interactions, ds.items, planted.truth


class Segments:
    """Segments of warm users and a vote that places users from a few rows."""

    def __init__(self, warm_rows: pl.DataFrame, items: pl.DataFrame, emb, seed: int = 0) -> None:  # noqa: ANN001
        cfg = PipelineConfig()
        self.items, self.emb = items, emb
        users = build_user_vectors(warm_rows, emb, method=DEFAULT_METHOD, items=items, seed=seed)
        seg = fit_segments(users, cfg.reduce, cfg.cluster, seed=seed, picture=False)
        self.n_segments = seg.n_segments
        self.assign = seg.assignments.select("user_id", "nearest_segment")
        self.vectors = users
        ctrl = random_partition(self.assign.rename({"nearest_segment": "segment_id"}), seed=seed)
        self.control = ctrl.rename({"segment_id": "nearest_segment"})

    def place(self, rows: pl.DataFrame, exclude: list[str], control: bool = False) -> dict[str, int]:
        """Segment of each user of ``rows`` from those rows, by a vote of warm users not in ``exclude``."""
        q = build_user_vectors(rows, self.emb, method=DEFAULT_METHOD, items=self.items)
        keep = ~np.isin(self.vectors.ids.astype(str), exclude)
        both = Embeddings(np.concatenate([self.vectors.ids[keep], q.ids]),
                          np.vstack([self.vectors.vectors[keep], q.vectors]), q.model)  # fmt: skip
        return place_users(both, self.labels(control), set(q.ids.astype(str).tolist()))

    def labels(self, control: bool = False) -> dict[str, int]:
        f = self.control if control else self.assign
        return dict(zip(f["user_id"].to_list(), f["nearest_segment"].to_list()))


# ------------------------------------------------------------------------------------------------ one fold


class Fold:
    """A cold train and its scored rows: fits the model and scores every system on the new users."""

    def __init__(self, train: pl.DataFrame, scored: pl.DataFrame, new_users: list[str], segs: Segments, emb) -> None:  # noqa: ANN001
        self.train, self.scored, self.new = train, scored, new_users
        self.model = fit_cold_model(train, new_users, MF, item_embeddings=emb)
        new_rows = train.filter(pl.col("user_id").is_in(new_users))
        self.new_rows = new_rows
        self.place = {c: segs.place(new_rows, new_users, control=c) for c in (False, True)}
        warm_labels = {c: segs.labels(c) for c in (False, True)}
        new = set(new_users)
        self.priors = {c: warm_priors(self.model, {u: s for u, s in warm_labels[c].items() if u not in new})
                       for c in (False, True)}  # fmt: skip
        self.place["fit"] = self._place_by_fit()
        # ranking matrices
        self.items = Vocab.from_ids(sorted(train["item_id"].unique().to_list(), key=lambda s: (len(s), s)))
        uvocab = Vocab.from_ids(sorted(train["user_id"].unique().to_list()))
        rows = uvocab.lookup(train["user_id"])
        cols = self.items.lookup(train["item_id"])
        x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(uvocab), len(self.items)))
        x.data[:] = 1.0
        b = ease_weights(x, EASE_REG)
        self.scored_users = sorted(set(scored["user_id"].to_list()) & set(new_users))
        urow = uvocab.lookup(pl.Series(self.scored_users, dtype=pl.String))
        xn = x[urow]
        self.seen = xn.toarray() > 0
        self.ease = zscore(np.asarray(xn @ b))
        is_warm = ~np.isin(uvocab.ids.astype(str), new_users)
        self.pop_counts = np.asarray(x[np.flatnonzero(is_warm)].sum(axis=0)).ravel()
        self.seg_counts = {}
        for c in (False, True):
            wl = warm_labels[c]
            lab = np.array([wl.get(str(u), -1) for u in uvocab.ids])
            self.seg_counts[c] = {int(s): np.asarray(x[np.flatnonzero(is_warm & (lab == s))].sum(axis=0)).ravel()
                                  for s in np.unique(lab) if s >= 0}  # fmt: skip
        rel = scored.filter(pl.col("rating") >= THRESHOLD)
        self.relevant = np.zeros_like(self.seen)
        pos = {u: j for j, u in enumerate(self.scored_users)}
        ci = self.items.lookup(rel["item_id"], missing=-1)
        for u, i in zip(rel["user_id"].to_list(), ci):
            if i >= 0 and u in pos:
                self.relevant[pos[u], i] = True
        self.scored_new = scored.filter(pl.col("user_id").is_in(new_users))
        self.y = self.scored_new["rating"].to_numpy()
        self.groups = self.scored_new["user_id"].to_numpy()

    def _place_by_fit(self) -> dict[str, int]:
        """Each new user's segment whose prior (mean bias and factors) best predicts its few ratings."""
        params, vocab = self.model.params_, self.model.item_vocab_
        segs = sorted(s for s in self.priors[False] if s >= 0)
        theta = np.stack([self.priors[False][s] for s in segs])  # (S, d + 1)
        rows = self.new_rows
        i = vocab.lookup(rows["item_id"], missing=-1)
        ok = i >= 0
        rows, i = rows.filter(pl.Series(ok)), i[ok]
        base = params.mu + params.item_bias[i]
        pred = base[:, None] + theta[None, :, 0] + params.item_factors[i] @ theta[:, 1:].T  # (n, S)
        err = (np.clip(pred, *self.model.rating_range_) - rows["rating"].to_numpy()[:, None]) ** 2
        users = rows["user_id"].to_numpy()
        out = {}
        for u in np.unique(users):
            out[str(u)] = int(segs[int(np.argmin(err[users == u].sum(axis=0)))])
        return out

    # ratings
    def rating_pred(self, system: str, reg: float | None = None) -> np.ndarray:
        f = self.scored_new
        if system == "global":
            return self.model.predict(f)
        if system == "popularity":
            g = self.train.group_by("item_id").agg(pl.col("rating").sum().alias("s"), pl.len().alias("n"))
            mu = float(self.train["rating"].mean())
            j = f.with_row_index("_r").join(g, on="item_id", how="left").sort("_r")
            return ((j["s"].fill_null(0.0) + 10 * mu) / (j["n"].fill_null(0) + 10)).to_numpy()
        return self.prior_predictor(system, reg).predict(f)

    def prior_predictor(self, system: str, reg: float | None) -> SegmentPriorPredictor:
        control = system == "random-partition"
        key = "fit" if system == "segment-aware-fit" else control
        place = None if system == "global-prior" else self.place[key]
        return fit_prior_predictor(self.model, self.new_rows, self.priors[control], place, float(reg))

    # ranking
    def ndcg(self, system: str, alpha: float = 0.0) -> np.ndarray:
        if system == "popularity":
            scores = np.tile(self.pop_counts.astype(np.float64), (len(self.scored_users), 1))
            return ndcg_per_user(scores, self.seen, self.relevant)
        if system == "global" or alpha == 0.0:
            return ndcg_per_user(self.ease, self.seen, self.relevant)
        control = system == "random-partition"
        key = "fit" if system == "segment-aware-fit" else control
        if system == "global-prior":
            segs = np.full(len(self.scored_users), -1)
        else:
            place = self.place[key]
            segs = np.array([place.get(u, -1) for u in self.scored_users])
        pop = segment_popularity_scores(segs, self.seg_counts[control], self.pop_counts)
        return ndcg_per_user((1 - alpha) * self.ease + alpha * zscore(pop), self.seen, self.relevant)


def choose(valid: Fold, system: str) -> dict:
    """reg and alpha for ``system`` on the validation fold, and whether each part's gate passes."""
    y, groups = valid.y, valid.groups
    p_global = valid.rating_pred("global")
    n_global = valid.ndcg("global")
    regs = {reg: rmse(y, valid.rating_pred(system, reg)) for reg in REG_GRID}
    reg = min(regs, key=regs.get)
    _, lo, hi = paired_bootstrap_ci(y, p_global, valid.rating_pred(system, reg), groups, n_boot=1000, seed=1)
    alphas = {a: float(np.nanmean(valid.ndcg(system, a))) for a in ALPHA_GRID}
    alpha = max(alphas, key=alphas.get)
    _, nlo, nhi = mean_diff_ci(n_global, valid.ndcg(system, alpha), seed=1)
    return {"reg": reg, "alpha": alpha, "valid_rmse_change_ci": [r5(lo), r5(hi)], "valid_ndcg_change_ci": [r5(nlo), r5(nhi)],
            "rating_gate": bool(hi < 0), "ranking_gate": bool(alpha > 0 and nlo > 0)}  # fmt: skip


def run_cold(name: str, ks: list[int], quick: bool, emb_cache: dict, n_users: int | None = None) -> list[dict]:
    inter, items, truth = load(name, quick, n_users)
    if "emb" not in emb_cache:
        from rating import item_embeddings

        emb_cache["emb"] = item_embeddings(items)
    emb = emb_cache["emb"]
    split = split_ratings(inter, "random90")
    base, test = split.train_full, split.test
    new = pick_new_users(base["user_id"].unique(), NEW_FRACTION, seed=0)
    t0 = time.perf_counter()
    segs = Segments(base.filter(~pl.col("user_id").is_in(new)), items, emb)
    seg_s = time.perf_counter() - t0
    info = {"n_segments": segs.n_segments, "segment_seconds": round(seg_s, 1)}
    if truth is not None:
        from sklearn.metrics import adjusted_rand_score

        t = dict(zip(truth["user_id"].to_list(), truth["segment_id"].to_list()))
        a = segs.assign
        info["warm_ari"] = round(adjusted_rand_score([t[u] for u in a["user_id"]], a["nearest_segment"].to_list()), 3)
    logger.info("%s: %d new users, %s", name, len(new), info)
    warm_ids = sorted(set(base["user_id"].to_list()) - set(new))
    rows: list[dict] = []
    for k in ks:
        t0 = time.perf_counter()
        cold = cold_start_split(base, new, k)
        vnew = pick_new_users(warm_ids, NEW_FRACTION, seed=1)
        vcold = cold_start_split(cold.train, vnew, k)
        valid = Fold(vcold.train, vcold.held_out, vnew, segs, emb)
        scored = pl.concat([cold.held_out, test.filter(pl.col("user_id").is_in(new))])
        fold = Fold(cold.train, scored, new, segs, emb)
        p_g, n_g = fold.rating_pred("global"), fold.ndcg("global")
        choices = {s: choose(valid, s) for s in SYSTEMS}

        def add(system: str, pred: np.ndarray, nd: np.ndarray, fold: Fold = fold, p_g: np.ndarray = p_g,
                n_g: np.ndarray = n_g, k: int = k, **extra: object) -> None:  # fmt: skip
            d, lo, hi = paired_bootstrap_ci(fold.y, p_g, pred, fold.groups, n_boot=1000, seed=0)
            nd_d, nlo, nhi = mean_diff_ci(n_g, nd, seed=0)
            row = {"data": name, "k": k, "system": system, "population": "new", "n_users": len(set(fold.groups)),
                   "n_rows": len(fold.y), "n_ranked_users": int(np.isfinite(nd).sum()),
                   "rmse": r5(rmse(fold.y, pred)), "ndcg@10": r5(np.nanmean(nd)),
                   "rmse_change": r5(d), "rmse_ci95": [r5(lo), r5(hi)],
                   "ndcg_change": r5(nd_d), "ndcg_ci95": [r5(nlo), r5(nhi)], **info, **extra}  # fmt: skip
            rows.append(row)
            logger.info("%-8s k=%-2d %-20s RMSE %.4f (%+.4f [%+.4f, %+.4f])  NDCG %.4f (%+.4f [%+.4f, %+.4f])",
                        name, k, system, row["rmse"], d, lo, hi, row["ndcg@10"], nd_d, nlo, nhi)  # fmt: skip

        add("global", p_g, n_g)
        add("popularity", fold.rating_pred("popularity"), fold.ndcg("popularity"))
        c = choices["global-prior"]
        p_gp, n_gp = fold.rating_pred("global-prior", c["reg"]), fold.ndcg("global-prior", c["alpha"])
        for s, c in choices.items():
            pred, nd = fold.rating_pred(s, c["reg"]), fold.ndcg(s, c["alpha"])
            # the sharper control: does the segment add anything over the same prior from all warm users?
            d, lo, hi = paired_bootstrap_ci(fold.y, p_gp, pred, fold.groups, n_boot=1000, seed=0)
            nd_d, nlo, nhi = mean_diff_ci(n_gp, nd, seed=0)
            vs = {"rmse_change_vs_global_prior": r5(d), "rmse_ci95_vs_global_prior": [r5(lo), r5(hi)],
                  "ndcg_change_vs_global_prior": r5(nd_d), "ndcg_ci95_vs_global_prior": [r5(nlo), r5(nhi)]}  # fmt: skip
            add(s, pred, nd, **c, **vs)
        c = choices["segment-aware"]
        add("segment-aware-gated", fold.rating_pred("segment-aware", c["reg"]) if c["rating_gate"] else p_g,
            fold.ndcg("segment-aware", c["alpha"]) if c["ranking_gate"] else n_g, **c)  # fmt: skip
        # users with full history: the cold-start parts never touch them
        wt = test.filter(~pl.col("user_id").is_in(new))
        p_w = fold.model.predict(wt)
        p_ws = fold.prior_predictor("segment-aware", c["reg"]).predict(wt)
        rows.append({"data": name, "k": k, "system": "segment-aware-gated", "population": "warm",
                     "n_users": wt["user_id"].n_unique(), "rmse": r5(rmse(wt["rating"].to_numpy(), p_ws)),
                     "rmse_change": r5(float(np.max(np.abs(p_ws - p_w)))), "note": "rmse_change: largest |change| of a warm prediction"})  # fmt: skip
        logger.info("%s k=%d done in %.0f s", name, k, time.perf_counter() - t0)
    return rows


# ------------------------------------------------------------------------------------------------ item 3


def run_behaviour(quick: bool, seed: int = 0, n_users: int | None = None) -> list[dict]:
    ds = load_movielens_100k()
    counts = ds.interactions.group_by("item_id").len()
    pop = ds.items.join(counts, on="item_id", how="left")["len"].fill_null(0).to_numpy() + 1.0
    n_users = n_users or (1500 if quick else 3000)
    planted, truth_info = planted_segment_behaviour(
        ds.items, n_users, rng=np.random.default_rng(seed), item_popularity=pop
    )
    split = split_ratings(planted.interactions, "random90", seed=seed)
    t0 = time.perf_counter()
    model = fit_global_predictor(split, MF, seed=seed)
    fit_s = time.perf_counter() - t0
    truth = planted.truth.filter(pl.col("user_id").is_in(split.train_full["user_id"].unique().to_list()))
    y, users = split.test["rating"].to_numpy(), split.test["user_id"].to_numpy()
    p_g = model.predict(split.test)
    rows = []
    for label, parts in (("planted-segments", truth), ("random-partition", random_partition(truth, seed=seed))):
        t0 = time.perf_counter()
        seg = fit_segment_predictors(model, split, parts, MF, seed=seed)
        p = seg.predict(split.test)
        d, lo, hi = paired_bootstrap_ci(y, p_g, p, users, n_boot=1000, seed=0)
        rep = seg.report_.filter(pl.col("segment_id") >= 0)
        widths = (rep["gate_ci_high"] - rep["gate_ci_low"]).drop_nulls()
        row = {"data": "planted-behaviour", "k": None, "system": label, "population": "all", "n_users": n_users,
               "n_segments": rep.height, "kept": int(rep["kept"].sum()),
               "true_positives": int(rep["kept"].sum()) if label == "planted-segments" else 0,
               "global_test_rmse": r5(rmse(y, np.clip(p_g, 1, 5))),
               "rmse": r5(rmse(y, p)), "rmse_change": r5(d), "rmse_ci95": [r5(lo), r5(hi)],
               "global_fit_seconds": round(fit_s, 1), "seconds": round(time.perf_counter() - t0, 1),
               "median_valid_rows": float(rep["n_valid"].median()),
               "median_gate_ci_width": r5(float(widths.median())) if len(widths) else None,
               "per_segment": rep.select("segment_id", "n_users", "n_valid", "strategy", "valid_rmse_global",
                                         "valid_rmse_segment", "gate_ci_low", "gate_ci_high", "kept").to_dicts(),
               "planted_stretch": [round(float(s), 3) for s in truth_info["stretch"]]}  # fmt: skip
        rows.append(row)
        logger.info(
            "%s: kept %d/%d, test RMSE change %+.4f [%+.4f, %+.4f]", label, row["kept"], row["n_segments"], d, lo, hi
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["ml100k", "planted"], choices=["ml100k", "planted"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 3, 5, 10])
    parser.add_argument("--part", nargs="+", default=["cold", "behaviour"], choices=["cold", "behaviour"])
    parser.add_argument("--quick", action="store_true", help="fewer planted users (1,200 and 1,500)")
    parser.add_argument("--users", type=int, default=None, help="planted users (overrides the sizes above)")
    parser.add_argument("--merge", action="store_true", help="keep the rows of --out for data this run does not redo")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cold_start.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("segmentation", "embeddings", "numba", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    rows: list[dict] = []
    cache: dict = {}
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, 2 shared cores",
            "command": " ".join(["python", "benchmarks/cold_start.py", *sys.argv[1:]])}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)

    kept: list[dict] = []
    if args.merge and args.out.exists():
        redo = set(args.data if "cold" in args.part else []) | (
            {"planted-behaviour"} if "behaviour" in args.part else set()
        )
        kept = [r for r in json.loads(args.out.read_text(encoding="utf-8")) if r["data"] not in redo]

    def save(new_rows: list[dict]) -> None:  # after each part, so a late failure keeps the earlier figures
        rows.extend({**r, **meta} for r in new_rows)
        args.out.write_text(json.dumps(kept + rows, indent=1) + "\n", encoding="utf-8")

    if "behaviour" in args.part:
        save(run_behaviour(args.quick, n_users=args.users))
    if "cold" in args.part:
        for name in args.data:
            save(run_cold(name, args.ks, args.quick, cache, n_users=args.users))
    print(
        f"\n{'data':18s} {'k':>3s} {'system':20s} {'RMSE':>7s} {'dRMSE [95% CI]':>28s} {'NDCG@10':>8s} {'dNDCG [95% CI]':>28s}"
    )
    for r in kept + rows:
        if r["population"] != "new":
            continue
        ci, nci = r["rmse_ci95"], r["ndcg_ci95"]
        print(f"{r['data']:18s} {r['k']:3d} {r['system']:20s} {r['rmse']:7.4f} {r['rmse_change']:+8.4f} "
              f"[{ci[0]:+.4f}, {ci[1]:+.4f}] {r['ndcg@10']:8.4f} {r['ndcg_change']:+8.4f} [{nci[0]:+.4f}, {nci[1]:+.4f}]")  # fmt: skip
    for r in kept + rows:
        if r["population"] == "all":
            print(f"{r['data']}: {r['system']}: kept {r['kept']}/{r['n_segments']}, test RMSE change {r['rmse_change']:+.4f} "
                  f"CI {r['rmse_ci95']}, median valid rows {r['median_valid_rows']}, median gate CI width {r['median_gate_ci_width']}")  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
