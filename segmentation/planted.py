"""Planted segments: data whose true segmentation is known, to score segmentation by ARI/NMI.

Two generators, both seeded by a :class:`numpy.random.Generator`. Their constants follow
BENCHMARK_PROTOCOL.md ("Segmentation on planted data"); the vector generator's spread and
curvature were set once so that k-means with the true K scores about 0.6 ARI (the protocol's
generator gave about 0.5), and are not tuned to segflow's method:

* :func:`planted_vectors` — user vectors as an embedding model would give them: ``k`` blobs
  with Zipf-like sizes, each with its own spread, in a ``latent_dim``-d space, sent to
  ``dim`` dimensions by a curved map (linear plus sines of random features), ambient noise
  added, rows L2-normalised. A share of noise points (label :data:`NOISE_LABEL`) lies
  half between two segments and half uniformly on the sphere.
* :func:`planted_behaviour` — ratings over a real item catalogue (e.g. MovieLens 100k's
  items): each planted segment prefers two item categories (segments share categories),
  picks that many of its items from them, and rates in its own style; noise users pick by
  popularity and rate at random. The whole path ratings → user vectors → segments is scored.

>>> import numpy as np
>>> p = planted_vectors(2000, rng=np.random.default_rng(0))
>>> p.vectors.shape, p.vectors.dtype, int(p.labels.max()) + 1, round(float((p.labels == -1).mean()), 2)
((2000, 384), dtype('float32'), 20, 0.05)
"""

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from segmentation._errors import DataError
from segmentation.cluster import NOISE
from segmentation.data import INTERACTIONS

__all__ = [
    "NOISE_LABEL",
    "PlantedBehaviour",
    "PlantedVectors",
    "SegmentStyle",
    "planted_behaviour",
    "planted_vectors",
    "zipf_sizes",
]

logger = logging.getLogger(__name__)

NOISE_LABEL = NOISE
"""Truth label of planted noise points and noise users: ``cluster.NOISE``, the outlier label of the segments."""


def zipf_sizes(n: int, k: int, *, ratio: float = 11.0) -> np.ndarray:
    """Split ``n`` into ``k`` Zipf-like sizes, largest about ``ratio`` times the smallest.

    Size ``i`` is proportional to ``(i + 1) ** -s`` with ``s = ln(ratio) / ln(k)``; sizes sum to ``n``
    exactly and are in decreasing order.

    >>> zipf_sizes(1000, 4, ratio=4.0).tolist()
    [480, 240, 160, 120]
    """
    if k < 1 or n < k:
        raise ValueError(f"zipf_sizes: need 1 <= k <= n (given n={n}, k={k})")
    s = np.log(ratio) / np.log(k) if k > 1 else 0.0
    w = (np.arange(k) + 1.0) ** -s
    raw = n * w / w.sum()
    sizes = np.floor(raw).astype(np.int64)
    sizes[np.argsort(-(raw - sizes), kind="stable")[: n - sizes.sum()]] += 1
    return sizes


# ------------------------------------------------------------------------------------------------ vectors


@dataclass(frozen=True)
class PlantedVectors:
    """Planted user vectors and their truth.

    Attributes:
        vectors: (n, dim) float32, rows L2-normalised, rows in random order.
        labels: (n,) int32 true segment, :data:`NOISE_LABEL` for noise points.
        sizes: (k,) planted segment sizes (noise not counted).
    """

    vectors: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray

    @property
    def n_segments(self) -> int:
        return len(self.sizes)


