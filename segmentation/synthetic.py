"""Synthetic interaction logs of any size with planted segments: a shop, a media service or a listening log.

:func:`synthetic_log` draws users, items and interactions the way real logs look, not the way segflow
segments them, and keeps the truth beside them:

* **Items** have a Zipf-like popularity (exponent ``item_zipf``), one main category and one or two
  attribute words; names are drawn from a word list, and some carry quotes, apostrophes, commas and
  non-ASCII letters, as real catalogues do (``"Weird Al" Yankovic``).
* **Users** belong to one of ``n_segments`` planted segments with Zipf-like sizes, or are noise users
  (``noise_share``) with no segment. Activity is long-tailed: the number of distinct items per user is
  ``min_per_user`` plus a log-normal draw, so most users have a handful of interactions and a few have
  hundreds.
* **Choice**: each segment prefers ``categories_per_segment`` categories (no two segments the same set); a segment user takes each
  interaction from a preferred category with probability ``taste``, otherwise from any category by its
  popularity. Noise users choose by popularity alone. Within a category items are drawn by popularity.
* **Feedback**: ``explicit`` gives ratings 1-5 (each segment rates in its own style: a mean and a
  spread, plus an item quality term); ``implicit`` gives a positive count per (user, item), e.g. plays,
  long-tailed (geometric, with a heavier tail for preferred categories).
* **Mechanic** (``mechanic``), how segments differ:

  - ``taste``: each segment prefers its own ``categories_per_segment`` categories (above);
  - ``style``: segments come in twins that choose exactly alike (the same categories, in the same
    proportions) and differ in how they rate and how active they are: one twin rates its first preferred
    category high (+1.2) and its second low (-1.2), the other the reverse, and the second twin is twice as
    active. What they choose does not tell twins apart; only which of their choices they like does;
  - ``nested``: every second segment is a narrower segment inside the one before it: it prefers its parent's
    categories plus one of its own, and takes half of its preferred picks from that extra category. The
    parent's users never pick the extra category by taste, so the child is its parent's users plus a twist.
* **Noise users** (``noise``): ``popularity`` users choose by popularity alone (they all look alike: a
  "mainstream" crowd); ``personal`` users each prefer their own random pair of categories with the same
  ``taste``, so they belong to no segment and to no crowd either, which is what an outlier is.

:data:`WORLDS` names the generators the segmentation benchmark uses (each a set of arguments to
:func:`synthetic_log`, see :func:`world_log`), and says which tune segflow's settings and which are held
out from tuning and only reported.

Everything is vectorised: the ``M`` size (1M users, 100k items, about 30M interactions) is drawn in
about a minute and a few GiB. :meth:`SyntheticLog.write` writes the files in the shape of a real export
(CSV, TSV or Parquet) for the ordinary loader (``segflow run --ratings ... --items ...``).

>>> log = synthetic_log(500, 2_000, mean_per_user=12, seed=0)
>>> log.interactions.columns, log.items.columns[:3]
(['user_id', 'item_id', 'rating', 'timestamp'], ['item_id', 'name', 'categories'])
>>> int(log.labels["segment"].n_unique()) >= 2, bool(log.interactions["rating"].min() >= 1)
(True, True)
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from segmentation.planted import NOISE_LABEL, zipf_sizes

__all__ = [
    "CLI_COLUMNS",
    "SIZES",
    "WORLDS",
    "GenerativeModel",
    "SyntheticLog",
    "World",
    "light_category_counts",
    "synthetic_log",
    "world_log",
]

logger = logging.getLogger(__name__)

SIZES: dict[str, dict[str, int]] = {
    "XS": {"n_users": 2_000, "n_items": 12_000, "mean_per_user": 30},
    "S": {"n_users": 100_000, "n_items": 20_000, "mean_per_user": 30},
    "M": {"n_users": 1_000_000, "n_items": 100_000, "mean_per_user": 30},
}
"""Named sizes: S is about 3M interactions, M about 30M (issue 13); XS is a listening-log-shaped test size."""

_CATEGORIES = [
    "rock", "pop", "jazz", "electronic", "hip-hop", "folk", "classical", "metal", "soul", "reggae", "country",
    "blues", "ambient", "punk", "latin", "k-pop", "gospel", "techno", "indie", "opera", "funk", "disco", "grime",
    "bossa-nova", "trance", "ska", "bluegrass", "flamenco", "afrobeat", "shoegaze", "drum-and-bass", "synthwave",
    "chanson", "fado", "qawwali", "highlife", "zydeco", "polka", "tango", "cumbia",
]  # fmt: skip
_ATTRIBUTES = [
    "acoustic", "live", "instrumental", "upbeat", "melancholic", "experimental", "orchestral", "lo-fi", "vintage",
    "female-vocals", "male-vocals", "danceable", "romantic", "political", "cinematic", "minimal", "epic", "chill",
]  # fmt: skip
_WORDS = [
    "Blue", "Night", "River", "Echo", "Golden", "Silent", "Velvet", "Iron", "Paper", "Neon", "Wild", "Glass",
    "Crimson", "Hollow", "Northern", "Electric", "Lonely", "Midnight", "Sugar", "Thunder", "Broken", "Crystal",
    "Distant", "Empire", "Fever", "Garden", "Harbor", "Island", "Jungle", "Kingdom", "Lantern", "Mirror",
    "Ocean", "Phantom", "Quartz", "Rebel", "Shadow", "Tiger", "Union", "Violet", "Winter", "Zephyr",
    "Café", "Señor", "Björk-like", "Møller", "Zoë", "Noël",
]  # fmt: skip
_NOUNS = ["Band", "Collective", "Trio", "Orchestra", "Project", "Brothers", "Sisters", "Club", "Machine", "Society"]


_NOISE_RATING = (3.3, 1.2)
"""Noise users' rating mean (before the item's quality) and spread."""
_PLAYS_P = (0.08, 0.3)
"""Implicit feedback: the geometric play count's parameter on a preferred category and on any other."""
_BURST = (0.02, 50)
"""Implicit feedback: the share of (user, item) counts multiplied, and by how much (a binge)."""

