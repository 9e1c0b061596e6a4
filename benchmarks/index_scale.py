"""FAISS at scale: the exact index against HNSW and IVF, on synthetic unit vectors of embedding dimension.

Why: ``embeddings.index.VectorIndex`` (``index.kind = "auto"``) is exact (``IndexFlatIP``) up to
``index.approximate_above`` vectors and HNSW (``IndexHNSWFlat``, inner product) above. This measures
what each costs and what the approximate one loses, to choose that limit.

Data: ``n`` unit vectors of dimension 384 (all-MiniLM-L6-v2's), of three kinds (:func:`unit_vectors`):
``embedding-like`` (500 clusters in a 32-d subspace), ``isotropic`` (500 clusters, noise in all 384
dimensions) and ``uniform`` on the sphere (no structure: the worst case). Queries: 1,000 more vectors
drawn the same way (not in the index). Truth: the exact
top 10 by inner product (``IndexFlatIP``).

Each (size, index) runs in its own child process, so ``peak_mib`` (``VmHWM``) is that index's
build and search with the data (the vectors alone are ``n * 384 * 4`` bytes), not the parent's.

Per row: ``build_s`` (construct, train, add; for HNSW also its recall check, which may raise
``efSearch``: ``own_efSearch`` is the setting it kept and ``own_recall@10`` what it measured on 256 of
the indexed vectors' neighbours), ``query_ms`` (per query, in one batch of 1,000, k=10,
FAISS's OpenMP threads), ``recall@10`` (share of the exact top 10 found), ``index_mib`` (size of the
saved index file), ``peak_mib``.

    python benchmarks/index_scale.py                          # 10k and 100k, three kinds of data (~3 min, 2 cores)
    python benchmarks/index_scale.py --sizes 1000000 --data embedding-like --out benchmarks/results/index_scale_1m.json

Rows go to ``benchmarks/results/index_scale.json`` (a JSON list).
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

RESULTS = ROOT / "benchmarks" / "results" / "index_scale.json"
DIM = 384
N_QUERIES = 1000
K = 10
HNSW_EF = (32, 64, 128, 256)
IVF_PROBES = (8, 16, 32, 64)


def unit_vectors(
    n: int, kind: str, *, part: int = 0, dim: int = DIM, n_centres: int = 500, seed: int = 0
) -> np.ndarray:
    """``n`` L2-normalised float32 rows around ``n_centres`` cluster centres, drawn in blocks of 100k.

    ``embedding-like``: the clusters live in a random 32-d subspace (a centre plus noise there), plus a
    little isotropic noise in all 384 dimensions; sentence embeddings have an intrinsic dimension of
    that order. ``part`` 0 draws the indexed vectors, 1 the queries (same centres, other points).
    ``isotropic``: centre plus noise of the same norm in all 384 dimensions, so that within
    a cluster the nearest neighbours are set by high-dimensional noise: the hard case for any
    approximate index. ``uniform``: uniform on the sphere, no structure at all (the worst case; no
    encoder's output looks like it).
    """
    rng = np.random.default_rng(seed)
    latent = 32 if kind == "embedding-like" else dim
    centres = rng.standard_normal((n_centres, latent), dtype=np.float32)
    basis = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent) if kind == "embedding-like" else None
    rng = np.random.default_rng([seed, part])
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, n_centres, m)]
        if kind == "uniform":
            block = rng.standard_normal((m, dim), dtype=np.float32)
        elif basis is None:
            block = block + rng.standard_normal((m, dim), dtype=np.float32)
        else:
            block = (block + 0.5 * rng.standard_normal((m, latent), dtype=np.float32)) @ basis
            block += 0.1 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def child(size: int, method: str, data: str) -> list[dict]:
    import faiss

    from embeddings.index import VectorIndex

    x = unit_vectors(size, data)
    q = unit_vectors(N_QUERIES, data, part=1)
    truth_index = faiss.IndexFlatIP(DIM)
    truth_index.add(x)
    _, truth = truth_index.search(q, K)
    del truth_index
    ids = np.arange(size).astype(str).astype(object)
    rows = []
    base = {"data": data, "n": size, "dim": DIM, "index": method}
    with tempfile.TemporaryDirectory() as tmp:

        def saved_mib(index) -> float:
            path = Path(tmp) / "index.faiss"
            faiss.write_index(index, str(path))
            return round(path.stat().st_size / 2**20, 1)

        if method in ("flat", "hnsw"):
            t = time.perf_counter()
            vi = VectorIndex(method).fit(ids, x)
            build = time.perf_counter() - t
            own = (
                {"own_efSearch": vi.index_.hnsw.efSearch, "own_recall@10": round(vi.recall_, 4)}
                if method == "hnsw"
                else {}
            )
            settings = HNSW_EF if method == "hnsw" else (None,)
            for ef in settings:
                if ef is not None:
                    vi.index_.hnsw.efSearch = ef
                t = time.perf_counter()
                found, _ = vi.search(q, K)
                query = time.perf_counter() - t
                found = np.vectorize(int)(found)
                rows.append({**base, "params": {"M": vi.hnsw_m, "efConstruction": vi.index_.hnsw.efConstruction,
                                                "efSearch": ef} if ef else {},
                             "build_s": round(build, 2), "query_ms": round(1000 * query / N_QUERIES, 4),
                             "recall@10": round(_recall(found, truth), 4), "index_mib": saved_mib(vi.index_), **own})  # fmt: skip
        elif method == "ivf":
            nlist = int(4 * np.sqrt(size))
            t = time.perf_counter()
            quantizer = faiss.IndexFlatIP(DIM)
            index = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = x[np.random.default_rng(0).choice(size, min(size, 64 * nlist), replace=False)]
            index.train(sample)
            index.add(x)
            build = time.perf_counter() - t
            for nprobe in IVF_PROBES:
                index.nprobe = nprobe
                t = time.perf_counter()
                _, found = index.search(q, K)
                query = time.perf_counter() - t
                rows.append({**base, "params": {"nlist": nlist, "nprobe": nprobe}, "build_s": round(build, 2),
                             "query_ms": round(1000 * query / N_QUERIES, 4), "recall@10": round(_recall(found, truth), 4),
                             "index_mib": saved_mib(index)})  # fmt: skip
        else:
            raise ValueError(method)
    peak = round(_rss_mib(), 1)
    for r in rows:
        r["peak_mib"] = peak
        r["threads"] = faiss.omp_get_max_threads()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--methods", nargs="+", default=["flat", "hnsw", "ivf"])
    p.add_argument("--data", nargs="+", default=["embedding-like", "isotropic", "uniform"])
    p.add_argument("--child", nargs=3, metavar=("SIZE", "METHOD", "DATA"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.child:
        print("ROWS " + json.dumps(child(int(args.child[0]), args.child[1], args.child[2])), flush=True)
        return
    rows = []
    for data, size, method in ((d, s, m) for d in args.data for s in args.sizes for m in args.methods):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(size), method, data]
        out = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        got = [json.loads(line[5:]) for line in out.stdout.splitlines() if line.startswith("ROWS ")]
        if out.returncode or not got:
            raise SystemExit(f"child {size} {method} failed:\n{out.stderr[-3000:]}")
        for row in got[0]:
            row.update(date=time.strftime("%Y-%m-%d"), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                       load_avg=round(os.getloadavg()[0], 2))  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
