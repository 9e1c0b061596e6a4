"""The language model as the rating predictor, side by side with the hybrid blend, on a slice of MovieLens 100k.

    python benchmarks/llm_predictor.py [--split random90] [--users 150] [--epochs 2] [--batch-size 64]
                                       [--max-train-rows N] [--threads 2] [--seed 0]

The slice: ``--users`` users drawn at random (``numpy.random.default_rng(seed)``) from the split's test users,
with ALL their train, valid and test rows of the split (BENCHMARK_PROTOCOL.md); every item keeps its
description. On that slice, in one process, one after another:

- ``biases``: damped baseline biases ``mu + b_u + b_i`` on train + valid (surprise's BaselineOnly);
- ``segflow-global``: the default ``PredictorConfig`` (ridge blend of SVD++/AutoRec/kNN, weights on valid,
  refitted on train + valid) trained on the slice only;
- ``segflow-encoder-regressor``: :class:`segmentation.predict.EncoderRegressor`, MiniLM fine-tuned end to end
  with a regression head on (train-only user profile, item description) pairs, early-stopped on valid;
- ``segflow-global+encoder``: a ridge blend (``blend.reg``) of the blend's components and the encoder
  regressor, weights fitted on the slice's validation rows (the components' pre-refit validation
  predictions, as the blend does), scored on test with the refitted components;
- ``segflow-global-full-train`` (a reference, not a slice system): the default blend trained on the whole
  split's train + valid, scored on the same slice test rows.

Each row has RMSE/MAE on the same test rows, training and prediction seconds, the peak resident memory of
the process while that system trained and predicted (sampled every 50 ms; MiB), and the paired user-bootstrap
95 % CI (:func:`segmentation.predict.paired_bootstrap_ci`, 1000 resamples) of its RMSE difference against
``segflow-global``. Test rows are read only to score. Writes ``benchmarks/results/llm_predictor.json``.
"""

import argparse
import json
import logging
import os
import platform
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.rating import biases, item_embeddings, scores  # noqa: E402
from segmentation._predict_global import _ridge  # noqa: E402
from segmentation.config import EncoderRegressorConfig, PredictorConfig  # noqa: E402
from segmentation.data import Split, load_movielens_100k, split_ratings  # noqa: E402
from segmentation.predict import fit_encoder_predictor, fit_global_predictor, paired_bootstrap_ci  # noqa: E402

logger = logging.getLogger("benchmarks.llm_predictor")


