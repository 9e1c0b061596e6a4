"""Cost of the second split test (``segmentation.mixture.split_by_categories``) by segment size, side by side with
fitting every member (``--max-rows`` at the segment's size) in one run: seconds, peak RSS over the RSS before the
call, the parts BIC took, and whether the planted parts came back.

    python benchmarks/category_split.py                        # 1k-100k members, 64 categories: ~2 min here
    python benchmarks/category_split.py --sizes 5000,50000 --categories 20

Each segment is drawn as the planted worlds' light users are (``segmentation.synthetic.light_category_counts``:
3-10 interactions; a user's pick is one of their group's two categories with probability 0.75, else a category by
Zipf popularity): ``one`` is a single group, ``two``
two groups of 60 % and 40 %. The test runs with ``min_size`` 100 and the default bar (``cluster.split_stability``).
The rows ``read: levels`` are the same test once more on the counts per (rating level, category) (``--levels``
levels; ``cluster.split_reads_levels``, BIC's number of parts alone): ``one`` is a single group whose every pick
takes a level uniformly, ``two`` a single group of choices whose users rate in one of two styles (60 % mostly high,
40 % mostly low), which the categories alone cannot tell apart; each is given as the segment stage gives it (sparse)
and dense beside it (how the fits read every segment before they kept sparse counts sparse).
The segment stage calls it only where the fit saw every user (at most ``reduce.sample_size``, 50,000 users), so
its segments are smaller than that; the larger sizes show the bound holds. Rows go to
``benchmarks/results/category_split.json``.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._memory import PeakSampler  # noqa: E402
from benchmarks._results import command, write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "category_split.json"


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import adjusted_rand_score

    from segmentation.config import ClusterConfig
    from segmentation.mixture import MAX_ROWS, split_by_categories
    from segmentation.synthetic import light_category_counts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,5000,25000,100000")
    p.add_argument("--categories", type=int, default=64)
    p.add_argument("--levels", type=int, default=5, help="rating levels of the 'levels' rows (0: none)")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    bar = ClusterConfig().split_stability
    assert bar is not None
    sampler = PeakSampler()
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        for kind, shares in (("one", [1.0]), ("two", [0.6, 0.4])):
            counts, group = light_category_counts([round(n * s) for s in shares], a.categories)
            for cap in ("default", "every member"):
                max_rows = MAX_ROWS if cap == "default" else len(counts)
                if cap == "every member" and len(counts) <= MAX_ROWS:
                    continue  # the same call
                if cap == "every member" and len(counts) > 25_000:
                    continue  # minutes per call: the point is made at 25,000
                sampler.start()
                t = time.perf_counter()
                found = split_by_categories(counts, min_size=100, bar=bar, seed=0, max_rows=max_rows)
                seconds = time.perf_counter() - t
                ari = None if found.parts is None else round(float(adjusted_rand_score(group, found.parts)), 4)
                row = {"members": len(counts), "groups": kind, "fitted_on": cap, "max_rows": max_rows,
                       "seconds": round(seconds, 2), "peak_mib_over_base": sampler.over_base,
                       "bic_parts": found.bic_parts, "split": found.parts is not None, "ari": ari,
                       "stability": found.stability}  # fmt: skip
                print(row, flush=True)
                rows.append(row)
        for kind in ("one", "two") if a.levels > 1 else ():
            choices, group = _rated(n, a.categories, a.levels, kind)
            for given in ("sparse", "dense"):  # the segment stage passes sparse counts; dense: the fits before 4840a57
                if given == "dense" and n > 25_000:
                    continue  # the point is made at 25,000
                counts = choices if given == "sparse" else choices.toarray()
                sampler.start()
                t = time.perf_counter()
                found = split_by_categories(counts, min_size=100, bar=bar, seed=0, fewer=False)
                seconds = time.perf_counter() - t
                ari = None if found.parts is None else round(float(adjusted_rand_score(group, found.parts)), 4)
                row = {"members": n, "groups": kind, "read": "levels", "given": given, "columns": choices.shape[1],
                       "fitted_on": "default", "max_rows": MAX_ROWS, "seconds": round(seconds, 2),
                       "peak_mib_over_base": sampler.over_base, "bic_parts": found.bic_parts,
                       "split": found.parts is not None, "ari": ari, "stability": found.stability}  # fmt: skip
                print(row, flush=True)
                rows.append(row)
    write_json(a.out, {"command": command("category_split.py", argv), "categories": a.categories,
                       "levels": a.levels, "max_rows": MAX_ROWS, "rows": rows})  # fmt: skip
    return 0


def _rated(n: int, categories: int, levels: int, kind: str):
    """(choice counts (n, levels * categories) sparse, level-major, group (n,)): one group's light users (their
    categories as ``light_category_counts`` draws them), each pick given a rating level: uniformly (``one``), or
    mostly high for 60 % of the users and mostly low for the rest (``two``)."""
    import numpy as np
    import scipy.sparse as sp

    from segmentation.synthetic import light_category_counts

    counts, _ = light_category_counts([n], categories, seed=1)
    rng = np.random.default_rng(2)
    group = (rng.random(n) >= 0.6).astype(np.int64) if kind == "two" else np.zeros(n, np.int64)
    high = 3.0 ** np.arange(levels)  # the first style leans to the high levels (each 3x the one below), the second low
    styles = (
        np.stack([high / high.sum(), high[::-1] / high.sum()]) if kind == "two" else np.full((1, levels), 1 / levels)
    )
    user, cat = np.nonzero(counts)
    picks = counts[user, cat].astype(np.int64)
    user, cat = np.repeat(user, picks), np.repeat(cat, picks)  # one row per pick
    cum = np.cumsum(styles[group[user]], axis=1)
    level = (rng.random(len(user))[:, None] > cum).sum(axis=1)
    return sp.csr_matrix((np.ones(len(user)), (user, level * categories + cat)), shape=(n, levels * categories)), group


if __name__ == "__main__":
    raise SystemExit(main())
