"""Synthetic :class:`segmentation.run_folder.RunFolder` bundles for report tests and manual previews.

``make_report_input()`` is small and hostile: a segment name and an item title
carry HTML (``HOSTILE_TITLE`` must show as text). ``complete=False`` leaves out
every optional part, as a run that computed little would.

    python tests/fixtures_report.py /tmp/report --users 943 --segments 10   # a realistic-size preview
"""

import math
from pathlib import Path

import numpy as np
import polars as pl

from segmentation.cluster import ASSIGNMENTS, NOISE
from segmentation.describe import AttributeProfile, SegmentProfile
from segmentation.run_folder import RunFolder

HOSTILE_TITLE = "<script>alert(1)</script>"
STABILITY = {1: 0.45}  # segment -> mean clusterwise Jaccard (others 0.9): segment 1 is tentative
HOSTILE_NAME = "Sci-Fi & <i>Horror</i> fans"

GENRES = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
TITLES = [
    "Star Wars (1977)", "Fargo (1996)", "Contact (1997)", "Return of the Jedi (1983)", "Liar Liar (1997)",
    "English Patient, The (1996)", "Scream (1996)", "Toy Story (1995)", "Air Force One (1997)",
    "Independence Day (ID4) (1996)", "Raiders of the Lost Ark (1981)", "Godfather, The (1972)",
    "Pulp Fiction (1994)", "Twelve Monkeys (1995)", "Silence of the Lambs, The (1991)", "Jerry Maguire (1996)",
    "Rock, The (1996)", "Empire Strikes Back, The (1980)", "Star Trek: First Contact (1996)", "Titanic (1997)",
    "Back to the Future (1985)", "Mission: Impossible (1996)", "Fugitive, The (1993)", "Casablanca (1942)",
    "Schindler's List (1993)", "Princess Bride, The (1987)", "Alien (1979)", "Blade Runner (1982)",
]  # fmt: skip
WORDS = ["space", "murder", "love", "war", "family", "detective", "alien", "school", "heist", "robot", "ghost",
         "cowboy", "spy", "music", "island", "prison", "dream", "city", "road", "island"]  # fmt: skip
OCCUPATIONS = ["student", "educator", "engineer", "programmer", "administrator", "writer", "librarian", "other"]


def _hist(rng: np.random.Generator, mean: float) -> dict[str, float]:
    w = np.array([math.exp(-((r - mean) ** 2) / 1.6) for r in range(1, 6)]) * rng.uniform(0.8, 1.2, 5)
    w = w / w.sum()
    return {str(r): float(p) for r, p in zip(range(1, 6), w)}


