"""One vector per user, built from what the user chose (and, optionally, how they rated it).

The default, ``item-mean+category-hist+liked-category-hist+category-rating`` with the rating part at weight 0.5
(``represent.weights``) and a light user's category parts scaled by ``n / (n + 5)`` (``represent.evidence``), was
chosen on the tuning planted worlds through the CLI (docs/BENCHMARKS.md, "How users rate each category"): mean ARI
over taste, style and light (seeds 0-2) 0.861 against 0.848 for ``item-mean+liked-category-hist``, the default
before 2026-12-05 (style 0.884 to 0.930, where twin segments choose alike and rate oppositely; taste 0.931 to 0.942;
light 0.729 to 0.711). Held out: nested 0.861 to 0.878, sparse-implicit 0.672 to 0.637. On MovieLens 100k its
segments explain the validation carve's ratings 0.0088 RMSE better than no segments, against 0.0021, most of it from
``category-hist``, but they are less stable (subsample ARI 0.65 against 0.93; one seed). The earlier default had
been measured with ``benchmarks/segmentation.py --representations --ml100k`` on planted behaviour over ML-100k's
items (0.986-0.992 against 0.976-0.983 for ``item-mean``). Every method stays available:

===================== ============================================================================
``item-mean``         mean embedding of the items a user chose
``liked-mean``        mean embedding of the items rated at or above the user's own mean
``rating-weighted``   embeddings weighted by the user-centred rating
``category-hist``     share of the user's chosen items in each item category (needs ``items``)
``liked-category-hist`` the same over liked items only (needs ``items``)
``category-rating``   how the user rates each category against their own habit: mean standardised rating per
                      category, shrunk to 0 (signed; before centring, 0 for a user whose ratings are all alike;
                      needs ``items``)
``svd``               collaborative factors: truncated SVD of the idf-weighted user x item matrix
``profile``           embedding of the user's behaviour text (needs ``profile_embeddings``)
``a+b``               fusion: each part L2-normalised, scaled by its weight (``represent.weights``: by part name,
                      1 unless named), concatenated, normalised again (a category part of items with no
                      categories at all is empty, with a warning; when every user rates all their items
                      alike, as in implicit feedback without weights, ``liked-category-hist`` beside
                      ``category-hist`` would repeat it and is left out)
===================== ============================================================================

With ``centre`` (``represent.centre``, on by default) each part has the mean user subtracted before it is
normalised. Every mean item embedding shares the encoder's common direction (sentence embeddings of one
catalogue are far from orthogonal) and every category histogram the catalogue's mix, so uncentred, one
part of a fusion moves little between users and the fusion reads mostly the other; centred, each part's
differences between users count alike. On the tuning planted worlds (taste, style; 3,000 users, seeds 0-1)
the share of a user's 15 cosine neighbours from their own planted segment rose from 0.935-0.955 to
0.949-0.972 for ``item-mean+liked-category-hist`` (either part alone: unchanged within 0.015), and the ARI
of UMAP + HDBSCAN from 0.75-0.88 to 0.85-0.97 (docs/BENCHMARKS.md). The mean is the fitted users': vectors
built for a few new users alone must not be centred on their own mean (``centre=False``).
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings, EncoderChoice, embed_profiles
from embeddings.partitions import Partitions, in_process
from embeddings.text import describe_users
from segmentation._errors import ConfigError, DataError
from segmentation.config import PipelineConfig
from segmentation.config.embedding import (
    DEFAULT_EVIDENCE,
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_PART_WEIGHTS,
    DEFAULT_RATING_LEVELS,
    RepresentConfig,
    RepresentMethod,
)
from segmentation.data import Split

__all__ = [
    "BASE_METHODS",
    "DEFAULT_METHOD",
    "METHODS",
    "UserSpace",
    "build_user_vectors",
    "fit_user_vectors",
    "place_in_space",
    "represent_users",
    "vectors_as_configured",
]

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = get_args(RepresentMethod)  # the configuration's list, in its order
"""Every accepted ``method``; fusions join base methods with ``+``."""
BASE_METHODS = tuple(m for m in METHODS if "+" not in m)
DEFAULT_METHOD = "item-mean+category-hist+liked-category-hist+category-rating"

_NEEDS_ITEMS = ("category-hist", "liked-category-hist", "category-rating")
CATEGORY_RATING_PRIOR = 10.0
"""``category-rating``: pseudo-items at the user's own mean added to every category (shrinks a category of few items
towards "rated as usual"); 10 beat 1 and 3 on the tuning planted worlds (docs/BENCHMARKS.md)."""
_Z_CLIP = 2.0  # standardised ratings clipped to ±2: one play count 50x the user's others does not speak for the rest
_NORM_ROWS = 65_536  # rows normalised at once (np.linalg.norm squares its whole input first)
SVD_FACTORS = 64


def _normalise(x: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Rows of ``x`` scaled to unit length, as float32; ``in_place`` scales ``x`` itself first (the same values,
    without a second table of its size: 1M users x 384 float64 is 3 GB)."""
    norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if in_place:
        x /= norms
        return x.astype(np.float32, copy=False)
    return (x / norms).astype(np.float32)


