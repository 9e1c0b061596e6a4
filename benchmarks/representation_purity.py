"""Which user representation keeps a user's neighbours in their own planted segment: the screen before the CLI runs.

For each candidate of :data:`CANDIDATES` (a ``represent.method`` and its ``represent.weights``), on each tuning
world (taste, style, light; held-out worlds are refused) and seed: the user vectors of every interaction, built by
:func:`segmentation.represent.build_user_vectors` with the run's centring, then the share of each planted user's 15
nearest users by cosine (exact, FAISS) that share their planted segment (``represent.evidence`` off: the screen
ran before it existed), averaged over the planted users (noise
users left out). It needs no UMAP and no parameter choice, so one world and seed takes seconds per candidate; it
reads only the representation. What it cannot see is how UMAP and HDBSCAN then draw regions (a world's segments
that share categories can merge whatever the neighbours say): candidates that pass this screen are then run through
the CLI (``benchmarks/segmentation.py --worlds-cli --cli-set ...``), and the default is chosen there.

``python benchmarks/representation_purity.py`` (10,000 users, seeds 0-2: about 3 minutes on 2 cores); rows in
``benchmarks/results/representation_purity.json``.
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before benchmarks/, whose segmentation.py would hide the package

from benchmarks._results import command, tuning_world_args, write_json  # noqa: E402

TUNING = ("taste", "style", "light")
NEIGHBOURS = 15
RESULTS = ROOT / "benchmarks" / "results" / "representation_purity.json"
_FOUR = "item-mean+category-hist+liked-category-hist+category-rating"
_WITH_RATING = "item-mean+liked-category-hist+category-rating"
CANDIDATES: tuple[tuple[str, dict[str, float]], ...] = (
    ("item-mean+liked-category-hist", {}),
    ("item-mean+liked-category-hist", {"liked-category-hist": 0.5}),
    ("item-mean+liked-category-hist", {"liked-category-hist": 2.0}),
    ("item-mean+category-hist", {}),
    ("item-mean+category-hist+liked-category-hist", {}),
    (_WITH_RATING, {"category-rating": 0.35}),
    (_WITH_RATING, {"category-rating": 0.5}),
    (_WITH_RATING, {"category-rating": 1.0}),
    (_FOUR, {"category-rating": 0.5}),
    (_FOUR, {"category-rating": 0.75}),
    (_FOUR, {"category-rating": 1.0}),
)
"""The representations screened: the default (first), other weights of its category part, the all-items histogram
beside it, and the signed per-category rating (``category-rating``) at a few weights."""


def effective(method: str, weights: dict[str, float]) -> dict[str, float]:
    """The weights that change ``method``'s vectors: those of its own parts, other than 1."""
    return {p: weights[p] for p in method.split("+") if p in weights and weights[p] != 1.0}


def name(method: str, weights: dict[str, float]) -> str:
    """A candidate's label: the method, with ``@part=w`` for each weight that changes it."""
    return method + "".join(f"@{p}={w:g}" for p, w in effective(method, weights).items())


def purity(vectors: np.ndarray, truth: np.ndarray, k: int = NEIGHBOURS) -> tuple[float, np.ndarray]:
    """Mean share of each planted user's ``k`` nearest others (cosine; ``vectors`` unit rows) in their own planted
    segment, over users with ``truth >= 0``; and the per-user shares."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, nb = index.search(x, k + 1)
    own = np.arange(len(x))[:, None]
    # drop each user from their own list (ties can put another user first): keep the first k that are not them
    others = np.array([row[row != i][:k] for row, i in zip(nb, own[:, 0], strict=True)])
    share = (truth[others] == truth[:, None]).mean(axis=1)
    planted = truth >= 0
    return float(share[planted].mean()), share


def run(worlds: list[str], seeds: list[int], n: int) -> list[dict]:
    from benchmarks.segmentation import _world_catalogue
    from embeddings.encoder import Encoder
    from segmentation.config import RepresentConfig
    from segmentation.data import default_cache_dir
    from segmentation.represent import build_user_vectors
    from segmentation.synthetic import world_log

    enc = Encoder(cache_dir=default_cache_dir() / "embeddings", batch_size=128)
    centre = RepresentConfig().centre
    rows = []
    for name_ in worlds:
        for seed in seeds:
            log = world_log(name_, n, seed=seed)
            items, iv = _world_catalogue(log, enc)
            pos = dict(zip(log.labels["user_id"].to_list(), log.labels["segment"].to_list(), strict=True))
            for method, weights in CANDIDATES:
                users = build_user_vectors(log.interactions, iv, method=method, items=items, seed=seed,
                                           centre=centre, weights=weights, evidence=None)  # fmt: skip
                truth = np.array([pos[u] for u in users.ids])
                mean, share = purity(users.vectors, truth)
                light = (truth >= 0) & (users.activity <= 10)
                rows.append({"world": name_, "seed": seed, "n_users": n, "candidate": name(method, weights),
                             "method": method, "weights": weights, "purity": round(mean, 4),
                             "purity_light_users": round(float(share[light].mean()), 4) if light.any() else None})  # fmt: skip
                print(f"{name_:6s} seed {seed} {rows[-1]['candidate']:80s} {mean:.4f}", flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per candidate: mean and minimum purity over the worlds and seeds, and the mean per world."""
    out = []
    for cand in dict.fromkeys(r["candidate"] for r in rows):
        mine = [r for r in rows if r["candidate"] == cand]
        worlds = dict.fromkeys(r["world"] for r in mine)
        out.append({"candidate": cand, "mean": round(float(np.mean([r["purity"] for r in mine])), 4),
                    "min": round(min(r["purity"] for r in mine), 4),
                    "by_world": {w: round(float(np.mean([r["purity"] for r in mine if r["world"] == w])), 4)
                                 for w in worlds}})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a, worlds = tuning_world_args(p, argv, TUNING, RESULTS, "representations are screened")
    warnings.filterwarnings("ignore", category=FutureWarning)
    rows = run(worlds, [int(s) for s in a.seeds.split(",")], a.users)
    s = summary(rows)
    for r in sorted(s, key=lambda r: -r["mean"]):
        print(f"{r['candidate']:80s} mean {r['mean']:.4f} min {r['min']:.4f} {r['by_world']}")
    write_json(a.out, {"command": command("representation_purity.py", argv), "neighbours": NEIGHBOURS,
                       "summary": s, "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