def make_report_input(n_users: int = 120, n_segments: int = 3, *, seed: int = 0, outlier_share: float = 0.1,
                      complete: bool = True, title: str = "Synthetic segment report") -> RunFolder:  # fmt: skip
    """A synthetic report bundle with ``n_segments`` segments plus outliers."""
    rng = np.random.default_rng(seed)
    n_noise = int(round(outlier_share * n_users))
    weights = rng.dirichlet(np.full(n_segments, 3.0))
    counts = np.maximum(rng.multinomial(n_users - n_noise, weights), 5)
    counts[0] += n_users - n_noise - counts.sum()
    counts = np.sort(counts)[::-1]
    labels = np.concatenate([np.full(c, s) for s, c in enumerate(counts)] + [np.full(n_noise, NOISE)]).astype(np.int32)
    n_users = labels.size
    centres = np.array([[6 * math.cos(2 * math.pi * s / n_segments), 6 * math.sin(2 * math.pi * s / n_segments)]
                        for s in range(n_segments)])  # fmt: skip
    xy = np.empty((n_users, 2), np.float32)
    nearest = labels.copy()
    for i, lab in enumerate(labels):
        if lab == NOISE:
            xy[i] = rng.uniform(-8, 8, 2)
            nearest[i] = int(np.argmin(((centres - xy[i]) ** 2).sum(axis=1)))
        else:
            xy[i] = centres[lab] + rng.normal(0, 1.0, 2)
    member = np.where(labels == NOISE, 0.0, rng.uniform(0.3, 1.0, n_users)).astype(np.float32)
    assignments = pl.DataFrame({
        "user_id": [str(100 + i) for i in range(n_users)], "segment_id": labels, "membership": member,
        "nearest_segment": nearest, "nearest_membership": np.where(labels == NOISE, rng.uniform(0.05, 0.4, n_users), member),
        "soft_assigned": np.zeros(n_users, bool), "x": xy[:, 0], "y": xy[:, 1],
    }, schema=ASSIGNMENTS)  # fmt: skip

    all_gender = {"M": 0.71, "F": 0.29}
    all_occ = {o: 1 / len(OCCUPATIONS) for o in OCCUPATIONS}
    profiles = []
    for sid in [*range(n_segments), NOISE]:
        size = int((labels == sid).sum())
        if size == 0:
            continue
        g = rng.permutation(len(GENRES))[:5]
        cats = [GENRES[j] for j in g]
        lifts = sorted(rng.uniform(1.05, 3.5, 5).round(2).tolist(), reverse=True)
        items = [TITLES[j] for j in rng.permutation(len(TITLES))[:8]]
        if sid == 0:
            items[1] = HOSTILE_TITLE
        name = (
            HOSTILE_NAME
            if sid == 0
            else ("Outliers (no clear segment)" if sid == NOISE else f"{cats[0]} & {cats[1]} fans")
        )
        mean_r = float(rng.uniform(3.1, 4.0))
        act = float(rng.uniform(40, 160))
        male = float(rng.uniform(0.5, 0.9))
        occ = rng.dirichlet(np.ones(len(OCCUPATIONS)))
        demo = [] if not complete else [
            AttributeProfile("gender", "categorical", {"M": male, "F": 1 - male}, all_gender,
                             f"{100 * male:.0f} % M (all users 71 %)"),
            AttributeProfile("occupation", "categorical", dict(zip(OCCUPATIONS, occ.tolist())), all_occ,
                             f"{100 * occ.max():.0f} % {OCCUPATIONS[int(occ.argmax())]} (all users 12 %)"),
            AttributeProfile("age", "numeric", {"mean": float(rng.uniform(25, 45)), "median": 30.0},
                             {"mean": 34.0, "median": 31.0}, "mean age 33 (all users 34)"),
        ]  # fmt: skip
        members = assignments.filter(pl.col("segment_id") == sid)["user_id"].to_list()
        profiles.append(SegmentProfile(
            segment_id=sid, name=name,
            description=f"{name}: {size} users ({100 * size / n_users:.1f} % of all). They choose "
                        + ", ".join(f"{c} ({lift:.1f}×)" for c, lift in zip(cats[:3], lifts)) + " more than the "
                        f"average user. Distinctive titles: {', '.join(items[:3])}.",
            size=size, share=size / n_users, keywords=[WORDS[j] for j in rng.permutation(len(WORDS))[:8]],
            top_categories=cats, category_lift=lifts, category_share=rng.uniform(0.02, 0.3, 5).round(3).tolist(),
            top_item_ids=[str(j) for j in range(len(items))], top_items=items,
            item_lift=sorted(rng.uniform(1.2, 6.0, len(items)).round(2).tolist(), reverse=True),
            popular_items=[TITLES[j] for j in rng.permutation(len(TITLES))[:10]], mean_rating=mean_r,
            rating_std=float(rng.uniform(0.8, 1.2)), mean_activity=act, median_activity=act * 0.8,
            rating_hist=_hist(rng, mean_r), demographics=demo, representative_users=members[:5],
            stability=None if sid == NOISE or not complete else STABILITY.get(sid, 0.9),
        ))  # fmt: skip
    if not complete:
        return RunFolder(title=title, run_id="synthetic-minimal", config={}, metrics={}, assignments=assignments,
                           profiles=profiles)  # fmt: skip
    ids = [p.segment_id for p in profiles]

    def rating_block(base: float) -> dict:
        per = {str(s): {"rmse": base + float(rng.uniform(-0.1, 0.25)), "mae": base * 0.79, "n": int(rng.integers(50, 900)),
                        "rmse_ci": None} for s in ids}  # fmt: skip
        for v in per.values():
            v["rmse_ci"] = [v["rmse"] - 0.03, v["rmse"] + 0.03]
        return {"rmse": base, "mae": base * 0.79, "rmse_ci": [base - 0.008, base + 0.008],
                "mae_ci": [base * 0.79 - 0.006, base * 0.79 + 0.006], "n": 10000, "per_segment": per}  # fmt: skip

    glob, segd = rating_block(0.9124), rating_block(0.9121)
    change = dict(zip([str(s) for s in ids], rng.uniform(-0.006, 0.004, len(ids)).tolist()))
    for s, d in change.items():  # the per-segment models' errors follow from the global ones
        g = glob["per_segment"][s]
        segd["per_segment"][s] = {**g, "rmse": g["rmse"] + d, "mae": g["mae"] + d * 0.8,
                                  "rmse_ci": [g["rmse"] + d - 0.03, g["rmse"] + d + 0.03]}  # fmt: skip
    gain = {"rmse_change": -0.0003, "ci": [-0.0011, 0.0005], "helped": False, "hurt": False,
            "per_segment": {s: {"rmse_change": d, "ci": [d - 0.004, d + 0.004], "n": glob["per_segment"][s]["n"]}
                            for s, d in change.items()}}  # fmt: skip

    def rank_block(base: float) -> dict:
        per = {str(s): {"precision@10": base * rng.uniform(0.6, 1.4), "ndcg@10": base * rng.uniform(0.6, 1.4),
                        "recall@10": base * 0.8} for s in ids}  # fmt: skip
        return {"precision@10": base, "precision@10_ci": [base - 0.01, base + 0.01], "recall@10": base * 0.8,
                "ndcg@10": base * 1.1, "ndcg@10_ci": [base * 1.1 - 0.012, base * 1.1 + 0.012], "hit@10": 0.61,
                "per_segment": per}  # fmt: skip

    def beyond_block() -> dict:
        return {"coverage": float(rng.uniform(0.05, 0.4)), "novelty": float(rng.uniform(8, 11)),
                "ils@10": float(rng.uniform(0.3, 0.6)),
                "per_segment": {str(s): {"novelty": float(rng.uniform(8, 11)), "ils@10": float(rng.uniform(0.3, 0.6))}
                                for s in ids}}  # fmt: skip

    metrics = {
        "run_id": "synthetic",
        "data": {
            "name": "synthetic-ml",
            "n_users": n_users,
            "n_items": 1682,
            "n_interactions": n_users * 106,
            "implicit": False,
            "density": 0.063,
            "rating_mean": 3.53,
            "split": "random90",
            "n_train": n_users * 86,
            "n_valid": n_users * 10,
            "n_test": n_users * 10,
            "notes": ["ratings from the recbole wheel", "2 duplicate rows dropped <b>kept latest</b>"],
            "user_attributes": ["gender", "occupation", "age"],
        },  # fmt: skip
        "segmentation": {
            "n_segments": n_segments,
            "n_users": n_users,
            "noise_share": n_noise / n_users,
            "soft_assigned": 0,
            "min_cluster_size": 15,
            "sizes": {str(s): int((labels == s).sum()) for s in ids},
            "mean_membership": 0.71,
            "seconds": 3.2,
            "silhouette": 0.41,
            "calinski_harabasz": 812.3,
            "dbcv": 0.22,
            "selection": {
                "min_cluster_size": 15,
                "min_samples": 10,
                "cluster_selection_method": "leaf",
                "criterion": "stability * (1 + DBCV) / 2 among candidates with min_segments..max_segments segments",
                "reason": "min_cluster_size 15 with leaf selection scored best (stability 0.91, DBCV 0.34)",
                "n_points": n_users,
                "seconds": 1.2,
                "chosen": {
                    "min_cluster_size": 15,
                    "cluster_selection_method": "leaf",
                    "n_segments": n_segments,
                    "noise_share": 0.1,
                    "dbcv": 0.34,
                    "stability": 0.91,
                    "score": 0.61,
                    "eligible": True,
                },
                "candidates": [
                    {
                        "min_cluster_size": 15,
                        "cluster_selection_method": "leaf",
                        "n_segments": n_segments,
                        "noise_share": 0.1,
                        "dbcv": 0.34,
                        "stability": 0.91,
                        "score": 0.61,
                        "eligible": True,
                    },
                    {
                        "min_cluster_size": 15,
                        "cluster_selection_method": "eom",
                        "n_segments": 2,
                        "noise_share": 0.02,
                        "dbcv": 0.12,
                        "stability": 0.98,
                        "score": 0.55,
                        "eligible": False,
                    },
                ],
            },
            "stability": {
                "seed_ari": {"mean": 0.87, "min": 0.85, "values": [0.89, 0.85]},
                "bootstrap_ari": {"mean": 0.9, "min": 0.88, "values": [0.92, 0.88]},
                "seeds": [seed, seed + 1, seed + 2],
                "fraction": 0.8,
                "n_segments": [n_segments, n_segments, n_segments],
                "seconds": 14.2,
                "n_users": n_users,
                "per_segment": {
                    str(s): {
                        "jaccard": STABILITY.get(s, 0.9),
                        "min": STABILITY.get(s, 0.9) - 0.1,
                        "n_refits": 4,
                        "dissolved": int(STABILITY.get(s, 0.9) <= 0.5),
                        **({"fate": "merged", "merged_with": 2} if s == 1 else {}),
                    }
                    for s in ids
                    if s != NOISE
                },
            },
        },  # fmt: skip
        "rating": {
            "global": glob,
            "segmented": segd,
            "gain": gain,
            "random_partition_control": {
                "rmse": glob["rmse"] + 0.0002,
                "rmse_change": 0.0002,
                "ci": [-0.0006, 0.0009],
                "segments_kept": 0,
            },
        },  # fmt: skip
        "ranking": {"most-popular": rank_block(0.11), "item-knn": rank_block(0.25)},
        "beyond_accuracy": {"most-popular": beyond_block(), "item-knn": beyond_block()},
        "fairness": {
            "rating": {
                "global": {"gender": {"M": 0.91, "F": 0.93, "gap": 0.02}},
                "segmented": {"gender": {"M": 0.91, "F": 0.92, "gap": 0.01}},
            },
            "ranking": {"item-knn": {"activity": {"light": 0.21, "heavy": 0.29, "gap": 0.08}}},
        },  # fmt: skip
        "models": {"global": {"kind": "biased MF", "embedding_size": 64, "epochs": 23, "valid_rmse": 0.918}},
        "timings": {
            "load": 0.8,
            "embed_items": 7.1,
            "represent": 0.4,
            "segment": 41.2,
            "describe": 0.9,
            "train_global": 12.5,
            "fine_tune": 9.8,
            "evaluate": 4.4,
            "embedding": {"device": "cpu", "texts": 1682, "texts_per_second": 235.0},
            "rankers": {"most-popular": 0.1, "item-knn": 1.9},
        },  # fmt: skip
        "versions": {"python": "3.11.7", "segflow": "0.1.0", "polars": "2.1.0", "torch": "2.13.0", "prefect": None},
    }
    segment_models = pl.DataFrame({
        "segment_id": list(range(n_segments)), "strategy": ["finetune"] * n_segments,
        "n_train": rng.integers(1000, 20000, n_segments), "n_valid": rng.integers(100, 2000, n_segments),
        "valid_rmse_global": rng.uniform(0.85, 1.0, n_segments),
    }).with_columns((pl.col("valid_rmse_global") + pl.Series(rng.uniform(-0.01, 0.01, n_segments))).alias("valid_rmse_segment"))  # fmt: skip
    segment_models = segment_models.with_columns(
        (pl.col("valid_rmse_segment") < pl.col("valid_rmse_global")).alias("kept")
    )
    recs = {s: [(str(j), t, round(float(sc), 3)) for j, (t, sc) in
                enumerate(zip([HOSTILE_TITLE] + TITLES[:9] if s == 0 else TITLES[s:s + 10], np.linspace(0.8, 0.2, 10)))]
            for s in ids}  # fmt: skip
    neighbours = {s: [(o, round(float(rng.uniform(0.5, 0.95)), 3)) for o in range(n_segments) if o != s][:3]
                  for s in range(n_segments)}  # fmt: skip
    config = {
        "seed": 42, "output_dir": "runs",
        "data": {"source": "movielens-100k", "split": "random90", "max_users": None},
        "encoder": {"model": "all-MiniLM-L6-v2", "device": "auto", "batch_size": 64},
        "represent": {"method": "item-mean"},
        "reduce": {"n_components": 5, "n_neighbors": 15, "min_dist": 0.0, "metric": "cosine"},
        "cluster": {"min_cluster_size": None, "min_samples": 10, "cluster_selection_method": "eom",
                    "outlier_membership": None},
        "predictor": {"model": "blend", "per_segment": {"enabled": True}},
        "ranker": {"rankers": ["most-popular", "item-knn"]},
        "evaluate": {"k": 10, "bootstrap": 200},
        "report": {"title": title, "top_n": 10},
    }  # fmt: skip
    return RunFolder(title=title, run_id="synthetic-20250101-000000", config=config, metrics=metrics,
                       assignments=assignments, profiles=profiles, segment_models=segment_models,
                       recommendations=recs, neighbours=neighbours, category_lift=None)  # fmt: skip