def _centred(x: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """``x`` less its mean row (the mean user), in float64; ``in_place`` subtracts from a float64 ``x`` itself."""
    if in_place and x.dtype == np.float64:
        x -= x.mean(axis=0, keepdims=True)
        return x
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


class _Matrix:
    """The interactions as sparse (user x item) coordinates, users sorted as strings."""

    def __init__(self, interactions: pl.DataFrame, item_ids: np.ndarray,
                 levels: "int | tuple[float, ...]" = 1) -> None:  # fmt: skip
        self.user_ids = np.asarray(sorted(interactions["user_id"].unique().to_list()), dtype=object)
        self.item_ids = np.asarray(item_ids, dtype=object)
        users = pl.DataFrame({"user_id": self.user_ids.astype(str), "_u": np.arange(len(self.user_ids))})
        items = pl.DataFrame({"item_id": self.item_ids.astype(str), "_i": np.arange(len(self.item_ids))},
                             schema={"item_id": pl.String, "_i": pl.Int64})  # fmt: skip
        # codes and ratings only: the string ids are not carried past the joins (25M rows of them are gigabytes)
        # in the interactions' own order, and each user's mean summed in that order (np.bincount), so the same rows
        # give the same vectors to the last bit (a grouped mean in polars sums in parallel, in no fixed order)
        joined = (
            interactions.lazy().select("user_id", "item_id", "rating")
            .join(users.lazy(), on="user_id", how="left", maintain_order="left")
            .join(items.lazy(), on="item_id", how="left", maintain_order="left")
            .select("_u", "_i", "rating")
            .collect()
        )  # fmt: skip
        n_missing = joined["_i"].null_count()
        if n_missing:
            known = pl.Series(self.item_ids.astype(str)).implode()
            example = interactions.filter(~pl.col("item_id").is_in(known))["item_id"][0]
            raise DataError(
                f"represent: {n_missing} interactions refer to items without an embedding (e.g. item {example!r})"
            )
        self.rows = joined["_u"].to_numpy().astype(np.int64)
        self.cols = joined["_i"].to_numpy().astype(np.int64)
        rating = joined["rating"].to_numpy().astype(np.float64)
        del joined
        self.shape = (len(self.user_ids), len(self.item_ids))
        self.counts = np.bincount(self.rows, minlength=self.shape[0])  # interactions per user
        mean = np.bincount(self.rows, weights=rating, minlength=self.shape[0]) / np.maximum(self.counts, 1)
        self.centred = rating - mean[self.rows]
        # each rating's level: a fit cuts its ratings at their quantiles (``levels`` of them at most; equal ratings
        # in one level), a fitted space's users at the fit's cuts (``levels`` the cut points)
        self.level_edges = _level_edges(rating, levels) if isinstance(levels, int) else tuple(levels)
        self.level = np.searchsorted(np.asarray(self.level_edges, dtype=np.float64), rating, side="right").astype(
            np.int8
        )
        del rating

    def weighted(self, w: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((w, (self.rows, self.cols)), shape=self.shape)

    def weights(self, method: str) -> sp.csr_matrix:
        """Row weights of ``item-mean``/``liked-mean``/``rating-weighted``; rows sum to 1 in absolute value."""
        if method == "item-mean":
            m = self.weighted(np.ones_like(self.centred))
        elif method == "liked-mean":
            liked = (self.centred >= 0).astype(np.float64)
            # a user with nothing at or above their mean cannot exist (the mean is attained or exceeded),
            # but guard anyway: such rows fall back to every item
            has = np.bincount(self.rows, weights=liked, minlength=self.shape[0]) > 0
            m = self.weighted(np.where(has[self.rows], liked, 1.0))
        elif method == "rating-weighted":
            m = self.weighted(self.centred)
        else:  # pragma: no cover - guarded by the caller
            raise ValueError(method)
        totals = np.asarray(abs(m).sum(axis=1)).ravel()
        return sp.diags(1.0 / np.maximum(totals, 1e-12)) @ m


def _level_edges(rating: np.ndarray, levels: int) -> tuple[float, ...]:
    """Cut points that split ``rating`` into at most ``levels`` levels at its quantiles (``np.searchsorted(edges,
    r, side="right")`` is the level): equal ratings share a level, so 1-5 stars give at most 5 and ratings that are
    all alike one (no cut)."""
    if levels <= 1 or len(rating) == 0:
        return ()
    cuts = np.unique(np.quantile(rating, np.arange(1, levels) / levels, method="lower"))
    # a level is the number of cuts at or below the rating: a cut at the smallest rating would leave level 0 empty
    return tuple(float(c) for c in cuts if c > rating.min())


def _category_counts(mat: _Matrix, item_cat: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """(users x categories) float32: each interaction's 1 shared among its item's categories (an item without a
    category in the columns adds nothing); and the same per (rating level, category): (users x levels * categories),
    level-major (column ``level * categories + category``), None with one level."""
    per_item = np.asarray(item_cat.sum(axis=1)).ravel()
    share = sp.diags(np.where(per_item > 0, 1.0 / np.maximum(per_item, 1e-12), 0.0)) @ item_cat
    # the category counts from one product, as before the levels (the split test and the outlier rule read them)
    total = (mat.weighted(np.ones(len(mat.rows), dtype=np.float64)) @ share).astype(np.float32).tocsr()
    if not mat.level_edges:
        return total, None
    per_level = [(mat.weighted((mat.level == v).astype(np.float64)) @ share).astype(np.float32).tocsr()
                 for v in range(len(mat.level_edges) + 1)]  # fmt: skip
    return total, sp.hstack(per_level, format="csr", dtype=np.float32)


def _item_categories(mat: _Matrix, items: pl.DataFrame, max_categories: int | None = None
                     ) -> tuple[sp.csr_matrix | None, tuple[str, ...]]:  # fmt: skip
    """(items x categories) matrix in ``mat``'s item order (1 per naming), columns by category name, and the names;
    None when no item has a category. With ``max_categories``, only the categories the most items of ``items`` carry (ties by
    name): counted over the items frame, not the interactions, so vectors built later for other users share the
    columns."""
    # a category named twice on one item counts twice, as it always has (the planted worlds' catalogue names some
    # attributes twice, and the default representation was chosen on those vectors)
    exploded = items.select("item_id", "categories").explode("categories").drop_nulls()
    if exploded.height == 0:
        return None, ()
    counts = (exploded.group_by("categories").agg(pl.col("item_id").n_unique().alias("len"))
              .sort(["len", "categories"], descending=[True, False]))  # fmt: skip
    if max_categories is not None and counts.height > max_categories:
        kept = counts.head(max_categories)
        logger.info(
            "represent: the per-category parts read the %d categories the most items carry, of %d (each "
            "on %d+ items; represent.max_categories)",
            max_categories,
            counts.height,
            kept["len"][-1],
        )
        counts = kept
    names = sorted(counts["categories"].to_list())
    codes = pl.DataFrame({"categories": names, "_c": np.arange(len(names))},
                         schema={"categories": exploded.schema["categories"], "_c": pl.Int64})  # fmt: skip
    where = pl.DataFrame({"item_id": mat.item_ids.astype(str), "_i": np.arange(len(mat.item_ids))},
                         schema={"item_id": pl.String, "_i": pl.Int64})  # fmt: skip
    pairs = (exploded.with_columns(pl.col("item_id").cast(pl.String))
             .join(codes, on="categories").join(where, on="item_id"))  # fmt: skip
    positions = np.stack([pairs["_i"].to_numpy(), pairs["_c"].to_numpy()], axis=1)
    return _category_matrix(positions, len(mat.item_ids), len(names)), tuple(str(n) for n in names)


def _category_matrix(pairs: np.ndarray, n_items: int, n_categories: int) -> sp.csr_matrix:
    """The (items x categories) matrix with a 1 at each (item row, category column) of ``pairs`` (n, 2): a category
    named twice on an item sums to 2."""
    return sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_items, n_categories))


def _pairs(item_cat: sp.csr_matrix | None) -> np.ndarray:
    """The (item, category) positions of an item-category matrix as an (n, 2) int64 array, a position repeated as
    often as the item names the category (:func:`_category_matrix` sums the repeats back): a category named twice on
    an item weighs twice in a placed user's category parts, as in the fit's."""
    if item_cat is None:
        return np.zeros((0, 2), np.int64)
    coo = item_cat.tocoo()
    times = np.rint(coo.data).astype(np.int64)
    return np.repeat(np.stack([coo.row, coo.col], axis=1).astype(np.int64), np.maximum(times, 0), axis=0)


_SPACE_JSON, _SPACE_ARRAYS = "user_space.json", "user_space.npz"


@dataclass(frozen=True)
class UserSpace:
    """What builds a user's vector in a fit's space (:func:`fit_user_vectors`, :func:`place_in_space`): the
    representation and its settings, the category columns and which items carry them, and each part's mean user
    over the fitted users (with ``centre``). A run keeps it in ``embeddings/user_space.json`` and ``.npz``.

    Attributes:
        method, weights, centre, evidence: as the fit had them (``weights`` for every part of the method;
            ``evidence`` None where it does not apply).
        categories: the per-category parts' columns, in order (empty: no category part, or no categories).
        means: each part's mean user (1 x width, float64) the fit centred on; empty without ``centre``.
        left_out: parts the fit set to 0 (``liked-category-hist`` when every rating was alike).
        n_items: the fit's items (rows of its item embeddings, in whose order ``item_category_pairs`` count).
        item_category_pairs: (n, 2) int64 (item row, category column) of the items' categories.
        rating_edges: the cut points of the fit's rating levels (``represent.rating_levels``; empty: one level, as in
            spaces saved before 2026-12-05's eleventh round).
    """

    method: str
    weights: dict[str, float]
    centre: bool
    evidence: float | None
    categories: tuple[str, ...]
    means: dict[str, np.ndarray]
    left_out: tuple[str, ...]
    n_items: int
    item_category_pairs: np.ndarray
    rating_edges: tuple[float, ...] = ()

    def item_categories(self) -> sp.csr_matrix | None:
        """The fit's (items x categories) matrix (None: no categories)."""
        if not self.categories:
            return None
        return _category_matrix(self.item_category_pairs, self.n_items, len(self.categories))

    def save(self, folder: Path) -> None:
        """Write ``user_space.json`` (settings, categories) and ``user_space.npz`` (means, item categories)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"method": self.method, "weights": self.weights, "centre": self.centre, "evidence": self.evidence,
                "categories": list(self.categories), "left_out": list(self.left_out), "n_items": self.n_items,
                "parts_centred": sorted(self.means), "rating_edges": list(self.rating_edges)}  # fmt: skip
        (folder / _SPACE_JSON).write_text(json.dumps(meta, indent=1) + "\n")
        arrays: dict[str, np.ndarray] = {f"mean:{p}": m for p, m in self.means.items()}
        arrays["item_category_pairs"] = self.item_category_pairs
        np.savez(folder / _SPACE_ARRAYS, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool

    @classmethod
    def load(cls, folder: Path) -> "UserSpace":
        """Read what :meth:`save` wrote, checked (every part's mean where the space centres, the item-category pairs
        inside the matrix); :class:`DataError` naming the folder when a file is missing, damaged or inconsistent."""
        folder = Path(folder)
        meta_path, arrays_path = folder / _SPACE_JSON, folder / _SPACE_ARRAYS
        for path in (meta_path, arrays_path):
            if not path.is_file():
                raise DataError(f"{path} is missing: the run was published before segflow kept its user space "
                                "(2026-12-05), so new users cannot be placed in it; run it again")  # fmt: skip
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arrays_path) as arrays:
                means = {str(p): np.asarray(arrays[f"mean:{p}"], dtype=np.float64) for p in meta["parts_centred"]}
                pairs = np.asarray(arrays["item_category_pairs"], dtype=np.int64)
            space = cls(method=str(meta["method"]), weights={str(k): float(v) for k, v in meta["weights"].items()},
                        centre=bool(meta["centre"]),
                        evidence=None if meta["evidence"] is None else float(meta["evidence"]),
                        categories=tuple(str(c) for c in meta["categories"]), means=means,
                        left_out=tuple(str(p) for p in meta["left_out"]), n_items=int(meta["n_items"]),
                        item_category_pairs=pairs,
                        rating_edges=tuple(float(e) for e in meta.get("rating_edges", [])))  # fmt: skip
        except Exception as err:  # a damaged file fails in many ways (zip, JSON, keys, types): all are the file's
            raise DataError(f"{folder}: the run's user space ({_SPACE_JSON}, {_SPACE_ARRAYS}) cannot be read: "
                            f"{type(err).__name__}: {err}") from err  # fmt: skip
        parts = space.method.split("+")
        problems = []
        if space.method not in METHODS:
            problems.append(f"unknown representation {space.method!r}")
        if space.centre and sorted(space.means) != sorted(parts):
            problems.append(f"means for {sorted(space.means)}, but the parts are {parts}")
        if any(m.ndim != 2 or m.shape[0] != 1 for m in space.means.values()):
            problems.append("a mean user that is not one row")
        p = space.item_category_pairs
        if p.ndim != 2 or (p.size and (p.shape[1] != 2 or p.min() < 0 or p[:, 0].max() >= space.n_items
                                       or p[:, 1].max() >= len(space.categories))):  # fmt: skip
            problems.append(f"item-category pairs outside {space.n_items} items x {len(space.categories)} categories")
        if list(space.rating_edges) != sorted(set(space.rating_edges)):
            problems.append(f"rating level cut points {list(space.rating_edges)} not strictly increasing")
        if problems:
            raise DataError(f"{folder}: the run's user space ({_SPACE_JSON}, {_SPACE_ARRAYS}) cannot be read: "
                            + "; ".join(problems))  # fmt: skip
        return space


def _category_rating(
    mat: _Matrix, item_cat: sp.csr_matrix | None, *, prior: float = CATEGORY_RATING_PRIOR
) -> np.ndarray:
    """How the user rates each category against their own habit: the mean of their standardised ratings
    (centred on the user's mean, divided by the user's spread, clipped to ±2) over their items in the category,
    with ``prior`` pseudo-items at 0. Signed: twin segments that choose alike and rate alike-chosen categories
    oppositely point opposite ways here, which a share of liked items only half tells. All 0 for a user whose
    ratings are all equal (and so for implicit feedback without weights); centred, every such user then has the
    same row (minus the mean user's), one shared direction. ``item_cat``: :func:`_item_categories`."""
    if item_cat is None:
        return np.zeros((mat.shape[0], 1))
    spread = np.sqrt(np.bincount(mat.rows, weights=mat.centred**2, minlength=mat.shape[0]) / np.maximum(mat.counts, 1))
    row_spread = spread[mat.rows]
    z = np.divide(mat.centred, row_spread, out=np.zeros_like(mat.centred), where=row_spread > 1e-9)
    z = np.clip(z, -_Z_CLIP, _Z_CLIP)
    total = np.asarray((mat.weighted(z) @ item_cat).todense())
    count = np.asarray((mat.weighted(np.ones_like(z)) @ item_cat).todense())
    return total / (count + prior)


def _category_hist(mat: _Matrix, item_cat: sp.csr_matrix | None, *, liked: bool) -> np.ndarray:
    if item_cat is None:
        return np.zeros((mat.shape[0], 1))
    w = (mat.centred >= 0).astype(np.float64) if liked else np.ones_like(mat.centred)
    hist = np.asarray((mat.weighted(w) @ item_cat).todense())
    empty = hist.sum(axis=1) == 0
    if empty.any():  # users with no liked item of any category: use all their items
        hist[empty] = np.asarray((mat.weighted(np.ones_like(mat.centred)) @ item_cat).todense())[empty]
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1e-12)


def _svd(mat: _Matrix, *, n_factors: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD

    x = mat.weighted(np.ones_like(mat.centred))
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    idf = np.log((1 + mat.shape[0]) / (1 + df)) + 1.0
    x = x @ sp.diags(idf)
    x = sp.diags(1.0 / np.maximum(np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel()), 1e-12)) @ x
    k = max(1, min(n_factors, min(x.shape) - 1))
    svd = TruncatedSVD(k, algorithm="randomized", n_iter=7, random_state=seed)
    return svd.fit_transform(x)


def _weighted_mean(weights: sp.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    """One partition of the embedding means: a block of users' weight rows times the item vectors."""
    return np.asarray(weights @ vectors)


_MEANS = ("item-mean", "liked-mean", "rating-weighted")


def _mean_part_into(out: np.ndarray, method: str, mat: _Matrix, item_embeddings: Embeddings, centre: bool,
                    partitions: Partitions | None, given: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
    """An embedding-mean part (``item-mean``, ``liked-mean``, ``rating-weighted``), centred if asked and each row
    normalised, written into ``out`` (n_users x dim, float32) one block of users at a time.

    The values are those of the whole float64 table centred, normalised and cast at once (bit for bit: the column
    sums run over the rows in order as numpy's own axis-0 sum does, and every row is scaled on its own), without
    that table: 1M users x 384 float64 is 3 GB. Centring needs the mean user first, so the blocks are computed
    twice (a sparse product per block; the rows' weights are kept). ``given``: the mean user to centre on (a fitted
    :class:`UserSpace`'s), computed here when None. Returns the mean centred on (None without ``centre``).
    """
    parts = in_process(partitions)  # the heavy step (interactions x dim): blocks of users
    w = mat.weights(method).tocsr()
    spans = parts.blocks(w.shape[0])

    def products():
        return zip(spans, parts.map(_weighted_mean, [w[lo:hi] for lo, hi in spans], item_embeddings.vectors),
                   strict=True)  # fmt: skip

    mean = given if centre else None
    if centre and given is None:
        total = np.zeros((0, item_embeddings.dim))
        for _, block in products():  # sum over the rows in order, as x.sum(axis=0) adds them (the first row, then on)
            total = np.add.reduce(np.vstack([total, block]), axis=0, keepdims=True)
        mean = np.true_divide(total, w.shape[0])  # as ndarray.mean: the sum over the count
    for (lo, hi), block in products():
        if mean is not None:
            block -= mean
        out[lo:hi] = _normalise(block, in_place=True)
    return mean


def _base(method: str, mat: _Matrix, item_embeddings: Embeddings, item_cat: sp.csr_matrix | None,
          profile_embeddings: Embeddings | None, n_factors: int, seed: int,
          partitions: Partitions | None = None) -> np.ndarray:  # fmt: skip
    """A part that is not an embedding mean (those go through :func:`_mean_part_into`), as a float64 table;
    ``item_cat`` (:func:`_item_categories`, built once per call) serves the per-category parts."""
    if method == "category-rating":
        return _category_rating(mat, item_cat)
    if method in _NEEDS_ITEMS:
        return _category_hist(mat, item_cat, liked=method == "liked-category-hist")
    if method == "svd":
        return _svd(mat, n_factors=n_factors, seed=seed)
    if method == "profile":
        assert profile_embeddings is not None
        pos = profile_embeddings.index_of()
        missing = [u for u in mat.user_ids if u not in pos]
        if missing:
            raise DataError(f"represent: {len(missing)} users have no profile embedding (e.g. {missing[0]!r})")
        return profile_embeddings.vectors[[pos[u] for u in mat.user_ids]]
    raise ValueError(f"unknown representation {method!r}; expected one of {METHODS}")  # pragma: no cover


def build_user_vectors(interactions: pl.DataFrame, item_embeddings: Embeddings, *, method: str = DEFAULT_METHOD,
                       profile_embeddings: Embeddings | None = None, items: pl.DataFrame | None = None,
                       n_factors: int = SVD_FACTORS, seed: int = 0, centre: bool = False,
                       weights: Mapping[str, float] | None = None, evidence: float | None = DEFAULT_EVIDENCE,
                       max_categories: int | None = DEFAULT_MAX_CATEGORIES,
                       rating_levels: int = DEFAULT_RATING_LEVELS,
                       partitions: Partitions | None = None) -> Embeddings:  # fmt: skip
    """Build one L2-normalised vector per user.

    Args:
        interactions: ``INTERACTIONS`` frame (train rows: never test).
        item_embeddings: item vectors from the encoder (their ids define the item vocabulary).
        method: one of ``METHODS`` (see the module docstring); fusions join parts with ``+``.
        profile_embeddings: embeddings of the users' behaviour profiles, ids = user ids (``profile``).
        items: ``ITEMS`` frame (the ``category-hist`` methods and ``category-rating`` read its ``categories``).
        n_factors: SVD factors (``svd``).
        seed: seed of the randomized SVD (``svd``).
        centre: subtract the mean user from each part before normalising it (see the module docstring;
            the configuration's ``represent.centre``).
        weights: a fusion's weight by part name (a part not named weighs 1; names the method lacks are ignored;
            None: ``represent.weights``' default, so vectors built outside a run match a default run's);
            each part, normalised, is scaled by its weight before the fusion is normalised again (the
            configuration's ``represent.weights``; a single part is normalised alone, so its weight is moot).
        evidence: in a fusion, each per-category part of a user with ``n`` interactions is scaled by
            ``n / (n + evidence)`` before the fusion is normalised (``represent.evidence``, whose default is this
            one's; None: not scaled): the category shares of a user with 3 items are mostly noise, the mean of their
            item embeddings less so.
        max_categories: the per-category parts read only the categories the most items of ``items`` carry, at
            most this many (``represent.max_categories``; None: every category): each is a column of a dense
            users x categories table per part, and of what UMAP reads.
        rating_levels: the ratings are cut at their quantiles into at most this many levels, and each user's
            interactions counted per (level, category) in ``choice_counts`` (``represent.rating_levels``; 1: no
            such counts). The vectors do not read them.
        partitions: where the embedding means (``item-mean``, ``liked-mean``, ``rating-weighted``) are computed,
            in blocks of users (default: here); the item vectors go to each executor once.

    Returns:
        :class:`Embeddings` with user ids sorted as strings, vectors (n_users, dim) float32, and ``activity``
        (each user's interactions; None for ``profile`` alone).
        A user with no history but the method ``profile`` is kept only by ``profile`` itself.

    Raises:
        ValueError: unknown method, or a method without the input it needs.
        DataError: no interactions, items without an embedding, or non-finite vectors.
    """
    return _build(
        interactions,
        item_embeddings,
        method=method,
        profile_embeddings=profile_embeddings,
        items=items,
        n_factors=n_factors,
        seed=seed,
        centre=centre,
        weights=weights,
        evidence=evidence,
        max_categories=max_categories,
        rating_levels=rating_levels,
        partitions=partitions,
    )[0]


def fit_user_vectors(interactions: pl.DataFrame, item_embeddings: Embeddings, *, method: str = DEFAULT_METHOD,
                     items: pl.DataFrame | None = None, n_factors: int = SVD_FACTORS, seed: int = 0,
                     centre: bool = False, weights: Mapping[str, float] | None = None,
                     evidence: float | None = DEFAULT_EVIDENCE, max_categories: int | None = DEFAULT_MAX_CATEGORIES,
                     rating_levels: int = DEFAULT_RATING_LEVELS, profile_embeddings: Embeddings | None = None,
                     partitions: Partitions | None = None) -> "tuple[Embeddings, UserSpace]":  # fmt: skip
    """:func:`build_user_vectors`, and the :class:`UserSpace` that builds other users' vectors in the same space
    (the same category columns, centred on these users' mean, the same weights and evidence):
    :func:`place_in_space`."""
    return _build(interactions, item_embeddings, method=method, profile_embeddings=profile_embeddings, items=items,
                  n_factors=n_factors, seed=seed, centre=centre, weights=weights, evidence=evidence,
                  max_categories=max_categories, rating_levels=rating_levels, partitions=partitions)  # fmt: skip


def place_in_space(space: "UserSpace", interactions: pl.DataFrame, item_embeddings: Embeddings, *,
                   partitions: Partitions | None = None) -> Embeddings:  # fmt: skip
    """Vectors for users outside the fit (new users, or the fitted users' later interactions) in a fitted
    :class:`UserSpace`: each part built as it was, centred on the fitted users' mean, with the fit's category
    columns, weights and evidence. For the fitted users' own interactions it gives their fitted vectors, bit for
    bit. ``item_embeddings``: the fit's items in the fit's order (a run's ``embeddings/items.npy``).

    Raises:
        ConfigError: the space's representation has a part that depends on the fitted users as a whole
            (``svd``'s factors, ``profile``'s encoder).
        ValueError: ``item_embeddings`` are not the fit's items.
        DataError: no interactions, or interactions with items the fit did not embed.
    """
    bad = [p for p in space.method.split("+") if p in ("svd", "profile")]
    if bad:
        raise ConfigError(f"users cannot be placed in a space built with {bad} ({space.method!r}): those parts are "
                         "fitted on the run's users as a whole; use a representation from item embeddings and "
                         "categories (represent.method)")  # fmt: skip
    if len(item_embeddings.ids) != space.n_items:
        raise ValueError(f"the space was fitted over {space.n_items} items, these item embeddings have "
                         f"{len(item_embeddings.ids)}: place users with the fit's own item vectors")  # fmt: skip
    return _build(
        interactions,
        item_embeddings,
        method=space.method,
        items=None,
        centre=space.centre,
        weights=space.weights,
        evidence=space.evidence,
        max_categories=None,
        partitions=partitions,
        space=space,
    )[0]


def _build(interactions: pl.DataFrame, item_embeddings: Embeddings, *, method: str,
           profile_embeddings: Embeddings | None = None, items: pl.DataFrame | None = None,
           n_factors: int = SVD_FACTORS, seed: int = 0, centre: bool = False,
           weights: Mapping[str, float] | None = None, evidence: float | None = DEFAULT_EVIDENCE,
           max_categories: int | None = DEFAULT_MAX_CATEGORIES, rating_levels: int = DEFAULT_RATING_LEVELS,
           partitions: Partitions | None = None, space: "UserSpace | None" = None) -> "tuple[Embeddings, UserSpace]":  # fmt: skip
    """:func:`build_user_vectors`' work; with ``space``, in that fitted space (:func:`place_in_space`). Returns the
    vectors and the space they were built in (a fit's new one, or the given ``space``)."""
    if method not in METHODS:
        raise ValueError(f"unknown representation {method!r}; expected one of {METHODS}")
    parts = method.split("+")
    weights = dict(DEFAULT_PART_WEIGHTS if weights is None else weights)
    if any(not weights[p] > 0 for p in parts if p in weights):
        raise ValueError(f"weights {weights}: the weight of a part of {method!r} must be a number > 0")
    if "profile" in parts and profile_embeddings is None:
        raise ValueError(f"representation {method!r} needs profile_embeddings")
    if any(p in _NEEDS_ITEMS for p in parts) and items is None and space is None:
        raise ValueError(f"representation {method!r} needs items (the ITEMS frame with categories)")
    if method == "profile":
        assert profile_embeddings is not None
        order = np.argsort(profile_embeddings.ids.astype(str))
        vectors = profile_embeddings.vectors[order]
        users = Embeddings(profile_embeddings.ids[order], _normalise(_centred(vectors) if centre else vectors),
                           f"profile:{profile_embeddings.model}")  # fmt: skip
        # kept so that placing users says why it cannot (the encoder's texts), not that the space is missing; it
        # places nobody, so it keeps no mean user
        return users, UserSpace(method=method, weights={method: 1.0}, centre=False, evidence=None, categories=(),
                                means={}, left_out=(), n_items=len(item_embeddings.ids),
                                item_category_pairs=_pairs(None))  # fmt: skip
    if interactions.height == 0:
        raise DataError("represent: no interactions to build user vectors from")
    if any(p in _NEEDS_ITEMS for p in parts) and space is None:
        assert items is not None
        if items.select(pl.col("categories").list.len().sum()).item() == 0:
            if len(parts) == 1:
                raise DataError(
                    f"represent: the items have no categories, so {method!r} (a per-category part) is empty"
                )
            logger.warning("represent: the items have no categories; %r reduces to its other parts", method)
    mat = _Matrix(interactions, item_embeddings.ids, rating_levels if space is None else space.rating_edges)
    # every part centred and normalised into its columns of one float32 table: the small parts first (their
    # widths are known once built), the embedding means straight into their columns a block of users at a time
    small = {}
    # every rating equals its user's mean: nothing is liked more (a fitted space keeps the fit's decision)
    alike = bool(np.all(mat.centred == 0.0)) if space is None else "liked-category-hist" in space.left_out
    # the items' categories once for every per-category part, and the evidence scale once for all of them
    item_cat: sp.csr_matrix | None = None
    names: tuple[str, ...] = ()
    if space is not None:
        item_cat, names = space.item_categories(), space.categories
    elif items is not None and any(p in _NEEDS_ITEMS for p in parts):
        item_cat, names = _item_categories(mat, items, max_categories)
    means: dict[str, np.ndarray] = {}
    scale = None
    if evidence is not None and len(parts) > 1:  # a few items: their shares are noise
        n = mat.counts.astype(np.float32)
        scale = (n / (n + np.float32(evidence)))[:, None]
    for p in parts:
        if p not in _MEANS:  # one part's float64 table at a time, centred and scaled in place (each table is new)
            b = _base(p, mat, item_embeddings, item_cat, profile_embeddings, n_factors, seed, partitions)
            if centre:  # as _centred does (in float64, in place); a fitted space's mean user where given
                b = np.asarray(b, dtype=np.float64)
                means[p] = b.mean(axis=0, keepdims=True) if space is None else space.means[p]
                b -= means[p]
            small[p] = _normalise(b, in_place=True)
            del b
            if p == "liked-category-hist" and "category-hist" in parts and alike:  # liked = chosen: a second copy
                logger.info("represent: every rating is alike (implicit feedback without weights?), so %r would "
                            "repeat 'category-hist': it is left out", p)  # fmt: skip
                small[p][:] = 0.0
            if scale is not None and p in _NEEDS_ITEMS:
                small[p] *= scale
    widths = [small[p].shape[1] if p in small else item_embeddings.dim for p in parts]
    out = np.empty((mat.shape[0], sum(widths)), np.float32)
    for p, lo, width in zip(parts, np.cumsum([0, *widths[:-1]]), widths, strict=True):
        if p in small:
            out[:, lo : lo + width] = small.pop(p)
        else:
            mean = _mean_part_into(out[:, lo : lo + width], p, mat, item_embeddings, centre, partitions,
                                   None if space is None else space.means.get(p))  # fmt: skip
            if mean is not None:
                means[p] = mean
        if len(parts) > 1 and weights.get(p, 1.0) != 1.0:
            out[:, lo : lo + width] *= np.float32(weights[p])
    if len(parts) > 1:  # the fusion normalised again, in place, a block of rows at a time
        for lo in range(0, len(out), _NORM_ROWS):
            _normalise(out[lo : lo + _NORM_ROWS], in_place=True)
    if not np.isfinite(out).all():
        raise DataError("represent: user vectors contain NaN or infinity")
    logger.info("built %d user vectors (%s, dim %d)", len(mat.user_ids), method, out.shape[1])
    activity = mat.counts.astype(np.int64)
    # what users chose, by category, for the segment stage's second split test (whatever the representation)
    chose = item_cat if item_cat is not None or items is None else _item_categories(mat, items, max_categories)[0]
    counts, choices = (None, None) if chose is None else _category_counts(mat, chose)
    users = Embeddings(mat.user_ids, out, f"{method}:{item_embeddings.model}", activity, counts, choices)
    if space is None:
        left_out = ("liked-category-hist",) if alike and {"liked-category-hist", "category-hist"} <= set(parts) else ()
        space = UserSpace(method=method, weights={p: float(weights.get(p, 1.0)) for p in parts}, centre=centre,
                          evidence=None if evidence is None or len(parts) == 1 else float(evidence),
                          categories=names, means=means, left_out=left_out, n_items=len(mat.item_ids),
                          item_category_pairs=_pairs(item_cat), rating_edges=mat.level_edges)  # fmt: skip
    return users, space


def _settings(config: RepresentConfig) -> dict:
    return {"n_factors": config.n_factors, "centre": config.centre, "weights": config.weights,
            "evidence": config.evidence, "max_categories": config.max_categories,
            "rating_levels": config.rating_levels}  # fmt: skip


def vectors_as_configured(interactions: pl.DataFrame, item_embeddings: Embeddings, config: RepresentConfig, *,
                          items: pl.DataFrame | None, seed: int, method: str | None = None,
                          profile_embeddings: Embeddings | None = None,
                          partitions: Partitions | None = None) -> Embeddings:  # fmt: skip
    """:func:`build_user_vectors` with a run's ``represent`` section (``method``, if given, in place of its
    method): the represent stage and the cold-start stage's placement vectors build users alike."""
    return build_user_vectors(interactions, item_embeddings, method=method or config.method,
                              profile_embeddings=profile_embeddings, items=items, seed=seed, partitions=partitions,
                              **_settings(config))  # fmt: skip


def represent_users(split: Split, items: pl.DataFrame, item_vectors: Embeddings, config: PipelineConfig,
                    encoder: EncoderChoice, implicit: bool = False, partitions: Partitions | None = None
                    ) -> tuple[Embeddings, pl.DataFrame, UserSpace]:  # fmt: skip
    """The flow's represent stage: user vectors by ``config.represent.method``, every user's behaviour profile
    (train rows only), and the :class:`UserSpace` that places new users beside them.

    ``encoder`` is the run's encoder (the one that embedded the items); it embeds the profiles where the method
    asks for them. With ``implicit`` the profiles speak of what users chose, not of how they rated.
    ``partitions``: where the per-user blocks (and the profiles' embedding chunks) run.
    """
    train = split.train_full
    profiles = describe_users(train, items, implicit=implicit)
    profile_vectors = None
    if "profile" in config.represent.method:
        profile_vectors, _ = embed_profiles(profiles, encoder, config.encoder, partitions)
    users, space = _build(train, item_vectors, method=config.represent.method, profile_embeddings=profile_vectors,
                          items=items, seed=config.seed, partitions=partitions,
                          **_settings(config.represent))  # fmt: skip
    return users, profiles, space