class PeakRSS:
    """Peak resident memory (MiB) of this process inside a block, sampled every 50 ms by a thread."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._proc = psutil.Process()

    @contextmanager
    def measure(self):  # noqa: ANN201
        self.peak = self._proc.memory_info().rss / 2**20
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)


def slice_split(split: Split, n_users: int, seed: int) -> Split:
    """All rows of ``n_users`` users drawn at random from the test users."""
    users = split.test["user_id"].unique().sort().to_numpy()
    chosen = np.random.default_rng(seed).choice(users, size=min(n_users, len(users)), replace=False)
    keep = pl.col("user_id").is_in(list(chosen))
    return Split(train=split.train.filter(keep), valid=split.valid.filter(keep), test=split.test.filter(keep),
                 method=f"{split.method}[{len(chosen)} users]")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="random90", choices=["random90", "random80", "temporal"])
    parser.add_argument("--users", type=int, default=150, help="users in the slice")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the encoder regressor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-full-train", action="store_true", help="skip the full-train reference blend")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "llm_predictor.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("numba", "sentence_transformers", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    ds = load_movielens_100k()
    emb = item_embeddings(ds.items)
    full = split_ratings(ds.interactions, args.split)
    split = slice_split(full, args.users, args.seed)
    y = split.test["rating"].to_numpy()
    groups = split.test["user_id"].to_numpy()
    slice_info = {"users": args.users, "train": split.train.height, "valid": split.valid.height,
                  "test": split.test.height, "seed": args.seed}  # fmt: skip
    logger.info("slice: %s", slice_info)
    rows: list[dict] = []
    preds: dict[str, np.ndarray] = {}
    mem = PeakRSS()

    def add(
        system: str, pred: np.ndarray, seconds: float, predict_seconds: float, peak: float, **extra: object
    ) -> None:
        n_fit = extra.pop("n_fit_rows", split.train.height + split.valid.height)
        row = {"system": system, "split": args.split, "slice": slice_info, **scores(y, pred),
               "seconds": round(seconds, 2), "predict_seconds": round(predict_seconds, 4), "peak_mib": round(peak),
               "train_seconds_per_1k": round(1000 * seconds / max(1, n_fit), 3),
               "predict_seconds_per_1k": round(1000 * predict_seconds / max(1, len(y)), 5), **extra,
               "load_avg_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
        preds[system] = np.clip(pred, 1.0, 5.0)
        rows.append(row)
        logger.info("%-28s RMSE %.4f  MAE %.4f  fit %7.1f s  predict %.3f s  peak %d MiB", system, row["rmse"],
                    row["mae"], seconds, predict_seconds, peak)  # fmt: skip

    with mem.measure():
        t0 = time.perf_counter()
        p = biases(split)
        secs = time.perf_counter() - t0
    add("biases", p, secs, 0.0, mem.peak, note="fit and predict in seconds")

    cfg = PredictorConfig()
    with mem.measure():
        t0 = time.perf_counter()
        blend = fit_global_predictor(split, cfg, item_embeddings=emb, seed=0)
        secs = time.perf_counter() - t0
        t0 = time.perf_counter()
        p_blend = blend.predict(split.test)
        psecs = time.perf_counter() - t0
    add("segflow-global", p_blend, secs, psecs, mem.peak, components=blend.component_names,
        weights=[round(w, 4) for w in blend.weights_.tolist()], valid_rmse=round(blend.valid_rmse_["model"], 4))  # fmt: skip

    enc_cfg = EncoderRegressorConfig(threads=args.threads, epochs=args.epochs, batch_size=args.batch_size,
                                     max_seq_length=args.max_seq_length)  # fmt: skip
    with mem.measure():
        t0 = time.perf_counter()
        enc = fit_encoder_predictor(split, ds.items, enc_cfg, seed=0, max_train_rows=args.max_train_rows)
        secs = time.perf_counter() - t0
        t0 = time.perf_counter()
        p_enc = enc.predict(split.test)
        psecs = time.perf_counter() - t0
    summary = enc.summary()
    add("segflow-encoder-regressor", p_enc, secs, psecs, mem.peak, n_fit_rows=enc.n_train_rows_,
        encoder=enc_cfg.model, epochs=args.epochs, batch_size=args.batch_size, threads=args.threads,
        max_seq_length=args.max_seq_length, n_train_rows=enc.n_train_rows_, best_step=enc.best_step_,
        valid_rmse=round(enc.valid_rmse_["model"], 4), valid_rmse_biases=round(enc.valid_rmse_["biases"], 4),
        fit_seconds=summary["fit_seconds"], device=enc.device_,
        history=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()} for h in enc.history_],
        note="seconds: texts + fine-tuning + final embeddings of the known users and items; predict_seconds: the "
             "head over stored embeddings (the embedding cost is fit_seconds.embed)")  # fmt: skip

    # the blend's components plus the encoder regressor, weights on validation, scored on test
    t0 = time.perf_counter()
    valid_enc = enc.valid_pred_  # before the biases' refit on train + valid (which saw these ratings)
    fingerprint, valid_components = blend._valid_preds  # pre-refit validation predictions of the components
    x_valid = np.column_stack([valid_components, valid_enc])
    w = _ridge(x_valid, split.valid["rating"].to_numpy(), cfg.blend.reg)
    x_test = np.column_stack([blend.component_predictions(blend._encode(split.test)), p_enc])
    p_stack = np.clip(w[0] + x_test @ w[1:], *blend.rating_range_)
    add("segflow-global+encoder", p_stack, time.perf_counter() - t0, 0.0, mem.peak,
        weights=dict(zip(["intercept", *blend.component_names, "encoder"], [round(float(v), 4) for v in w])),
        note="ridge on the slice's valid rows over the blend's components and the encoder regressor; seconds: "
             "the extra blending only (add both models' fits)")  # fmt: skip

    if not args.no_full_train:
        with mem.measure():
            t0 = time.perf_counter()
            big = fit_global_predictor(full, cfg, item_embeddings=emb, seed=0)
            secs = time.perf_counter() - t0
            t0 = time.perf_counter()
            p_big = big.predict(split.test)
            psecs = time.perf_counter() - t0
        add("segflow-global-full-train", p_big, secs, psecs, mem.peak, n_fit_rows=full.train_full.height,
            note="reference: the default blend trained on the whole split, scored on the slice's test rows")  # fmt: skip

    for row in rows[rows.index(next(r for r in rows if r["system"] == "segflow-encoder-regressor")) + 1 :]:
        row["peak_mib_note"] = "process peak RSS; includes what the encoder regressor allocated before (not returned)"
    for row in rows:
        if row["system"] != "segflow-global":
            diff, lo, hi = paired_bootstrap_ci(y, preds["segflow-global"], preds[row["system"]], groups, 1000, seed=0)
            row["rmse_diff_vs_global"] = round(diff, 4)
            row["ci95_vs_global"] = [round(lo, 4), round(hi, 4)]
        if row["system"] == "segflow-global+encoder":
            diff, lo, hi = paired_bootstrap_ci(y, preds["segflow-encoder-regressor"], preds[row["system"]], groups,
                                               1000, seed=0)  # fmt: skip
            row["rmse_diff_vs_encoder"] = round(diff, 4)
            row["ci95_vs_encoder"] = [round(lo, 4), round(hi, 4)]
    diff, lo, hi = paired_bootstrap_ci(y, preds["biases"], preds["segflow-encoder-regressor"], groups, 1000, seed=0)
    next(r for r in rows if r["system"] == "segflow-encoder-regressor").update(
        rmse_diff_vs_biases=round(diff, 4), ci95_vs_biases=[round(lo, 4), round(hi, 4)]
    )
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "command": " ".join(["python", "benchmarks/llm_predictor.py", *sys.argv[1:]])}  # fmt: skip
    for row in rows:
        row.update(meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'system':28s} {'RMSE':>7s} {'MAE':>7s} {'fit s':>8s} {'pred s':>8s} {'MiB':>6s}  vs segflow-global")
    for r in rows:
        ci = f"{r['rmse_diff_vs_global']:+.4f} [{r['ci95_vs_global'][0]:+.4f}, {r['ci95_vs_global'][1]:+.4f}]" \
            if "ci95_vs_global" in r else ""  # fmt: skip
        print(f"{r['system']:28s} {r['rmse']:7.4f} {r['mae']:7.4f} {r['seconds']:8.1f} {r['predict_seconds']:8.3f} "
              f"{r['peak_mib']:6d}  {ci}")  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