if __name__ == "__main__":
    import argparse

    from reports import render_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, default=120)
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--minimal", action="store_true")
    args = ap.parse_args()
    print(render_report(make_report_input(args.users, args.segments, complete=not args.minimal), args.out))


def write_run_folder(data: RunFolder, folder: Path) -> Path:
    """A complete run folder holding ``data`` (what :func:`segmentation.run_folder.load_run_folder` reads), as the
    library writes it: data files, ``manifest.json``, ``report_input.json`` and ``comparison.json`` if any."""
    import json

    from segmentation.describe import profiles_to_frame
    from segmentation.run_folder import COMPARISON, write_run_details
    from segmentation.runs import SCHEMA_VERSION

    folder.mkdir(parents=True, exist_ok=True)
    data.assignments.write_parquet(folder / "users.parquet")
    profiles_to_frame(data.profiles).write_parquet(folder / "segments.parquet")
    (folder / "metrics.json").write_text(json.dumps(data.metrics))
    (folder / "manifest.json").write_text(json.dumps({"run_id": data.run_id, "schema_version": SCHEMA_VERSION}))
    write_run_details(folder, data)
    if data.comparison is not None:
        (folder / COMPARISON).write_text(json.dumps(data.comparison))
    return folder


def make_run_pair(root: Path, *, n_users: int = 200, moved: float = 0.15, seed: int = 0) -> tuple[Path, Path]:
    """Two run folders: B is A with segments 1 and 2 renumbered, ``moved`` of the users reassigned at random,
    and 10 users replaced by new ones; ``rating.global.rmse`` drifts by +0.01."""
    import dataclasses

    a = make_report_input(n_users=n_users, n_segments=4, seed=seed)
    rng = np.random.default_rng(seed + 1)
    seg = a.assignments["segment_id"].to_numpy().copy()
    swap = {1: 2, 2: 1}
    seg = np.array([swap.get(int(s), int(s)) for s in seg], dtype=np.int32)
    move = rng.random(seg.size) < moved
    seg[move] = rng.choice([-1, 0, 1, 2, 3], int(move.sum()))
    b_assign = a.assignments.with_columns(pl.Series("segment_id", seg, dtype=pl.Int32))
    b_assign = pl.concat([
        b_assign.head(b_assign.height - 10),
        b_assign.tail(10).with_columns(pl.format("new{}", pl.col("user_id")).alias("user_id")),
    ])  # fmt: skip
    profiles = [dataclasses.replace(p, segment_id=swap.get(p.segment_id, p.segment_id)) for p in a.profiles]
    metrics = {**a.metrics, "rating": {**a.metrics["rating"], "global": {**a.metrics["rating"]["global"]}}}
    metrics["rating"]["global"]["rmse"] += 0.01
    per = a.metrics["rating"]["global"]["per_segment"]
    metrics["rating"]["global"]["per_segment"] = {str(swap.get(int(k), int(k))): v for k, v in per.items()}
    b = dataclasses.replace(a, assignments=b_assign, profiles=profiles, metrics=metrics)
    return write_run_folder(a, root / "run-a"), write_run_folder(b, root / "run-b")
