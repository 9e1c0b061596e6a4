"""Encoder domain adaptation: the base MiniLM encoder against the same encoder fine-tuned contrastively.

The fine-tune (``embeddings.finetune``) trains on (user profile, liked item description) pairs of
TRAIN rows (random90 split, rating >= 4, at most 5 items per user) with
MultipleNegativesRankingLoss, with the pipeline's default settings (``EncoderConfig``). Each
fine-tune runs in its own child process, so its seconds and peak memory (``VmHWM``) are its own.

Measured side by side, base and fine-tuned, in one run:

* planted behaviour (``segmentation.planted`` over ML-100k's items, truth known): ARI of the
  pipeline's default representation and segmentation (``item-mean+liked-category-hist`` built on
  the item embeddings, UMAP + HDBSCAN with default settings) against the truth; also with the
  ``profile`` representation (the embedding of the user's behaviour text, what the fine-tune
  trains directly);
* item retrieval, on planted behaviour and on MovieLens 100k: for every user with held-out liked
  items (test rows rated >= 4), all items not in the user's train rows ranked by cosine between
  the user's profile embedding (profile from train rows) and the item embeddings; recall@K =
  held-out liked items in the top K / held-out liked items, averaged over users. The (user, item)
  pairs trained on and the held-out (user, item) pairs are disjoint (checked).

    python benchmarks/encoder_finetune.py                    # 2,000 planted users + ML-100k (~15 min, 2 cores)
    python benchmarks/encoder_finetune.py --users 1000 --no-ml100k

Rows (``benchmarks/results/encoder_finetune.json``, a JSON list): one per data set and encoder
(``base``, ``finetuned``) with ``ari``, ``ari_excl_noise``, ``n_clusters``, ``ari_profile``,
``recall@10``, ``recall@50``, ``random_recall@10``/``@50`` (the expectation of a random
ranking), ``embed_seconds``; the ``finetuned`` rows add ``finetune_seconds``, ``finetune_peak_mib``,
``pairs`` and the fine-tune's losses; one ``finetuned / base`` row per data set holds the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "encoder_finetune.json"
KS = (10, 50)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ child: one fine-tune


def child_finetune(spec: dict) -> dict:
    from benchmarks.segmentation import _rss_mib
    from embeddings.finetune import finetune_encoder, read_finetune_info

    _threads(spec["threads"])
    pairs = pl.read_parquet(spec["pairs"])
    t = time.perf_counter()
    path = finetune_encoder(pairs, base_model=spec["base_model"], output_dir=Path(spec["output_dir"]),
                            epochs=spec["epochs"], batch_size=spec["batch_size"], learning_rate=spec["learning_rate"],
                            max_pairs=spec["max_pairs"], seed=spec["seed"], device="cpu")  # fmt: skip
    return {"path": str(path), "seconds": round(time.perf_counter() - t, 2), "peak_mib": round(_rss_mib(), 1),
            "info": read_finetune_info(path)}  # fmt: skip


def _finetune_in_child(spec: dict, timeout: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"fine-tune child failed (exit {out.returncode}): {(out.stderr or out.stdout)[-2000:]}")


# ------------------------------------------------------------------------------------------ parent


def _recall(profile_vecs: np.ndarray, user_ids: list[str], item_vecs: np.ndarray, item_ids: list[str],
            train: pl.DataFrame, heldout: pl.DataFrame) -> dict:  # fmt: skip
    """Mean recall@K of held-out liked items, ranking every item the user has not rated in train by cosine."""
    upos = {u: i for i, u in enumerate(user_ids)}
    ipos = {it: j for j, it in enumerate(item_ids)}
    seen = train.group_by("user_id").agg("item_id")
    seen = dict(zip(seen["user_id"].to_list(), seen["item_id"].to_list()))
    held = heldout.group_by("user_id").agg("item_id").sort("user_id")
    recalls = {k: [] for k in KS}
    rand = {k: [] for k in KS}
    users = [u for u in held["user_id"].to_list() if u in upos]
    targets = dict(zip(held["user_id"].to_list(), held["item_id"].to_list()))
    for lo in range(0, len(users), 512):
        chunk = users[lo : lo + 512]
        scores = profile_vecs[[upos[u] for u in chunk]] @ item_vecs.T
        for r, u in enumerate(chunk):
            s = scores[r]
            s[[ipos[i] for i in seen.get(u, [])]] = -np.inf
            top = np.argpartition(-s, max(KS))[: max(KS)]
            top = top[np.argsort(-s[top], kind="stable")]
            want = {ipos[i] for i in targets[u]}
            n_candidates = len(item_ids) - len(seen.get(u, []))
            for k in KS:
                recalls[k].append(len(want & set(top[:k].tolist())) / len(want))
                rand[k].append(min(1.0, k / n_candidates))
    out = {"heldout_users": len(users), "heldout_items": int(sum(len(targets[u]) for u in users))}
    for k in KS:
        out[f"recall@{k}"] = round(float(np.mean(recalls[k])), 4)
        out[f"random_recall@{k}"] = round(float(np.mean(rand[k])), 4)
    return out


def _encode(model: str, cache: Path, texts: list[str]) -> tuple[np.ndarray, float]:
    from embeddings.encoder import Encoder

    enc = Encoder(model, device="cpu", batch_size=64, cache_dir=cache)
    t = time.perf_counter()
    vecs = enc.encode(texts)
    return vecs, time.perf_counter() - t


def _segment_ari(train: pl.DataFrame, items: pl.DataFrame, item_emb, profile_emb, truth: pl.DataFrame, method: str,
                 seed: int) -> dict:  # fmt: skip
    from benchmarks.segmentation import _scores
    from segmentation.cluster import fit_segments
    from segmentation.config import ClusterConfig, ReduceConfig
    from segmentation.represent import build_user_vectors

    users = build_user_vectors(train, item_emb, method=method, items=items, profile_embeddings=profile_emb, seed=seed)
    t = time.perf_counter()
    seg = fit_segments(users, ReduceConfig(), ClusterConfig(), seed=seed)
    pos = dict(zip(truth["user_id"].to_list(), truth["segment_id"].to_list()))
    labels = seg.assignments["segment_id"].to_numpy()
    y = np.array([pos[u] for u in seg.assignments["user_id"].to_list()])
    return {**_scores(y, labels), "segment_seconds": round(time.perf_counter() - t, 1)}


def run_data(name: str, interactions: pl.DataFrame, items: pl.DataFrame, truth: pl.DataFrame | None,
             args: argparse.Namespace, workdir: Path) -> list[dict]:  # fmt: skip
    from embeddings.encoder import Embeddings
    from embeddings.finetune import liked_pairs
    from embeddings.text import describe_items, describe_users
    from segmentation.config import EncoderConfig, RepresentConfig
    from segmentation.data import default_cache_dir, split_ratings

    enc_cfg = EncoderConfig()
    split = split_ratings(interactions, "random90", seed=args.seed)
    train = split.train_full
    profiles = describe_users(train, items)
    pairs = liked_pairs(train, items, profiles, min_rating=4, max_per_user=5, seed=args.seed)
    heldout = split.test.filter(pl.col("rating") >= 4).select("user_id", "item_id")
    pair_keys = set(zip(pairs["user_id"], pairs["item_id"]))
    held_keys = set(zip(heldout["user_id"], heldout["item_id"]))
    assert not pair_keys & held_keys, "train pairs and held-out items overlap"
    assert not held_keys & set(zip(train["user_id"], train["item_id"])), "held-out items among train rows"
    print(f"[{name}] {interactions['user_id'].n_unique()} users, {train.height} train rows, {pairs.height} pairs, "
          f"{len(held_keys)} held-out liked (user, item)", flush=True)  # fmt: skip

    folder = workdir / f"finetuned-{name}-s{args.seed}-{time.strftime('%Y%m%d%H%M%S')}"
    pairs_file = workdir / f"pairs-{name}.parquet"
    pairs.write_parquet(pairs_file)
    spec = {"pairs": str(pairs_file), "output_dir": str(folder), "base_model": enc_cfg.model,
            "epochs": args.epochs or enc_cfg.finetune_epochs, "batch_size": args.batch_size or enc_cfg.finetune_batch_size,
            "learning_rate": args.lr or enc_cfg.finetune_learning_rate,
            "max_pairs": args.max_pairs or enc_cfg.finetune_max_pairs, "seed": args.seed, "threads": args.threads}  # fmt: skip
    ft = _finetune_in_child(spec, args.timeout)
    info = ft["info"] or {}
    print(f"[{name}] fine-tuned on {info.get('pairs_used')} pairs ({info.get('steps')} steps) in {ft['seconds']:.0f}s, "
          f"peak {ft['peak_mib']:.0f} MiB, loss {info.get('loss_first')} -> {info.get('loss_last')}", flush=True)  # fmt: skip

    texts = describe_items(items)
    item_ids = texts["item_id"].to_list()
    user_ids = profiles["user_id"].to_list()
    rows = []
    for encoder, model, cache in (
        ("base", enc_cfg.model, default_cache_dir() / "embeddings"),
        ("finetuned", ft["path"], workdir / "embeddings" / f"ft-{str(info.get('weights_sha256', ''))[:12]}"),
    ):
        iv, s1 = _encode(model, cache, texts["description"].to_list())
        pv, s2 = _encode(model, cache, profiles["profile"].to_list())
        row = {"data": name, "encoder": encoder, "n_users": len(user_ids), "n_items": len(item_ids),
               **_recall(pv, user_ids, iv, item_ids, train, heldout), "embed_seconds": round(s1 + s2, 1)}  # fmt: skip
        if truth is not None:
            item_emb = Embeddings(np.asarray(item_ids, dtype=object), iv, encoder)
            prof_emb = Embeddings(np.asarray(user_ids, dtype=object), pv, encoder)
            default = _segment_ari(train, items, item_emb, None, truth, RepresentConfig().method, args.seed)
            row.update({"representation": RepresentConfig().method, **default})
            if not args.no_profile_ari:
                prof = _segment_ari(train, items, item_emb, prof_emb, truth, "profile", args.seed)
                row.update({"ari_profile": prof["ari"], "n_clusters_profile": prof["n_clusters"]})
        if encoder == "finetuned":
            row.update({"finetune_seconds": ft["seconds"], "finetune_peak_mib": ft["peak_mib"],
                        "pairs": info.get("pairs_used"), "pairs_available": pairs.height, "steps": info.get("steps"),
                        "epochs": info.get("epochs"), "batch_size": info.get("batch_size"),
                        "learning_rate": info.get("learning_rate"), "loss_first": info.get("loss_first"),
                        "loss_last": info.get("loss_last")})  # fmt: skip
        print(f"[{name}] {encoder}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("data", "encoder")),
              flush=True)  # fmt: skip
        rows.append(row)
    base, tuned = rows
    ratio = {"data": name, "encoder": "finetuned / base"}
    for key in ("ari", "ari_excl_noise", "ari_profile", "recall@10", "recall@50"):
        if base.get(key) not in (None, 0) and tuned.get(key) is not None:
            ratio[key] = round(tuned[key] / base[key], 3)
    rows.append(ratio)
    return rows


def markdown_table(rows: list[dict]) -> str:
    def f(v, spec: str = ".3f") -> str:
        return "" if v is None else format(v, spec)

    out = ["| data | encoder | ARI (default repr.) | ARI excl. noise | segments | ARI (profile repr.) | recall@10 | "
           "recall@50 | fine-tune s | fine-tune peak MiB | embed s |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        out.append(f"| {r['data']} | {r['encoder']} | {f(r.get('ari'))} | {f(r.get('ari_excl_noise'))} | "
                   f"{r.get('n_clusters', '')} | {f(r.get('ari_profile'))} | {f(r.get('recall@10'))} | "
                   f"{f(r.get('recall@50'))} | {f(r.get('finetune_seconds'), '.0f')} | "
                   f"{f(r.get('finetune_peak_mib'), '.0f')} | {f(r.get('embed_seconds'), '.0f')} |")  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--users", type=int, default=2000, help="planted-behaviour users")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ml100k", action="store_true", help="skip the MovieLens 100k retrieval rows")
    p.add_argument("--no-profile-ari", action="store_true", help="skip the ARI of the 'profile' representation")
    p.add_argument("--epochs", type=int, help="fine-tune epochs (default: EncoderConfig's)")
    p.add_argument("--batch-size", type=int, help="fine-tune batch size (default: EncoderConfig's)")
    p.add_argument("--lr", type=float, help="fine-tune learning rate (default: EncoderConfig's)")
    p.add_argument("--max-pairs", type=int, help="fine-tune pairs (default: EncoderConfig's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "segflow-bench-finetune")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    args = p.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return 0
    if args.child:
        print("RESULT " + json.dumps(child_finetune(json.loads(args.child))), flush=True)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _threads(args.threads)
    from benchmarks.segmentation import BEHAVIOUR_K, _ml100k_popularity, _warm_umap
    from segmentation.data import load_movielens_100k
    from segmentation.planted import planted_behaviour

    args.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"encoder fine-tune benchmark on {platform.node()} ({os.cpu_count()} cores), workdir {args.workdir}", flush=True
    )
    t0 = time.perf_counter()
    _warm_umap()
    ds = load_movielens_100k()
    pb = planted_behaviour(ds.items, args.users, k=BEHAVIOUR_K, item_popularity=_ml100k_popularity(ds),
                           rng=np.random.default_rng(args.seed))  # fmt: skip
    rows = run_data("planted-behaviour", pb.interactions, ds.items, pb.truth, args, args.workdir)
    if not args.no_ml100k:
        rows += run_data("movielens-100k", ds.interactions, ds.items, None, args, args.workdir)
    stamp = {
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
    }
    rows = [{**r, **stamp} for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows))
    print(f"wrote {len(rows)} rows to {args.out} in {time.perf_counter() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
