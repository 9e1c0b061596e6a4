"""Bytes per dense cell of the rating blend's components, temporaries included (the factors behind
``predictor.dense_budget_mib``).

    python benchmarks/dense_budget.py                       # this code
    python benchmarks/dense_budget.py --rev 10d01d7         # the components as they were at a git revision

For each component (item-kNN, user-kNN, AutoRec) and size, a fresh process draws
``synthetic_log(n_users, n_items, mean_per_user=30, seed=0)`` (explicit), encodes train and validation rows, reads
its resident set (``VmRSS``), then does what :class:`~segmentation._predict_global.GlobalPredictor` does with a
component: fit early-stopped on the validation rows, predict them, fit again on train + valid while the first fit
is still held (the refit) and predict the validation rows again. The growth of the process's peak (``VmHWM``) over
the resident set before the fit, divided by the component's cells (kNN: entities x neighbours kept, the old code
entities^2; AutoRec: items x users), is its bytes per cell; the slope between two sizes removes the fixed part.
AutoRec trains 3 epochs (its memory does not depend on the count). Prints one JSON line per run.

    /usr/bin/time -v python benchmarks/dense_budget.py --blend 10000 2000 [--code DIR]

fits the default global rating model (the blend, refitted; without item embeddings, so SVD++ has no side
features) on ``synthetic_log(n_users, n_items, mean_per_user=30, seed=0)`` split random90 (seed 0), in this
process, and prints its components, weights, validation RMSE (the blend's cross-validated figure), test RMSE and
seconds; ``/usr/bin/time -v`` gives the peak (``--ml100k``: MovieLens 100k instead, sizes ignored; ``--save
F.npy``: keep the test predictions, to compare two versions row by row). ``--code DIR``: import segflow from DIR (an older checkout, e.g.
``git archive REV | tar -x -C DIR``) to measure it as it was.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(3000, 600), (6000, 1200)]


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _child(component: str, n_users: int, n_items: int, module_path: str | None) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from segmentation._predict_mf import Ratings
    from segmentation.data import Vocab, split_ratings
    from segmentation.synthetic import synthetic_log

    if module_path:
        spec = importlib.util.spec_from_file_location("components_at_rev", module_path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    else:
        import segmentation._predict_components as mod
    log = synthetic_log(n_users, n_items, mean_per_user=30, seed=0)
    split = split_ratings(log.interactions, "random90", seed=0)
    full = split.train_full
    uv = Vocab.from_ids(full["user_id"].unique().sort())
    iv = Vocab.from_ids(full["item_id"].unique().sort())

    def enc(f):
        return Ratings(uv.lookup(f["user_id"]), iv.lookup(f["item_id"]), f["rating"].to_numpy().astype(float), None)

    train, valid, allr = enc(split.train), enc(split.valid), enc(full)
    nu, ni = len(uv), len(iv)
    if component == "autorec":
        make = lambda: mod.AutoRec(mod.AutoRecSettings(hidden=500, epochs=3, learning_rate=0.005, reg=1.0,  # noqa: E731
                                                       batch_size=256, patience=5))  # fmt: skip
        cells = nu * ni
    else:
        user_based = component == "user-knn"
        make = lambda: mod.KNNBaseline(user_based=user_based)  # noqa: E731
        n = nu if user_based else ni
        cells = n * min(1000, n) if hasattr(mod, "_shrunk_pearson_neighbours") else n * n
    before = _status("VmRSS")
    first = make().fit(mod.FitData(train, valid, nu, ni, (1.0, 5.0)), torch.Generator().manual_seed(0))
    first.predict(valid.users, valid.items)
    empty = allr.subset(np.zeros(len(allr), bool))
    second = make().fit(mod.FitData(allr, empty, nu, ni, (1.0, 5.0), epochs={"autorec": 3}),
                        torch.Generator().manual_seed(1))  # fmt: skip
    second.predict(valid.users, valid.items)
    peak = _status("VmHWM")
    print(json.dumps({"component": component, "n_users": nu, "n_items": ni, "cells": cells,
                      "peak_over_baseline_mib": round((peak - before) / 2**20, 1),
                      "bytes_per_cell": round((peak - before) / cells, 1)}))  # fmt: skip


def _blend(n_users: int, n_items: int, ml100k: bool = False, save: str | None = None) -> None:
    import time

    import numpy as np

    from segmentation.config import PredictorConfig
    from segmentation.data import split_ratings
    from segmentation.predict import fit_global_predictor
    from segmentation.synthetic import synthetic_log

    if ml100k:
        from segmentation.data import load_movielens_100k

        split = split_ratings(load_movielens_100k().interactions, "random90", seed=0)
        n_users, n_items = split.train_full["user_id"].n_unique(), split.train_full["item_id"].n_unique()
    else:
        log = synthetic_log(n_users, n_items, mean_per_user=30, seed=0)
        split = split_ratings(log.interactions, "random90", seed=0)
    t0 = time.perf_counter()
    model = fit_global_predictor(split, PredictorConfig(), seed=42)
    seconds = time.perf_counter() - t0
    y = split.test["rating"].to_numpy()
    pred = model.predict(split.test)
    test_rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    if save:
        np.save(save, pred)
    print(json.dumps({"code": str(Path(sys.modules["segmentation"].__file__).parents[1]), "n_users": n_users,
                      "n_items": n_items, "train_rows": split.train_full.height, "components": model.component_names,
                      "weights": [round(w, 4) for w in model.weights_.tolist()] if model.weights_ is not None else None,
                      "valid_rmse": {k: round(v, 5) for k, v in model.valid_rmse_.items()},
                      "test_rmse": round(test_rmse, 5), "seconds": round(seconds, 1)}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blend", nargs=2, type=int, metavar=("N_USERS", "N_ITEMS"),
                    help="fit the default global rating model on a synthetic log of this size")  # fmt: skip
    ap.add_argument("--code", help="with --blend: import segflow from this folder")
    ap.add_argument("--ml100k", action="store_true", help="with --blend: MovieLens 100k (random90) instead")
    ap.add_argument("--save", help="with --blend: write the test predictions to this .npy file")
    ap.add_argument("--rev", help="measure segmentation/_predict_components.py as it was at this git revision")
    ap.add_argument("--components", nargs="+", default=["item-knn", "user-knn", "autorec"])
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--module", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.blend:
        sys.path.insert(0, str(Path(args.code).resolve() if args.code else ROOT))
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        _blend(*args.blend, ml100k=args.ml100k, save=args.save)
        return
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]), args.module)
        return
    module = None
    if args.rev:
        text = subprocess.run(["git", "show", f"{args.rev}:segmentation/_predict_components.py"], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout  # fmt: skip
        module = Path(tempfile.mkdtemp()) / "components_at_rev.py"
        module.write_text(text)
    rows = []
    for component in args.components:
        for n_users, n_items in SIZES:
            cmd = [sys.executable, __file__, "--child", component, str(n_users), str(n_items)]
            if module:
                cmd += ["--module", str(module)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            print(out, flush=True)
            rows.append(json.loads(out))
    for component in args.components:
        a, b = [r for r in rows if r["component"] == component]
        slope = (b["peak_over_baseline_mib"] - a["peak_over_baseline_mib"]) * 2**20 / max(b["cells"] - a["cells"], 1)
        print(f"{component}: {slope:.1f} bytes per cell between the two sizes (rev {args.rev or 'working tree'})")


if __name__ == "__main__":
    main()