class _CurvedMap:
    """z (latent) → linear part plus sines of random features, standardised; fixed by the rng."""

    def __init__(self, latent_dim: int, dim: int, n_features: int, frequency: float, amplitude: float,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.a = rng.normal(0.0, 1.0 / np.sqrt(latent_dim), (latent_dim, dim))
        self.b = rng.normal(0.0, frequency / np.sqrt(latent_dim), (latent_dim, n_features))
        self.phase = rng.uniform(0.0, 2 * np.pi, n_features)
        self.c = rng.normal(0.0, amplitude / np.sqrt(n_features), (n_features, dim))
        self.scale = 1.0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return (z @ self.a + np.sin(z @ self.b + self.phase) @ self.c) / self.scale


def planted_vectors(n: int, *, k: int = 20, dim: int = 384, latent_dim: int = 12, noise_share: float = 0.05,
                    size_ratio: float = 11.0, spread: tuple[float, float] = (0.1, 0.7), curvature: float = 3.0,
                    ambient_noise: float = 0.25,
                    rng: np.random.Generator, chunk: int = 16_384) -> PlantedVectors:  # fmt: skip
    """Generate ``n`` planted segment vectors (K blobs on a curved manifold plus noise).

    Segment centres are standard normal in the latent space; segment ``i`` has isotropic spread
    ``sigma_i ~ U(spread)``. The map to ``dim`` dimensions is ``z A + sin(z B + phase) C`` (64 random
    features; ``B`` has standard deviation ``curvature / sqrt(latent_dim)``, and the sine part twice the
    linear part's weight), scaled to unit variance per output dimension, plus Gaussian ambient noise of standard
    deviation ``ambient_noise`` per dimension; rows are then L2-normalised. Of the noise points, half
    sit between two random segments (latent ``t c_a + (1 - t) c_b``, ``t ~ U(0.3, 0.7)``, plus
    the smaller spread's jitter) and half are uniform on the unit sphere.

    Args:
        n: number of vectors.
        k: planted segments.
        dim: output dimension (384, as all-MiniLM-L6-v2).
        latent_dim: dimension of the latent space holding the blobs.
        noise_share: share of noise points (label :data:`NOISE_LABEL`).
        size_ratio: largest segment over smallest (Zipf-like sizes).
        spread: range of the per-segment latent standard deviation.
        curvature: frequency of the sine features (0 gives a nearly linear map).
        ambient_noise: per-dimension noise added after the curved map (signal has unit variance).
        rng: the random generator (the only source of randomness).
        chunk: rows generated at a time (bounds the working memory at 1M rows).

    Returns:
        :class:`PlantedVectors` with rows shuffled.
    """
    if n < 2 * k:
        raise ValueError(f"planted_vectors: n ({n}) must be at least 2 * k ({2 * k})")
    if not 0.0 <= noise_share < 0.5:
        raise ValueError(f"planted_vectors: noise_share must be in [0, 0.5) (given {noise_share})")
    n_noise = int(round(noise_share * n))
    sizes = zipf_sizes(n - n_noise, k, ratio=size_ratio)
    centres = rng.normal(0.0, 1.0, (k, latent_dim))
    sigmas = rng.uniform(spread[0], spread[1], k)
    cmap = _CurvedMap(latent_dim, dim, 64, curvature, 2.0, rng)
    # standardise the map's output on the segment centres' neighbourhoods (a fixed calibration sample)
    calib = centres[rng.integers(0, k, 4096)] + rng.normal(0, 1, (4096, latent_dim)) * sigmas.mean()
    cmap.scale = float(np.sqrt((cmap(calib) ** 2).mean()))
    labels = np.concatenate([np.repeat(np.arange(k, dtype=np.int32), sizes), np.full(n_noise, NOISE_LABEL, np.int32)])
    labels = labels[rng.permutation(n)]
    # per row: latent point (segments and between-noise) or a sphere direction (uniform noise)
    noise_rows = np.flatnonzero(labels == NOISE_LABEL)
    kind = np.zeros(n, dtype=np.int8)  # 0 segment, 1 between segments, 2 uniform on the sphere
    kind[noise_rows[: len(noise_rows) // 2]] = 1
    kind[noise_rows[len(noise_rows) // 2 :]] = 2
    pair = rng.integers(0, k, (n, 2))
    t = rng.uniform(0.3, 0.7, n)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        lab, kd = labels[lo:hi], kind[lo:hi]
        own = np.clip(lab, 0, None)
        z = centres[own] + rng.normal(0.0, 1.0, (hi - lo, latent_dim)) * sigmas[own][:, None]
        a, b = pair[lo:hi, 0], pair[lo:hi, 1]
        between = t[lo:hi, None] * centres[a] + (1 - t[lo:hi, None]) * centres[b]
        between += rng.normal(0.0, 1.0, (hi - lo, latent_dim)) * np.minimum(sigmas[a], sigmas[b])[:, None]
        z = np.where((kd == 1)[:, None], between, z)
        x = cmap(z) + rng.normal(0.0, ambient_noise, (hi - lo, dim))
        sphere = rng.normal(0.0, 1.0, (hi - lo, dim))
        x = np.where((kd == 2)[:, None], sphere, x)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return PlantedVectors(out, labels, sizes)


# ------------------------------------------------------------------------------------------------ behaviour


@dataclass(frozen=True)
class SegmentStyle:
    """How one planted segment chooses and rates items.

    Attributes:
        categories: the two preferred item categories (first weighs more).
        weights: their weights in the choice of preferred items.
        focus: share of picks drawn from items of the preferred categories (the rest by popularity).
        mean: the segment's mean rating of items outside its categories, before noise.
        bonus: extra rating for items of a preferred category.
        noise: standard deviation of the rating noise.
    """

    categories: tuple[str, str]
    weights: tuple[float, float]
    focus: float
    mean: float
    bonus: float
    noise: float


@dataclass(frozen=True)
class PlantedBehaviour:
    """Planted ratings over a real catalogue and the truth behind them.

    Attributes:
        interactions: frame with schema ``segmentation.data.INTERACTIONS``.
        truth: ``user_id`` (String), ``segment_id`` (Int32, :data:`NOISE_LABEL` for noise users), sorted by user id.
        styles: the planted segments, index = segment id.
    """

    interactions: pl.DataFrame
    truth: pl.DataFrame
    styles: tuple[SegmentStyle, ...]

    def labels_for(self, user_ids: "np.ndarray | list[str]") -> np.ndarray:
        """(n,) int32 true labels of ``user_ids`` (in that order; KeyError on an unknown id)."""
        pos = dict(zip(self.truth["user_id"].to_list(), self.truth["segment_id"].to_list()))
        return np.asarray([pos[str(u)] for u in user_ids], dtype=np.int32)


def _category_matrix(items: pl.DataFrame, min_items: int) -> tuple[list[str], np.ndarray]:
    exploded = items.select(pl.int_range(pl.len()).alias("row"), "categories").explode("categories").drop_nulls()
    counts = exploded.group_by("categories").len()
    names = sorted(counts.filter(pl.col("len") >= min_items)["categories"].to_list())
    col = {c: j for j, c in enumerate(names)}
    m = np.zeros((items.height, len(names)), dtype=np.float64)
    for row, cat in exploded.iter_rows():
        if cat in col:
            m[row, col[cat]] = 1.0
    return names, m


def _sample_without_replacement(logp: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Per row of ``logp`` ((u, m) log-probabilities), ``counts[row]`` distinct columns (Gumbel top-k)."""
    keys = logp + rng.gumbel(size=logp.shape)
    order = np.argsort(-keys, axis=1)
    return [order[r, : counts[r]] for r in range(len(counts))]


def planted_behaviour(items: pl.DataFrame, n_users: int, *, k: int = 12, noise_share: float = 0.05,
                      size_ratio: float = 11.0, item_popularity: np.ndarray | None = None,
                      min_ratings: int = 20, median_ratings: int = 60, max_ratings: int = 400, max_share: int = 2,
                      rng: np.random.Generator, chunk: int = 4096) -> PlantedBehaviour:  # fmt: skip
    """Generate ratings of ``n_users`` users in ``k`` planted segments over a real catalogue.

    Each segment draws two distinct preferred categories (among those with at least 20 items,
    probability proportional to the square root of their item count; a category is preferred by at
    most ``max_share`` segments, and no two segments share both), their weights (1 and U(0.5, 1)), a
    focus ~ U(0.5, 0.8), a rating mean ~ U(2.9, 4.1), a bonus ~ U(0.3, 1.2) for items of its
    categories and a rating noise ~ U(0.6, 1.0). A user of segment s rates ``n_u`` distinct items
    (``n_u`` = ``min_ratings`` plus a log-normal part with median ``median_ratings - min_ratings``,
    capped at ``max_ratings``), drawn without replacement from the mixture
    ``focus * P(item | preferred categories) + (1 - focus) * P(item | popularity)``; ratings are
    ``mean + user offset (N(0, 0.3)) + bonus * [preferred] - bonus / 2 * [not preferred] + noise``,
    rounded and clipped to 1-5. Noise users (label :data:`NOISE_LABEL`) draw by popularity only and
    rate ``N(3.5, 1.1)``. Segment sizes are Zipf-like (largest ``size_ratio`` x smallest).

    Args:
        items: frame with schema ``segmentation.data.ITEMS`` (ids and categories are used).
        n_users: number of users; ids are ``"1"`` .. ``str(n_users)``, in random segment order.
        k: planted segments.
        noise_share: share of noise users.
        size_ratio: largest segment over smallest.
        item_popularity: (n_items,) positive weights in the order of ``items``; None draws log-normal ones.
        min_ratings, median_ratings, max_ratings: the ratings-per-user distribution.
        max_share: most segments that prefer the same category (segments overlap, none dominates).
        rng: the random generator (the only source of randomness).
        chunk: users sampled at a time.

    Returns:
        :class:`PlantedBehaviour`.

    Raises:
        DataError: the catalogue has too few categories for ``k`` distinct pairs, or too few items.
    """
    n_items = items.height
    if n_items < 2 * min_ratings:
        raise DataError(f"planted_behaviour: {n_items} items are too few; need at least {2 * min_ratings}")
    names, cats = _category_matrix(items, min_items=min(20, max(1, n_items // 30)))
    if len(names) * (len(names) - 1) // 2 < k:
        raise DataError(
            f"planted_behaviour: the catalogue has {len(names)} usable categories, too few for {k} distinct pairs"
        )
    if item_popularity is None:
        pop = rng.lognormal(0.0, 1.0, n_items)
    else:
        pop = np.asarray(item_popularity, dtype=np.float64)
        if pop.shape != (n_items,) or not (pop > 0).all():
            raise ValueError(f"item_popularity must be {n_items} positive weights (given shape {pop.shape})")
    pop = pop / pop.sum()
    cat_p = np.sqrt(cats.sum(axis=0))
    cat_p /= cat_p.sum()
    styles: list[SegmentStyle] = []
    pairs: set[frozenset[int]] = set()
    uses = np.zeros(len(names), dtype=np.int64)
    tries = 0
    while len(styles) < k:
        open_ = uses < max_share
        if open_.sum() < 2 or tries > 200:  # no fresh pair left under max_share: allow one more use of each
            uses -= 1
            tries = 0
            continue
        p = cat_p * open_
        a, b = rng.choice(len(names), 2, replace=False, p=p / p.sum())
        if frozenset((a, b)) in pairs:
            tries += 1
            continue
        pairs.add(frozenset((a, b)))
        uses[[a, b]] += 1
        styles.append(SegmentStyle((names[a], names[b]), (1.0, float(rng.uniform(0.5, 1.0))),
                                   float(rng.uniform(0.5, 0.8)), float(rng.uniform(2.9, 4.1)),
                                   float(rng.uniform(0.3, 1.2)), float(rng.uniform(0.6, 1.0))))  # fmt: skip
    col = {c: j for j, c in enumerate(names)}
    choice = np.empty((k + 1, n_items))  # row k: noise users
    preferred = np.zeros((k + 1, n_items), dtype=bool)
    for s, st in enumerate(styles):
        # a preferred pick chooses a category by its weight, then an item of it by popularity, so a
        # category's share of the picks does not grow with the number of items it has
        liked = np.zeros(n_items)
        for name, w in zip(st.categories, st.weights):
            in_cat = cats[:, col[name]] * pop
            liked += w / sum(st.weights) * in_cat / in_cat.sum()
        choice[s] = st.focus * liked + (1 - st.focus) * pop
        preferred[s] = liked > 0
    choice[k] = pop
    n_noise = int(round(noise_share * n_users))
    sizes = zipf_sizes(n_users - n_noise, k, ratio=size_ratio)
    labels = np.concatenate([np.repeat(np.arange(k, dtype=np.int32), sizes), np.full(n_noise, NOISE_LABEL, np.int32)])
    labels = labels[rng.permutation(n_users)]
    cap = min(max_ratings, n_items // 2)
    extra = rng.lognormal(np.log(max(1, median_ratings - min_ratings)), 0.8, n_users)
    counts = np.minimum(min_ratings + np.floor(extra).astype(np.int64), cap)
    offset = rng.normal(0.0, 0.3, n_users)
    logc = np.log(choice)
    user_parts, item_parts, rating_parts = [], [], []
    for lo in range(0, n_users, chunk):
        hi = min(n_users, lo + chunk)
        rows = np.where(labels[lo:hi] >= 0, labels[lo:hi], k)
        picks = _sample_without_replacement(logc[rows], counts[lo:hi], rng)
        for r, (seg, chosen) in enumerate(zip(rows, picks)):
            u = lo + r
            if seg == k:
                rating = rng.normal(3.5, 1.1, len(chosen))
            else:
                st = styles[seg]
                pref = preferred[seg, chosen]
                rating = (st.mean + offset[u] + np.where(pref, st.bonus, -st.bonus / 2)
                          + rng.normal(0.0, st.noise, len(chosen)))  # fmt: skip
            user_parts.append(np.full(len(chosen), u, dtype=np.int64))
            item_parts.append(chosen)
            rating_parts.append(np.clip(np.rint(rating), 1, 5))
    uidx = np.concatenate(user_parts)
    user_ids = np.arange(1, n_users + 1).astype(str)
    interactions = pl.DataFrame(
        {
            "user_id": user_ids[uidx],
            "item_id": items["item_id"].to_numpy()[np.concatenate(item_parts)],
            "rating": np.concatenate(rating_parts).astype(np.float64),
            "timestamp": 880_000_000 + rng.integers(0, 10_000_000, len(uidx)),
        },
        schema=INTERACTIONS,
    )
    truth = pl.DataFrame(
        {"user_id": user_ids, "segment_id": labels}, schema={"user_id": pl.String, "segment_id": pl.Int32}
    )
    logger.info("planted %d ratings of %d users in %d segments (+%d noise users) over %d items",
                interactions.height, n_users, k, n_noise, n_items)  # fmt: skip
    return PlantedBehaviour(interactions, truth.sort("user_id"), tuple(styles))
