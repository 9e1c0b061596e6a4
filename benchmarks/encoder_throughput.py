"""Encoder throughput: segflow's embedding path against raw sentence-transformers, same texts, same run.

segflow's path is ``embeddings.encoder.Encoder.encode`` as a first run calls it (an empty on-disk
cache, so every text is hashed, embedded, written to the cache and read back in input order). Raw is
``SentenceTransformer(model).encode(texts)`` with its defaults (batch 32, no normalisation). Both load
all-MiniLM-L6-v2 from the same folder, run on the CPU with torch's default thread count, and are
warmed up on 64 texts first. Passes alternate (raw, segflow, then segflow, raw, ...) so that a shared
machine's load falls on both alike; ``ratio`` is raw seconds / segflow seconds summed over the passes
(above 1: segflow is faster); on the ML-100k texts a third arm, raw with segflow's batch size (64) and
normalisation, gives ``ratio_same_settings``: what segflow's own work (hashing, the cache, chunks, order)
costs. ``cpu_ratio`` the same with the process's CPU seconds, the steadier
figure on a crowded machine (the work done, not the time waited for a core).

Texts: MovieLens 100k's 1,682 item descriptions (``embeddings.text.describe_items``; 3 rounds) and
20,000 synthetic shop items (``segmentation.synthetic.synthetic_log``'s catalogue through the same
``describe_items``: "Name. Genres: category, attribute. description"; 1 round).

Also, on the ML-100k texts: torch threads (1 against the default, alternating), segflow's batch size
(16, 32, 64, 128; ``--batch-sizes``), and whether sentence-transformers' ONNX backend (``optimum``, ``onnxruntime``) can be used
with the installed transformers.

    python benchmarks/encoder_throughput.py                  # ~4 min on 2 quiet cores (far longer when crowded)
    python benchmarks/encoder_throughput.py --threads 1 --synthetic 5000 --rounds 2 --batch-sizes  # crowded

Rows go to ``benchmarks/results/encoder_throughput.json`` (a JSON list).

``--int8`` measures only ``encoder.quantize = "int8"`` against fp32 (``Encoder(quantize=...)``, no cache, both models
loaded once, alternating passes) on the ML-100k texts and ``--synthetic`` synthetic texts: texts/s, the cosine of
each text's two vectors, and how many of each text's 10 nearest neighbours (by fp32 vectors, itself excluded) the
int8 vectors keep. Rows go to ``benchmarks/results/encoder_quantize.json``.

    python benchmarks/encoder_throughput.py --int8 --threads 1 --synthetic 3000 --rounds 2

``--int8 --ari N`` (``--rounds 0``: alone) adds segment quality both ways: ``N`` users of planted behaviour
over the ML-100k items (``segmentation.planted.planted_behaviour``, 12 segments, as ``benchmarks/segmentation.py``;
one row per seed of ``--ari-seeds``), user vectors built from the fp32 and from the int8 item vectors (the default
representation and ``item-mean``, the pure embedding one), segmented with the default UMAP + HDBSCAN settings
(same seed); ARI against the planted segments.

    python benchmarks/encoder_throughput.py --int8 --threads 1 --rounds 0 --ari 3000 --ari-seeds 0 1 \\
        --out benchmarks/results/encoder_quantize_ari.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "encoder_throughput.json"
RESULTS_INT8 = ROOT / "benchmarks" / "results" / "encoder_quantize.json"


def ml100k_texts() -> list[str]:
    from embeddings.text import describe_items
    from segmentation.data import load_movielens_100k

    return describe_items(load_movielens_100k().items)["description"].to_list()


def synthetic_texts(n: int) -> list[str]:
    from embeddings.text import describe_items
    from segmentation.synthetic import synthetic_log

    items = synthetic_log(1000, n, seed=0).items
    frame = items.select(pl.col("item_id"), pl.col("name").alias("title"), pl.lit(None, pl.Int32).alias("year"),
                         pl.col("categories").str.split("|"), pl.col("description").alias("text"))  # fmt: skip
    return describe_items(frame)["description"].to_list()


def _segflow(texts: list[str], batch_size: int = 64) -> tuple[float, np.ndarray]:
    from embeddings.encoder import Encoder

    with tempfile.TemporaryDirectory(prefix="segflow-bench-enc-") as tmp:
        enc = Encoder(device="cpu", batch_size=batch_size, cache_dir=Path(tmp))
        enc._st = MODEL["st"]  # the model loaded once; its load time is not the path's
        enc.device_used = "cpu"
        t, c = time.perf_counter(), time.process_time()
        v = enc.encode(texts)
        CPU["last"] = time.process_time() - c
        return time.perf_counter() - t, v


def _raw(texts: list[str], **settings) -> tuple[float, np.ndarray]:
    t, c = time.perf_counter(), time.process_time()
    v = MODEL["raw"].encode(texts, **settings)
    CPU["last"] = time.process_time() - c
    return time.perf_counter() - t, v


CPU: dict = {}


MODEL: dict = {}


def compare(name: str, texts: list[str], rounds: int, same: bool = False) -> dict:
    """Alternating passes of raw (defaults), segflow and, with ``same``, raw with segflow's batch size and normalisation."""
    arms = ["raw", "segflow"] + (["raw, segflow's settings"] if same else [])
    wall: dict = {a: [] for a in arms}
    cpu: dict = {a: [] for a in arms}
    out: dict = {}
    for r in range(rounds):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            if arm == "segflow":
                s, out[arm] = _segflow(texts)
            else:
                s, out[arm] = _raw(texts, **({"batch_size": 64, "normalize_embeddings": True} if arm != "raw" else {}))
            wall[arm].append(s)
            cpu[arm].append(CPU["last"])
            print(f"  {name} {arm}: {len(texts) / s:.0f} texts/s, {CPU['last']:.1f} CPU s", flush=True)
    ref = out["raw"] / np.linalg.norm(out["raw"], axis=1, keepdims=True)
    n = len(texts)
    row = {"data": name, "texts": n, "distinct": len(set(texts)), "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
           "rounds": rounds, "raw_texts_per_s": round(n * rounds / sum(wall["raw"]), 1),
           "segflow_texts_per_s": round(n * rounds / sum(wall["segflow"]), 1),
           "ratio": round(sum(wall["raw"]) / sum(wall["segflow"]), 3),
           "raw_s": [round(x, 2) for x in wall["raw"]], "segflow_s": [round(x, 2) for x in wall["segflow"]],
           "raw_cpu_s": round(sum(cpu["raw"]), 2), "segflow_cpu_s": round(sum(cpu["segflow"]), 2),
           "cpu_ratio": round(sum(cpu["raw"]) / sum(cpu["segflow"]), 3),
           "max_abs_diff": float(np.abs(out["segflow"] - ref).max())}  # fmt: skip
    if same:
        a = "raw, segflow's settings"
        row.update({"raw_same_settings_texts_per_s": round(n * rounds / sum(wall[a]), 1),
                    "ratio_same_settings": round(sum(wall[a]) / sum(wall["segflow"]), 3),
                    "raw_same_settings_s": [round(x, 2) for x in wall[a]],
                    "cpu_ratio_same_settings": round(sum(cpu[a]) / sum(cpu["segflow"]), 3)})  # fmt: skip
    return row


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest rows (cosine, itself excluded) under ``a`` that ``b`` keeps."""

    def top(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argpartition(-sims, k, axis=1)[:, :k]

    ta, tb = top(a), top(b)
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(ta, tb)]))


def compare_int8(name: str, texts: list[str], rounds: int, encoders: dict) -> dict:
    """Alternating passes of segflow's encoder in fp32 and with ``quantize="int8"`` (no cache: every text embedded)."""
    wall: dict = {a: [] for a in encoders}
    cpu: dict = {a: [] for a in encoders}
    out: dict = {}
    for r in range(rounds):
        for arm in list(encoders) if r % 2 == 0 else list(encoders)[::-1]:
            t, c = time.perf_counter(), time.process_time()
            out[arm] = encoders[arm].encode(texts)
            wall[arm].append(time.perf_counter() - t)
            cpu[arm].append(time.process_time() - c)
            print(f"  {name} {arm}: {len(texts) / wall[arm][-1]:.0f} texts/s, {cpu[arm][-1]:.1f} CPU s", flush=True)
    n = len(texts)
    cos = np.sum(out["fp32"] * out["int8"], axis=1)
    return {"system": "segflow fp32 vs encoder.quantize = int8", "data": name, "texts": n,
            "mean_chars": round(float(np.mean([len(t) for t in texts])), 1), "rounds": rounds,
            "fp32_texts_per_s": round(n * rounds / sum(wall["fp32"]), 1),
            "int8_texts_per_s": round(n * rounds / sum(wall["int8"]), 1),
            "speedup": round(sum(wall["fp32"]) / sum(wall["int8"]), 3),
            "cpu_speedup": round(sum(cpu["fp32"]) / sum(cpu["int8"]), 3),
            "fp32_s": [round(x, 2) for x in wall["fp32"]], "int8_s": [round(x, 2) for x in wall["int8"]],
            "cosine_mean": round(float(cos.mean()), 4), "cosine_min": round(float(cos.min()), 4),
            "cosine_p05": round(float(np.quantile(cos, 0.05)), 4),
            "top10_overlap": round(neighbour_overlap(out["fp32"], out["int8"]), 4)}  # fmt: skip