CLI_COLUMNS: dict[str, list[str]] = {
    "explicit": ["--user-col", "user", "--item-col", "item", "--rating-col", "stars", "--time-col", "time",
                 "--item-id-col", "item_id", "--title-col", "name", "--category-col", "categories",
                 "--text-cols", "description"],
    "implicit": ["--user-col", "userID", "--item-col", "artistID", "--rating-col", "", "--weight-col", "weight",
                 "--time-col", "time", "--item-id-col", "id", "--title-col", "name", "--category-col", "tags",
                 "--text-cols", "description"],
}  # fmt: skip
"""``segflow run``'s column flags for the CSV files :meth:`SyntheticLog.write` writes, by feedback."""


@dataclass(frozen=True)
class SyntheticLog:
    """A drawn log and its truth.

    Attributes:
        interactions: ``user_id``, ``item_id`` (String), ``rating`` Float64 (1-5, or the count for implicit
            feedback), ``timestamp`` Int64 epoch seconds; one row per (user, item).
        items: ``item_id``, ``name``, ``categories`` ("main|attribute[|attribute]"), ``description``.
        users: ``user_id``, ``country``, ``age``.
        labels: ``user_id``, ``segment`` Int32 (-1 for noise users).
        feedback: "explicit" or "implicit".
        segment_categories: per segment, the categories it prefers.
        generator: the parameters the log was drawn with (:class:`GenerativeModel`), for the Bayes-optimal labelling
            that knows them (:meth:`GenerativeModel.bayes_labels`, the benchmark's oracle ceiling).
    """

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    labels: pl.DataFrame
    feedback: str
    segment_categories: list[list[str]]
    generator: "GenerativeModel | None" = None

    def write(self, folder: Path | str, *, fmt: Literal["csv", "tsv", "dat", "parquet"] = "csv",
              timestamps: bool = True) -> dict[str, Path]:  # fmt: skip
        """Write ``ratings``, ``items``, ``users`` and ``labels`` files as a real export would look.

        ``dat`` is Last.fm's layout: tab-separated, quotes left in the text as they are (no CSV quoting).
        Explicit logs name their columns ``user``, ``item``, ``stars``, ``time``; implicit logs ``userID``,
        ``artistID``, ``weight`` (Last.fm's names) and the items file ``id``, ``name``, ``tags``, ``description``.

        Returns:
            role -> path (``ratings``, ``items``, ``users``, ``labels``).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        inter = self.interactions
        if self.feedback == "implicit":
            inter = inter.select(pl.col("user_id").alias("userID"), pl.col("item_id").alias("artistID"),
                                 pl.col("rating").cast(pl.Int64).alias("weight"),
                                 *([pl.col("timestamp").alias("time")] if timestamps else []))  # fmt: skip
            items = self.items.rename({"item_id": "id", "categories": "tags"})
        else:
            inter = inter.select(pl.col("user_id").alias("user"), pl.col("item_id").alias("item"),
                                 pl.col("rating").alias("stars"),
                                 *([pl.col("timestamp").alias("time")] if timestamps else []))  # fmt: skip
            items = self.items
        ext = {"csv": "csv", "tsv": "tsv", "dat": "dat", "parquet": "parquet"}[fmt]
        out = {}
        for role, frame in (("ratings", inter), ("items", items), ("users", self.users), ("labels", self.labels)):
            path = folder / f"{role}.{ext}"
            if fmt == "parquet":
                frame.write_parquet(path)
            else:
                frame.write_csv(path, separator="," if fmt == "csv" else "\t",
                                quote_style="never" if fmt == "dat" else "necessary")  # fmt: skip
            out[role] = path
        return out


@dataclass(frozen=True, eq=False)
class GenerativeModel:
    """The parameters :func:`synthetic_log` drew a log with, and the likelihood of a user's interactions under each
    label (a planted segment or noise).

    :meth:`log_posterior` is the posterior over labels that knows these parameters and sees one user's interactions
    alone (items, their categories and ratings or play counts, and how many there are); :meth:`bayes_labels` takes
    the most probable label, which is the best any method can do on average in labelling a user right: the oracle
    ceiling of the segmentation benchmark. How the generator's mechanics enter the likelihood:

    * **Prior**: the planted shares (segment sizes, the noise share).
    * **Choice, with popularity bias**: a pick comes from a preferred category with probability ``taste`` (each
      preferred category by its probability), otherwise from a category drawn by popularity (``category_share``);
      within the category the item is drawn by popularity, the same for every label, so that factor cancels and the
      counts of picks per category carry all of the choice's evidence. Personal noise users prefer a random pair of
      categories of their own, unknown to the oracle: their likelihood is the average over all ``n_cat^2`` pairs.
    * **Number of interactions**: ``min_per_user`` plus the floor of a log-normal draw times the segment's activity
      factor (style's second twins x2), capped; when only a share ``kept`` of every user's interactions is seen (a
      random split), the count seen is that draw thinned binomially.
    * **Feedback**: explicit ratings are a normal draw (the segment's style mean and spread, plus a bonus on its
      preferred categories and the item's quality) rounded and clipped to 1-5, so each rating's probability is a
      normal interval; noise users rate around ``_NOISE_RATING``. Implicit counts are geometric (a lower parameter
      on preferred categories), a small share multiplied by ``_BURST``.

    One approximation: the generator collapses repeated draws of an item into one interaction and keeps a random
    ``activity`` of a user's distinct items; the likelihood treats the items seen as independent draws and their
    number as the drawn activity (``drawn_activity`` keeps it, to count the users where the two differ).

    Attributes (per item, per segment or per user, as named): ``item_ids``, ``item_cat`` (main category index),
    ``category_share`` (a popularity pick's category distribution), ``quality`` (rating offset), ``prefs``
    (segments x columns of preferred categories, -1 unused), ``pref_p`` (each column's probability in a taste pick),
    ``bonus`` (rating bonus per column), ``activity_factor`` (per segment; noise users have segment 0's),
    ``prior`` (segment shares, then the noise share), ``taste``, ``noise``, ``feedback``, ``min_per_user``,
    ``activity_mu`` / ``activity_sigma`` (the log-normal), ``max_per_user``, ``style_mean`` / ``style_sd``
    (explicit only), ``drawn_activity`` (per user, in ``u<i>`` order; a diagnostic, not used by the likelihood).
    """

    item_ids: np.ndarray
    item_cat: np.ndarray
    category_share: np.ndarray
    quality: np.ndarray
    prefs: np.ndarray
    pref_p: np.ndarray
    bonus: np.ndarray
    activity_factor: np.ndarray
    prior: np.ndarray
    taste: float
    noise: str
    feedback: str
    min_per_user: int
    activity_mu: float
    activity_sigma: float
    max_per_user: int
    style_mean: np.ndarray | None
    style_sd: np.ndarray | None
    drawn_activity: np.ndarray

    @property
    def n_segments(self) -> int:
        return len(self.prefs)

    def _per_category(self, values: np.ndarray) -> np.ndarray:
        """(segments, categories): the sum of ``values`` (segments x columns) over each segment's columns per category."""
        n_cat = len(self.category_share)
        out = np.zeros((self.n_segments, n_cat))
        rows, cols = np.nonzero(self.prefs >= 0)
        np.add.at(out, (rows, self.prefs[rows, cols]), values[rows, cols])
        return out

    def _choice_loglik(self, counts: np.ndarray) -> np.ndarray:
        """(users, segments + 1) log-likelihood of the per-category pick counts (up to a term common to all labels)."""
        tiny = 1e-300
        base = (1.0 - self.taste) * self.category_share
        seg = self.taste * self._per_category(self.pref_p) + base  # (segments, categories)
        out = np.empty((len(counts), self.n_segments + 1))
        out[:, :-1] = counts @ np.log(np.maximum(seg, tiny)).T
        if self.noise == "personal":  # a random own pair (a, b), each picked half the time in a taste pick
            n_cat = len(base)
            eye = np.eye(n_cat)
            pair = self.taste * 0.5 * (eye[:, None, :] + eye[None, :, :]).reshape(n_cat * n_cat, n_cat) + base
            ll = counts @ np.log(np.maximum(pair, tiny)).T
            out[:, -1] = _logsumexp(ll) - np.log(n_cat * n_cat)
        else:
            out[:, -1] = counts @ np.log(np.maximum(base, tiny))
        return out

    def _activity_loglik(self, n_seen: np.ndarray, kept: float) -> np.ndarray:
        """(users, segments + 1) log-probability of each user's number of interactions seen."""
        from scipy.stats import binom, lognorm

        m, cap = self.min_per_user, self.max_per_user
        dist = lognorm(s=self.activity_sigma, scale=np.exp(self.activity_mu))
        k = np.arange(cap + 1)
        factors = np.r_[self.activity_factor, self.activity_factor[0]]  # noise users draw with segment 0's factor
        out = np.empty((len(n_seen), len(factors)))
        values, inverse = np.unique(n_seen, return_inverse=True)
        thin = binom.pmf(values[:, None], k[None, :], kept) if kept < 1 else (values[:, None] == k[None, :]) * 1.0
        t = np.maximum(k - m, 0).astype(np.float64)
        for col, f in enumerate(factors):
            pmf = np.where(k >= m, dist.cdf((t + 1) / f) - dist.cdf(t / f), 0.0)  # floor(L * f) = k - m
            pmf[cap] = dist.sf((cap - m) / f) if cap >= m else 0.0  # the cap takes the tail
            out[:, col] = np.log(np.maximum(thin @ pmf, 1e-300))[inverse]
        return out

    def _feedback_loglik(self, u: np.ndarray, j: np.ndarray, value: np.ndarray, n_users: int) -> np.ndarray:
        """(users, segments + 1) log-probability of the ratings (explicit) or play counts (implicit) seen."""
        from scipy.stats import norm

        cat = self.item_cat[j]
        k = self.n_segments
        logp = np.empty((len(j), k + 1))
        if self.style_mean is not None and self.style_sd is not None:  # explicit ratings
            bonus = self._per_category(self.bonus)  # (segments, categories)
            mean = np.c_[self.style_mean[None, :] + bonus[:, cat].T, np.full(len(j), _NOISE_RATING[0])]
            mean += self.quality[j][:, None]
            sd = np.r_[self.style_sd, _NOISE_RATING[1]][None, :]
            hi = np.where(value >= 5, np.inf, value + 0.5)[:, None]  # rounded, then clipped to 1-5
            lo = np.where(value <= 1, -np.inf, value - 0.5)[:, None]
            logp[:] = np.log(np.maximum(norm.cdf((hi - mean) / sd) - norm.cdf((lo - mean) / sd), 1e-300))
        else:
            liked = self._per_category(np.ones_like(self.pref_p)) > 0  # (segments, categories)
            p = np.c_[np.where(liked[:, cat].T, *_PLAYS_P), np.full(len(j), _PLAYS_P[1])]

            def geometric(x: np.ndarray) -> np.ndarray:
                ok = (x >= 1) & (x == np.floor(x))
                return np.where(ok, p * (1 - p) ** (np.maximum(x, 1) - 1), 0.0)

            v = value[:, None]
            logp[:] = np.log(np.maximum((1 - _BURST[0]) * geometric(v) + _BURST[0] * geometric(v / _BURST[1]), 1e-300))
        out = np.zeros((n_users, k + 1))
        for col in range(k + 1):
            out[:, col] = np.bincount(u, weights=logp[:, col], minlength=n_users)
        return out

    def log_likelihoods(self, interactions: pl.DataFrame, *, kept: float = 1.0) -> tuple[list[str], np.ndarray]:
        """Each user's log-likelihood under each label, from that user's interactions alone.

        Args:
            interactions: ``user_id``, ``item_id``, ``rating`` rows of this log (all of them, or a random share).
            kept: the share of every user's interactions ``interactions`` holds (1.0: all; 0.9: the train rows of
                a random 90 % split), for the likelihood of how many a user has.

        Returns:
            (user ids in sorted order, (users, segments + 1) log-likelihoods: column ``s`` segment ``s``, the last
            noise), up to a term that is the same for every label.
        """
        index = pl.DataFrame({"item_id": self.item_ids.tolist(), "_j": np.arange(len(self.item_ids))})
        e = interactions.select("user_id", "item_id", "rating").join(index, on="item_id", how="left")
        if e["_j"].null_count():
            raise ValueError("log_likelihoods: interactions name items this generator did not draw")
        users, u = np.unique(e["user_id"].to_numpy().astype(str), return_inverse=True)
        j, value = e["_j"].to_numpy(), e["rating"].to_numpy().astype(np.float64)
        counts = np.zeros((len(users), len(self.category_share)))
        np.add.at(counts, (u, self.item_cat[j]), 1.0)
        n_seen = np.bincount(u, minlength=len(users))
        ll = self._choice_loglik(counts) + self._activity_loglik(n_seen, kept)
        ll += self._feedback_loglik(u, j, value, len(users))
        return users.tolist(), ll

    def log_posterior(self, interactions: pl.DataFrame, *, kept: float = 1.0) -> tuple[list[str], np.ndarray]:
        """(user ids, (users, segments + 1) log posterior over the labels), the prior being the planted shares."""
        users, ll = self.log_likelihoods(interactions, kept=kept)
        with np.errstate(divide="ignore"):
            joint = ll + np.log(self.prior)[None, :]
        return users, joint - _logsumexp(joint)[:, None]

    def bayes_labels(self, interactions: pl.DataFrame, *, kept: float = 1.0) -> pl.DataFrame:
        """Each user's most probable label under the true parameters: ``user_id``, ``segment`` Int32 (-1 noise)."""
        users, post = self.log_posterior(interactions, kept=kept)
        best = post.argmax(axis=1)
        labels = np.where(best == self.n_segments, NOISE_LABEL, best).astype(np.int32)
        return pl.DataFrame({"user_id": users, "segment": pl.Series(labels, dtype=pl.Int32)})


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of a 2-d array."""
    from scipy.special import logsumexp

    return logsumexp(x, axis=1)


def _names(n: int, rng: np.random.Generator) -> list[str]:
    """Unique artist/product names; about 3 % carry quotes, apostrophes or commas."""
    w = np.array(_WORDS, dtype=object)
    a, b, c = rng.integers(0, len(w), n), rng.integers(0, len(w), n), rng.integers(0, len(_NOUNS), n)
    style = rng.random(n)
    names = []
    for i in range(n):
        if style[i] < 0.01:
            name = f'"{w[a[i]]}" {w[b[i]]}'  # "Weird Al" Yankovic
        elif style[i] < 0.02:
            name = f"{w[a[i]]}'s {_NOUNS[c[i]]}"
        elif style[i] < 0.03:
            name = f"{w[a[i]]}, {w[b[i]]} & the {_NOUNS[c[i]]}"
        else:
            name = f"{w[a[i]]} {w[b[i]]} {_NOUNS[c[i]]}"
        names.append(f"{name} {i}")  # unique, as catalogues key on the name too
    return names


def _draw_within(cat_of_event: np.ndarray, item_cat: np.ndarray, item_weight: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """For each event's category, an item of that category drawn by popularity (inverse CDF, vectorised)."""
    order = np.argsort(item_cat, kind="stable")
    cats_sorted = item_cat[order]
    w = item_weight[order]
    n_cat = int(item_cat.max()) + 1
    start = np.searchsorted(cats_sorted, np.arange(n_cat), side="left")
    end = np.searchsorted(cats_sorted, np.arange(n_cat), side="right")
    csum = np.cumsum(w)
    base = np.where(start > 0, csum[np.maximum(start - 1, 0)], 0.0)
    total = csum[np.maximum(end - 1, 0)] - base
    c = cat_of_event
    target = base[c] + rng.random(len(c)) * total[c]
    pos = np.searchsorted(csum, target, side="right")
    pos = np.clip(pos, start[c], end[c] - 1)
    return order[pos]


def synthetic_log(n_users: int, n_items: int, *, mean_per_user: float = 30.0, min_per_user: int = 3,
                  n_segments: int = 10, noise_share: float = 0.05, n_categories: int = 30,
                  categories_per_segment: int = 2, taste: float = 0.75, item_zipf: float = 0.9,
                  feedback: Literal["explicit", "implicit"] = "explicit",
                  mechanic: Literal["taste", "style", "nested"] = "taste",
                  noise: Literal["popularity", "personal"] = "popularity", seed: int = 0) -> SyntheticLog:  # fmt: skip
    """Draw a log with planted segments (see the module docstring).

    Args:
        n_users, n_items: sizes.
        mean_per_user: mean distinct items per user (the activity's long tail included).
        min_per_user: fewest distinct items per user.
        n_segments: planted segments (sizes Zipf-like, largest about 5x the smallest).
        noise_share: share of users in no segment (label -1), choosing by popularity.
        n_categories: item categories (at most 40).
        categories_per_segment: categories each segment prefers.
        taste: probability that a segment user's interaction comes from a preferred category.
        item_zipf: exponent of item popularity (rank^-item_zipf).
        feedback: explicit 1-5 ratings, or implicit positive counts.
        mechanic: how segments differ (``taste``, ``style``, ``nested``; see the module docstring).
            ``style`` needs explicit feedback.
        noise: how noise users choose (``popularity`` or ``personal``; see the module docstring).
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.

    Raises:
        ValueError: sizes or shares out of range.
    """
    if not 1 <= n_categories <= len(_CATEGORIES):
        raise ValueError(f"n_categories must be in [1, {len(_CATEGORIES)}] (given: {n_categories})")
    if n_users < 1 or n_items < n_categories or not 0 <= noise_share < 1 or not 0 <= taste <= 1:
        raise ValueError(f"synthetic_log: need n_users >= 1, n_items >= n_categories, 0 <= noise_share < 1 and "
                         f"0 <= taste <= 1 (given {n_users}, {n_items}, {noise_share}, {taste})")  # fmt: skip
    if mechanic not in ("taste", "style", "nested") or noise not in ("popularity", "personal"):
        raise ValueError(f"synthetic_log: unknown mechanic {mechanic!r} or noise {noise!r}")
    if mechanic == "style" and feedback != "explicit":
        raise ValueError("synthetic_log: mechanic 'style' differs by ratings, so it needs feedback='explicit'")
    if mechanic == "nested" and categories_per_segment + 1 > n_categories:
        raise ValueError(f"synthetic_log: mechanic 'nested' needs n_categories > categories_per_segment "
                         f"(given {n_categories}, {categories_per_segment})")  # fmt: skip
    rng = np.random.default_rng(seed)
    # items: popularity by a random rank, a main category (categories themselves Zipf-like), attributes
    pop = 1.0 / np.power(rng.permutation(n_items) + 1.0, item_zipf)
    cat_weight = 1.0 / np.power(np.arange(n_categories) + 1.0, 0.6)
    item_cat = rng.choice(n_categories, n_items, p=cat_weight / cat_weight.sum())
    item_cat[:n_categories] = np.arange(n_categories)  # every category has an item
    quality = rng.normal(0.0, 0.5, n_items)
    n_attr = 1 + (rng.random(n_items) < 0.4)
    attr = rng.integers(0, len(_ATTRIBUTES), (n_items, 2))
    cats = [
        "|".join([_CATEGORIES[item_cat[j]], *(_ATTRIBUTES[attr[j, t]] for t in range(n_attr[j]))])
        for j in range(n_items)
    ]
    names = _names(n_items, rng)
    descr = [f"{_ATTRIBUTES[attr[j, 0]]} {_CATEGORIES[item_cat[j]]} from the {1960 + 10 * ((j * 7) % 6)}s"
             for j in range(n_items)]  # fmt: skip
    items = pl.DataFrame({"item_id": [f"a{j}" for j in range(n_items)], "name": names, "categories": cats,
                          "description": descr})  # fmt: skip

    # users: segments with Zipf-like sizes, noise users, long-tailed activity
    n_noise = int(round(n_users * noise_share))
    sizes = zipf_sizes(n_users - n_noise, n_segments, ratio=5.0) if n_users - n_noise >= n_segments else None
    labels = np.full(n_users, NOISE_LABEL, dtype=np.int32)
    if sizes is not None:
        labels[: n_users - n_noise] = np.repeat(np.arange(n_segments, dtype=np.int32), sizes)
    labels = labels[rng.permutation(n_users)]
    drawn: list[np.ndarray] = []
    for _ in range(n_segments):  # no two segments prefer the same set of categories (where there are enough sets)
        c = rng.choice(n_categories, categories_per_segment, replace=False)
        for _retry in range(100):
            if all(set(c) != set(d) for d in drawn):
                break
            c = rng.choice(n_categories, categories_per_segment, replace=False)
        drawn.append(c)
    prefs = np.stack(drawn)
    # per segment: preferred categories (columns; -1 = unused), the probability of each in a taste pick, and a
    # rating bonus per preferred category
    pref_p = np.full(prefs.shape, 1.0 / categories_per_segment)
    bonus = np.full(prefs.shape, 0.6)
    active = np.ones(n_segments)
    if mechanic == "style":
        for s in range(1, n_segments, 2):  # twins (s - 1, s): same choice, opposite likes, twice the activity
            prefs[s] = prefs[s - 1]
            bonus[s - 1], bonus[s] = -1.2, -1.2
            bonus[s - 1, 0], bonus[s, 1 % categories_per_segment] = 1.2, 1.2
            active[s] = 2.0
    elif mechanic == "nested":
        extra = np.full((n_segments, 1), -1, dtype=prefs.dtype)
        pref_p = np.hstack([pref_p, np.zeros((n_segments, 1))])
        bonus = np.hstack([bonus, np.full((n_segments, 1), 0.6)])
        for s in range(1, n_segments, 2):  # segment s lies inside segment s - 1
            prefs[s] = prefs[s - 1]
            extra[s, 0] = rng.choice(np.setdiff1d(np.arange(n_categories), prefs[s - 1]))
            pref_p[s] = np.r_[np.full(categories_per_segment, 0.5 / categories_per_segment), 0.5]
        prefs = np.hstack([prefs, extra])
    sigma = 1.0
    mu = np.log(max(mean_per_user - min_per_user, 0.5)) - sigma**2 / 2
    lognormal = np.floor(rng.lognormal(mu, sigma, n_users) * active[np.maximum(labels, 0)]).astype(np.int64)
    activity = np.minimum(min_per_user + lognormal, n_items // 2)

    # events: category by taste or popularity, item by popularity within it; repeats collapse below
    cat_pop = np.bincount(item_cat, weights=pop, minlength=n_categories)
    cat_share = cat_pop / cat_pop.sum()  # the category of a pick by popularity
    draws = (activity * 1.3).astype(np.int64) + 2  # extra draws make up for repeats
    user_of = np.repeat(np.arange(n_users), draws)
    seg_of = labels[user_of]
    in_taste = (seg_of >= 0) & (rng.random(len(user_of)) < taste)
    cat = rng.choice(n_categories, len(user_of), p=cat_share)
    if mechanic == "nested":  # preferred columns drawn by their probabilities
        cum = np.cumsum(pref_p, axis=1)
        u01 = rng.random(len(user_of))[:, None]
        pick = np.minimum((u01 >= cum[np.maximum(seg_of, 0)]).sum(axis=1), prefs.shape[1] - 1)
    else:
        pick = rng.integers(0, categories_per_segment, len(user_of))
    cat[in_taste] = prefs[seg_of[in_taste], pick[in_taste]]
    if noise == "personal":  # each noise user prefers a random pair of categories of their own
        own = rng.integers(0, n_categories, (n_users, 2))
        noisy = (seg_of < 0) & (rng.random(len(user_of)) < taste)
        cat[noisy] = own[user_of[noisy], rng.integers(0, 2, int(noisy.sum()))]
    item_of = _draw_within(cat, item_cat, pop, rng)
    key = np.unique(user_of * n_items + item_of)  # distinct (user, item)
    u, j = key // n_items, key % n_items
    perm = np.lexsort((rng.random(len(u)), u))  # a random order within each user
    u, j = u[perm], j[perm]
    counts = np.bincount(u, minlength=n_users)
    keep = np.arange(len(u)) - (np.cumsum(counts) - counts)[u] < activity[u]
    u, j = u[keep], j[keep]
    seg = labels[u]
    hit = (seg >= 0)[:, None] & (prefs[np.maximum(seg, 0)] == item_cat[j][:, None])  # (events, preferred columns)
    liked_cat = hit.any(axis=1)
    style_mean = style_sd = None
    if feedback == "explicit":
        style_mean = rng.uniform(2.8, 4.2, n_segments)
        style_sd = rng.uniform(0.6, 1.2, n_segments)
        pref_bonus = (hit * bonus[np.maximum(seg, 0)]).sum(axis=1)  # 0.6 on a preferred category under "taste"
        mean = np.where(seg >= 0, style_mean[np.maximum(seg, 0)], _NOISE_RATING[0]) + pref_bonus + quality[j]
        sd = np.where(seg >= 0, style_sd[np.maximum(seg, 0)], _NOISE_RATING[1])
        rating = np.clip(np.rint(rng.normal(mean, sd)), 1, 5)
    else:
        p = np.where(liked_cat, *_PLAYS_P)  # geometric counts: preferred categories get played more
        rating = rng.geometric(p).astype(np.float64) * np.where(rng.random(len(u)) < _BURST[0], _BURST[1], 1)
    t0 = 1_577_836_800  # 2020-01-01
    ts = t0 + rng.integers(0, 365 * 86_400, len(u))
    inter = pl.DataFrame({"u": u, "j": j, "rating": rating.astype(np.float64), "timestamp": ts.astype(np.int64)})
    inter = inter.select(
        pl.concat_str(pl.lit("u"), pl.col("u").cast(pl.String)).alias("user_id"),
        pl.concat_str(pl.lit("a"), pl.col("j").cast(pl.String)).alias("item_id"),
        "rating", "timestamp",
    ).sort("user_id", "item_id")  # fmt: skip
    countries = np.array(["DE", "FR", "US", "BR", "JP", "IN", "GB", "ES"], dtype=object)
    users = pl.DataFrame({
        "user_id": [f"u{i}" for i in range(n_users)],
        "country": countries[rng.integers(0, len(countries), n_users)].tolist(),
        "age": (18 + rng.integers(0, 50, n_users)).astype(str).tolist(),
    })  # fmt: skip
    truth = pl.DataFrame({"user_id": users["user_id"], "segment": pl.Series(labels, dtype=pl.Int32)})
    logger.info("synthetic log: %d users, %d items, %d interactions (%s), %d segments + %.0f %% noise", n_users,
                n_items, inter.height, feedback, n_segments, 100 * noise_share)  # fmt: skip
    n_seg_users = np.bincount(labels[labels >= 0], minlength=n_segments)
    generator = GenerativeModel(
        item_ids=np.asarray(items["item_id"].to_list(), dtype=object), item_cat=item_cat,
        category_share=cat_share, quality=quality, prefs=prefs, pref_p=pref_p, bonus=bonus, activity_factor=active,
        prior=np.r_[n_seg_users, n_noise] / n_users, taste=taste, noise=noise, feedback=feedback,
        min_per_user=min_per_user, activity_mu=mu, activity_sigma=sigma, max_per_user=n_items // 2,
        style_mean=style_mean, style_sd=style_sd, drawn_activity=activity,
    )  # fmt: skip
    segment_categories = [[_CATEGORIES[c] for c in p if c >= 0] for p in prefs]
    return SyntheticLog(inter, items, users, truth, feedback, segment_categories, generator)


@dataclass(frozen=True)
class World:
    """A named planted generator for the segmentation benchmark.

    Attributes:
        name: the world's name (rows of ``benchmarks/results/segmentation.json`` say ``world:<name>``).
        role: ``tuning`` (segflow's settings and representation may be chosen on it) or ``held-out``
            (never looked at while choosing; only reported).
        mechanic: one line on what sets its segments apart.
        kwargs: the arguments of :func:`synthetic_log` besides the sizes and the seed.
    """

    name: str
    role: Literal["tuning", "held-out"]
    mechanic: str
    kwargs: dict


WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        World("taste", "tuning", "choice driven by 2 of 30 categories with popularity bias; long-tailed activity "
              "(mean 30, at least 3); 5 % personal noise users; explicit ratings",
              {"mechanic": "taste", "noise": "personal"}),
        World("style", "tuning", "twin segments that choose alike and differ in which of their categories they "
              "rate high and in activity (x2); 5 % personal noise users; explicit ratings",
              {"mechanic": "style", "noise": "personal"}),
        World("light", "tuning", "taste-driven choice as in taste, but most users have 3-10 interactions (mean "
              "10); 5 % personal noise users; explicit ratings. Tunes the outlier rules for how much evidence a user "
              "has without reading sparse-implicit, which is held out",
              {"mechanic": "taste", "noise": "personal", "mean_per_user": 10}),
        World("nested", "held-out", "every second segment nested inside another (its categories plus one of its "
              "own); 5 % personal noise users; explicit ratings",
              {"mechanic": "nested", "noise": "personal"}),
        World("sparse-implicit", "held-out", "choice by 2 categories, most users 3-10 interactions (mean 10), "
              "implicit play counts; 5 % personal noise users",
              {"mechanic": "taste", "noise": "personal", "mean_per_user": 10, "feedback": "implicit"}),
    )
}  # fmt: skip
"""The benchmark's planted worlds: three tune segflow's defaults, two are held out and only reported."""


def world_log(name: str, n_users: int, *, n_items: int = 3_000, seed: int = 0) -> SyntheticLog:
    """Draw the log of the planted world ``name`` (a key of :data:`WORLDS`) with 10 segments and 5 % noise.

    Raises:
        ValueError: an unknown world.
    """
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; expected one of {sorted(WORLDS)}")
    return synthetic_log(n_users, n_items, seed=seed, **WORLDS[name].kwargs)


def light_category_counts(sizes: list[int], categories: int, *, taste: float = 0.75,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Category counts of light users in groups, as the planted worlds' light users choose: (counts (n, categories)
    float64, group (n,)). Each user makes 3-10 picks; a pick of group ``g`` is one of its two own categories with
    probability ``taste``, else a category by Zipf popularity. For the category split test's tests and benchmark
    (:func:`segmentation.mixture.split_by_categories`), which need counts without items or vectors."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, categories + 1)
    popularity /= popularity.sum()
    rows, group = [], []
    for g, m in enumerate(sizes):
        own = np.zeros(categories)
        own[[(2 * g) % categories, (2 * g + 1) % categories]] = 0.5
        p = taste * own + (1 - taste) * popularity
        for _ in range(m):
            rows.append(rng.multinomial(int(rng.integers(3, 11)), p))
            group.append(g)
    return np.array(rows, dtype=np.float64).reshape(-1, categories), np.array(group, dtype=np.int64)