def onnx_check() -> str:
    try:
        from optimum.onnxruntime import ORTModelForFeatureExtraction  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any failure means the backend is not usable here
        return f"not usable: {type(err).__name__}: {str(err)[:200]}"
    return "importable"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic", type=int, default=20_000, help="synthetic item texts (0: none)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds on the ML-100k texts")
    p.add_argument("--batch-sizes", action="store_true", help="also segflow with batch size 16, 32, 64, 128")
    p.add_argument("--threads", type=int, default=0, help="torch threads for every pass (0: torch's default)")
    p.add_argument("--int8", action="store_true", help="only fp32 against encoder.quantize = int8 (own results file)")
    p.add_argument("--ari", type=int, default=0, help="with --int8: planted users for the segment ARI (0: none)")
    p.add_argument("--ari-seeds", type=int, nargs="+", default=[0], help="planting and segmentation seeds for --ari")
    p.add_argument("--out", type=Path, default=None, help="results file (default: by the mode, see above)")
    args = p.parse_args()
    args.out = args.out or (RESULTS_INT8 if args.int8 else RESULTS)

    import torch
    from sentence_transformers import SentenceTransformer

    from embeddings.encoder import resolve_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.int8:
        return main_int8(args)
    path = resolve_model_path("all-MiniLM-L6-v2")
    MODEL["raw"] = SentenceTransformer(path, device="cpu")
    MODEL["st"] = SentenceTransformer(path, device="cpu")
    threads = torch.get_num_threads()
    ml = ml100k_texts()
    MODEL["raw"].encode(ml[:64])
    MODEL["st"].encode(ml[:64])
    common = {"model": "all-MiniLM-L6-v2", "device": "cpu", "torch_threads": threads, "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores"}  # fmt: skip
    rows = []

    def add(row: dict) -> None:
        row = {**row, **common, "load_avg": round(os.getloadavg()[0], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")  # after each row: a stopped run keeps what it measured

    add({"system": "segflow vs raw", **compare("ml-100k items", ml, args.rounds, same=True)})
    # torch threads: the default (one per core) against one, paired in alternating passes
    default = torch.get_num_threads() if not args.threads else os.cpu_count() or 1
    per = {default: 0.0, 1: 0.0}
    for r in range(2):
        for n in (default, 1) if r == 0 else (1, default):
            torch.set_num_threads(n)
            per[n] += _raw(ml)[0]
    torch.set_num_threads(threads)
    add({"system": f"raw, {default} torch threads vs 1", "data": "ml-100k items", "texts": len(ml), "rounds": 2,
         "raw_texts_per_s": round(2 * len(ml) / per[default], 1),
         "raw_1_thread_texts_per_s": round(2 * len(ml) / per[1], 1)})  # fmt: skip
    if args.synthetic:
        add({"system": "segflow vs raw", **compare(f"synthetic {args.synthetic / 1000:g}k items",
                                                   synthetic_texts(args.synthetic), 1)})  # fmt: skip
    if args.batch_sizes:
        for bs in (16, 32, 64, 128):
            s, _ = _segflow(ml, bs)
            add({"system": f"segflow, batch_size {bs}", "data": "ml-100k items", "texts": len(ml),
                 "segflow_texts_per_s": round(len(ml) / s, 1)})  # fmt: skip
    add({"system": "sentence-transformers backend='onnx'", "data": None, "status": onnx_check()})
    print(f"wrote {args.out}")


def main_int8(args: argparse.Namespace) -> None:
    import torch

    from embeddings.encoder import Encoder

    encoders = {q: Encoder(device="cpu", quantize="none" if q == "fp32" else q) for q in ("fp32", "int8")}
    ml = ml100k_texts()
    for enc in encoders.values():
        enc.encode(ml[:64])  # load (and quantise) once, warm up
    common = {"model": "all-MiniLM-L6-v2", "device": "cpu", "torch_threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}  # fmt: skip
    rows = []
    # --rounds 0: no throughput passes (the ARI alone)
    for name, texts, rounds in ([("ml-100k items", ml, args.rounds)] if args.rounds else []) + (
        [(f"synthetic {args.synthetic / 1000:g}k items", synthetic_texts(args.synthetic), args.rounds)]
        if args.synthetic and args.rounds else []):  # fmt: skip
        load = os.getloadavg()[0]
        row = {**compare_int8(name, texts, rounds, encoders), **common,
               "load_avg": round((load + os.getloadavg()[0]) / 2, 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    for seed in args.ari_seeds if args.ari else []:
        row = {**planted_ari(args.ari, encoders, ml, seed), **common, "load_avg": round(os.getloadavg()[0], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")


def planted_ari(n: int, encoders: dict, texts: list[str], seed: int = 0) -> dict:
    """ARI of the default segmentation of ``n`` planted users (``seed``), from fp32 and from int8 item vectors."""
    from sklearn.metrics import adjusted_rand_score

    from embeddings.encoder import Embeddings
    from embeddings.text import describe_items
    from segmentation.cluster import fit_segments
    from segmentation.config import ClusterConfig, ReduceConfig, RepresentConfig
    from segmentation.data import load_movielens_100k
    from segmentation.planted import planted_behaviour
    from segmentation.represent import build_user_vectors

    ds = load_movielens_100k()
    ids = describe_items(ds.items)["item_id"].to_numpy()
    counts = ds.interactions.group_by("item_id").len()  # as benchmarks/segmentation.py's _ml100k_popularity
    popularity = ds.items.select("item_id").join(counts, on="item_id", how="left", maintain_order="left")["len"]
    pb = planted_behaviour(ds.items, n, k=12, item_popularity=popularity.fill_null(0).to_numpy() + 1.0,
                           rng=np.random.default_rng(seed))  # fmt: skip
    truth = dict(zip(pb.truth["user_id"].to_list(), pb.truth["segment_id"].to_list()))
    row: dict = {"system": "segments from fp32 vs int8 item vectors", "data": f"planted behaviour, {n} users, "
                 f"ML-100k items, 12 segments, seed {seed}", "n_users": n}  # fmt: skip
    for method in (RepresentConfig().method, "item-mean"):
        for arm, enc in encoders.items():
            items = Embeddings(ids, enc.encode(texts), arm)
            users = build_user_vectors(pb.interactions, items, method=method, items=ds.items, seed=seed,
                                       centre=RepresentConfig().centre)  # fmt: skip
            t = time.perf_counter()
            seg = fit_segments(users, ReduceConfig(), ClusterConfig(), seed=seed)
            labels = dict(zip(seg.assignments["user_id"].to_list(), seg.assignments["segment_id"].to_list()))
            users_ = list(truth)
            ari = adjusted_rand_score([truth[u] for u in users_], [labels[u] for u in users_])
            row[f"ari_{method}_{arm}"] = round(float(ari), 4)
            print(f"  ARI {method} {arm}: {ari:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
    return row


if __name__ == "__main__":
    main()
