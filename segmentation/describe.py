"""Explain every segment: size, what sets it apart, who is in it, how it rates, a readable name.

"Sets apart" is always measured against all users: a category's *lift* is its
share of the segment's choices over its share of everyone's; an item's lift is
the share of segment users who chose it over the share of all users who did.
Keywords come from class-based TF-IDF (BERTopic's c-TF-IDF, :func:`ctfidf`) over
what describes the items each segment's users liked: their categories, tags and
free text (titles only for items with nothing else), see :func:`segment_keywords`.
:func:`describe_run` is the flow's describe stage; :func:`category_lift_table` the report's heatmap table.
"""

import logging
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from embeddings.text import describe_items
from segmentation._polars import to_float
from segmentation.cluster import NOISE, Segmentation
from segmentation.config import ReportConfig
from segmentation.data import Dataset, Split

__all__ = [
    "SEGMENTS",
    "Described",
    "SegmentProfile",
    "category_lift_table",
    "ctfidf",
    "describe_run",
    "describe_segments",
    "profiles_to_frame",
    "segment_keywords",
    "with_stability",
]

logger = logging.getLogger(__name__)

SEGMENTS = pl.Schema(
    {
        "segment_id": pl.Int32(),
        "name": pl.String(),
        "description": pl.String(),
        "size": pl.Int64(),
        "share": pl.Float64(),
        "keywords": pl.List(pl.String()),
        "top_categories": pl.List(pl.String()),
        "category_lift": pl.List(pl.Float64()),
        "top_item_ids": pl.List(pl.String()),
        "top_items": pl.List(pl.String()),
        "item_lift": pl.List(pl.Float64()),
        "popular_items": pl.List(pl.String()),
        "mean_rating": pl.Float64(),
        "rating_std": pl.Float64(),
        "mean_activity": pl.Float64(),
        "median_activity": pl.Float64(),
        "stability": pl.Float64(),
    }
)

KEYWORD_MIN_DF = 2
"""A tag or text word must describe at least this many items to be a keyword (drops typos and one-off words)."""
_NO_CATEGORY = frozenset({"unknown", "(no genres listed)", "none", "n/a"})  # placeholders (MovieLens), not keywords
# the labels describe_items and the tags loader write, and the placeholder category in a title-only description
_EXTRA_STOP = frozenset({"tags", "genres", "genre", "tag", "unknown", "listed"})


@dataclass(frozen=True)
class AttributeProfile:
    """One user attribute of a segment against all users."""

    name: str
    kind: str  # "categorical" or "numeric"
    segment: dict[str, float]  # value -> share (categorical) or {"mean": ..., "median": ...}
    overall: dict[str, float]
    headline: str  # e.g. "72 % male (all users 71 %)"


@dataclass(frozen=True)
class SegmentProfile:
    """Everything the report says about one segment (``segment_id`` -1 = outliers)."""

    segment_id: int
    name: str
    description: str
    size: int
    share: float
    keywords: list[str]
    top_categories: list[str]
    category_lift: list[float]
    category_share: list[float]
    top_item_ids: list[str]
    top_items: list[str]
    item_lift: list[float]
    popular_items: list[str]
    mean_rating: float
    rating_std: float
    mean_activity: float
    median_activity: float
    rating_hist: dict[str, float]  # rating value -> share of the segment's ratings
    demographics: list[AttributeProfile] = field(default_factory=list)
    representative_users: list[str] = field(default_factory=list)
    stability: float | None = None  # mean clusterwise Jaccard over the stability refits; None: not measured

    @property
    def tentative(self) -> bool:
        """Stability measured and below :data:`segmentation.stability.TENTATIVE` (the segment may not come back)."""
        from segmentation.stability import TENTATIVE

        return self.stability is not None and self.stability < TENTATIVE


def ctfidf(counts: sp.spmatrix) -> sp.csr_matrix:
    """Class-based TF-IDF of a (classes x terms) count matrix, as BERTopic's ``ClassTfidfTransformer``.

    ``w(t, c) = tf(t, c) / |c| * log(1 + A / f(t))``: the term's share of the class's words, times the
    log of one plus the average number of words per class ``A`` over the term's count in all classes
    ``f(t)`` (M. Grootendorst, "BERTopic: Neural topic modeling with a class-based TF-IDF procedure",
    arXiv:2203.05794, 2022, eq. 1; ``bertopic.vectorizers.ClassTfidfTransformer`` with its defaults, no
    BM25 weighting or square root). BERTopic rounds ``A`` down to an integer; here it is kept exact. Written
    with scipy rather than importing BERTopic, whose import loads UMAP, HDBSCAN and sentence-transformers.
    """
    counts = sp.csr_matrix(counts, dtype=np.float64)
    f_t = np.asarray(counts.sum(axis=0)).ravel()
    avg = float(counts.sum(axis=1).mean()) if counts.shape[0] else 0.0
    idf = np.log1p(np.divide(avg, f_t, out=np.zeros_like(f_t), where=f_t > 0))
    sizes = np.asarray(counts.sum(axis=1)).ravel()
    tf = sp.diags(np.divide(1.0, sizes, out=np.zeros_like(sizes), where=sizes > 0)) @ counts
    return sp.csr_matrix(tf @ sp.diags(idf))


def _item_terms(items: pl.DataFrame, fallback: dict[str, str]) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, bool]:
    """(items x terms) counts over what describes each item, the terms, which terms are category names, and
    whether any item has tags or text.

    A category is one term (``sci-fi``, ``film-noir``); tags and free text (``items.text``, where the loader puts
    a tags file's tags) are split into words by a scikit-learn ``CountVectorizer`` with English stop words and
    ``min_df`` = :data:`KEYWORD_MIN_DF` items. An item with no category and no text is described by ``fallback``
    (its title), so that it still counts.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    cats = [[c.strip().lower() for c in cs if c and c.strip() and c.strip().lower() not in _NO_CATEGORY]
            for cs in items["categories"].to_list()]  # fmt: skip
    texts = [t or "" for t in items["text"].fill_null("").to_list()]
    has_text = any(t.strip() for t in texts)
    texts = [t if t.strip() or c else fallback.get(i, "") for t, c, i in zip(texts, cats, items["item_id"].to_list())]
    blocks, names = [], []
    if any(cats):
        cv = CountVectorizer(analyzer=lambda cs: cs)
        blocks.append(cv.fit_transform(cats))
        names.append(cv.get_feature_names_out())
    n_cat = sum(len(n) for n in names)
    try:
        words = CountVectorizer(stop_words=sorted(ENGLISH_STOP_WORDS | _EXTRA_STOP), min_df=min(KEYWORD_MIN_DF, len(texts)),
                                token_pattern=r"(?u)\b[^\W\d_][\w'\-]*[^\W_]\b")  # fmt: skip
        blocks.append(words.fit_transform(texts))
        names.append(words.get_feature_names_out())
    except ValueError:  # no word left (no text, or every word a stop word or too rare)
        pass
    if not blocks:
        return sp.csr_matrix((items.height, 0)), np.array([], dtype=object), np.array([], dtype=bool), has_text
    terms = np.concatenate(names).astype(object)
    is_cat = np.arange(len(terms)) < n_cat
    matrix = sp.hstack(blocks, format="csr")
    # a word that is also a category name ("drama" in a synopsis) counts as that category's term
    first: dict[str, int] = {}
    for j, t in enumerate(terms):
        first.setdefault(t, j)
    if len(first) < len(terms):
        target = np.array([first[t] for t in terms])
        matrix = sp.csr_matrix(matrix @ sp.csr_matrix((np.ones(len(terms)), (np.arange(len(terms)), target)),
                                                      shape=(len(terms), len(terms))))  # fmt: skip
        keep = np.array(sorted(first.values()))
        matrix, terms, is_cat = matrix[:, keep], terms[keep], is_cat[keep]
    return matrix, terms, is_cat, has_text


def segment_keywords(liked: pl.DataFrame, items: pl.DataFrame, fallback: dict[str, str] | None = None, *,
                     top_n: int = 10, shown_categories: dict[int, list[str]] | None = None) -> dict[int, list[str]]:  # fmt: skip
    """Each segment's keywords: the top c-TF-IDF terms (:func:`ctfidf`) of the items its members liked.

    The class of a segment is every liked (user, item) row of its members, each contributing the item's
    terms (:func:`_item_terms`: categories, tags and text words). Only *distinctive* terms qualify: a term's
    share of the segment's words must exceed its share of everyone's, so words every segment uses label none.
    When the items have tags or text, a segment's keywords leave out the categories its lift list already
    shows (``shown_categories``); when categories are all the items have (MovieLens 100k), the keywords are
    the distinctive categories ranked by c-TF-IDF, which favours what the segment chooses most among what sets
    it apart (the lift list favours what is rarest elsewhere).

    Args:
        liked: ``segment_id``, ``item_id`` rows, one per liked interaction, or with a ``len`` column: that many
            liked interactions per row.
        items: ``ITEMS`` frame.
        fallback: item id -> text for items with no category and no text (their description with the title).
        top_n: keywords per segment.
        shown_categories: segment -> categories of its lift list.

    Returns:
        segment id -> keywords, best first (every segment in ``liked``).
    """
    matrix, terms, is_cat, other_words = _item_terms(items, fallback or {})
    segs = sorted(int(s) for s in liked["segment_id"].unique().to_list())
    if not len(terms) or not segs:
        return {s: [] for s in segs}
    known = liked.join(items.select("item_id").with_row_index("_col"), on="item_id", how="inner")
    rows = np.searchsorted(segs, known["segment_id"].to_numpy())
    cols = known["_col"].to_numpy().astype(np.int64)
    weights = known["len"].to_numpy().astype(np.float64) if "len" in known.columns else np.ones(len(rows))
    choices = sp.csr_matrix((weights, (rows, cols)), shape=(len(segs), items.height))
    counts = sp.csr_matrix(choices @ matrix)  # (segments x terms): term counts over the liked items
    scores = ctfidf(counts).toarray()
    dense = counts.toarray()
    size = dense.sum(axis=1, keepdims=True)
    share_all = dense.sum(axis=0) / max(dense.sum(), 1.0)
    distinctive = dense / np.maximum(size, 1.0) > share_all[None, :]
    shown = {s: {c.lower() for c in cs} for s, cs in (shown_categories or {}).items()}
    out = {}
    for k, s in enumerate(segs):
        ok = distinctive[k] & (dense[k] > 0)
        if other_words:
            ok &= ~(is_cat & np.isin(terms, list(shown.get(s, ()))))
        idx = np.flatnonzero(ok)
        order = sorted(idx, key=lambda j: (-scores[k, j], terms[j]))[:top_n]
        out[s] = [str(terms[j]) for j in order]
    return out


def _attribute_profiles(members: pl.DataFrame, users: pl.DataFrame | None) -> list[AttributeProfile]:
    if users is None:
        return []
    everyone = users
    mine = users.join(members.select("user_id"), on="user_id", how="semi")
    out = []
    for col in users.columns:
        if col == "user_id":
            continue
        as_num = everyone[col].cast(pl.Float64, strict=False)
        if as_num.null_count() == 0 and everyone[col].n_unique() > 12:
            seg = mine[col].cast(pl.Float64, strict=False)
            s = {"mean": to_float(seg.mean(), 0.0), "median": to_float(seg.median(), 0.0)}
            o = {"mean": to_float(as_num.mean(), 0.0), "median": to_float(as_num.median(), 0.0)}
            head = f"mean {col} {s['mean']:.0f} (all users {o['mean']:.0f})"
            out.append(AttributeProfile(col, "numeric", s, o, head))
            continue
        o_share = everyone[col].fill_null("unknown").value_counts(normalize=True, name="p")
        s_share = mine[col].fill_null("unknown").value_counts(normalize=True, name="p")
        o = dict(zip(o_share[col].cast(pl.String), o_share["p"]))
        s = dict(zip(s_share[col].cast(pl.String), s_share["p"]))
        lifted = sorted(s, key=lambda v: (-(s[v] / max(o.get(v, 1e-9), 1e-9)) if s[v] >= 0.05 else 0, v))
        top = lifted[0] if lifted else "unknown"
        head = f"{100 * s.get(top, 0):.0f} % {top} (all users {100 * o.get(top, 0):.0f} %)"
        out.append(AttributeProfile(col, "categorical", s, o, head))
    return out


def _rating_word(mean: float, overall: float) -> str:
    if mean >= overall + 0.25:
        return "generous raters"
    if mean <= overall - 0.25:
        return "tough critics"
    return ""


def _name(cats: list[str], lifts: list[float], rating_word: str, activity: float, overall_activity: float,
          sid: int) -> str:  # fmt: skip
    if sid == NOISE:
        return "Outliers (no clear segment)"
    strong = [c for c, lift in zip(cats, lifts) if lift >= 1.1][:2]
    base = (" & ".join(strong) + " fans") if strong else "Mainstream mix"
    extra = []
    if activity >= 1.5 * overall_activity:
        extra.append("heavy users")
    elif activity <= 0.6 * overall_activity:
        extra.append("light users")
    if rating_word:
        extra.append(rating_word)
    return base + (", " + ", ".join(extra) if extra else "")


def describe_segments(assignments: pl.DataFrame, interactions: pl.DataFrame, items: pl.DataFrame,
                      item_texts: pl.DataFrame, users: pl.DataFrame | None = None, *, top_n: int = 10,
                      min_item_users: int = 5, user_vectors: np.ndarray | None = None,
                      vector_rows: np.ndarray | None = None, implicit: bool = False) -> list[SegmentProfile]:  # fmt: skip
    """Profile every segment (outliers included, as segment -1).

    Args:
        assignments: ``segmentation.cluster.ASSIGNMENTS`` frame.
        interactions: train ``INTERACTIONS`` (the behaviour segments were built from).
        items: ``ITEMS`` frame (titles, categories).
        item_texts: ``embeddings.text.ITEM_TEXTS`` frame (descriptions: keywords of items with no category, tag or text).
        users: optional user attributes (``user_id`` + columns).
        top_n: items, categories and keywords kept per segment.
        min_item_users: an item must be chosen by this many segment users to be listed as distinctive.
        user_vectors: (n, d) vectors in ``assignments`` row order, to pick representative users
            (closest to the segment's centroid); without them, the highest-membership users.
        vector_rows: the row of ``user_vectors`` of each ``assignments`` row, when their orders differ (no copy of
            every vector in assignment order is made).
        implicit: ``rating`` holds implicit weights (counts, or 1.0): segments are described by what and how
            much they choose, never by how they rate (no rating words, no rating histogram).

    Returns:
        One :class:`SegmentProfile` per segment id, sorted by id (-1 first when present).
    """
    n_users = assignments.height
    # one narrow frame of codes (user row, item row, rating, segment) instead of a joined copy of the string ids:
    # at 1M users and 26M rows the string joins, their per-segment filtered copies and a distinct-user count per
    # item held 7 GB; the per-segment figures come from these codes (each segment's float means from its own rows)
    # items outside ``items`` (a loaded Dataset has none) keep their ids, after the catalogue's
    catalogue = items.select("item_id")
    stray = interactions.lazy().select("item_id").join(catalogue.lazy(), on="item_id", how="anti").unique().collect()
    catalogue = pl.concat([catalogue, stray.sort("item_id")]).with_row_index("i")
    # the rows stay in the log's order (maintain_order): the float figures below are summed in it, run to run alike
    inter = (
        interactions.lazy().select("user_id", "item_id", "rating")
        .join(assignments.lazy().select("user_id", "segment_id").with_row_index("u"), on="user_id", how="inner",
              maintain_order="left")
        .join(catalogue.lazy(), on="item_id", how="inner", maintain_order="left")
        .select("u", "i", "rating", "segment_id")
        .collect()
    )  # fmt: skip
    inter = inter.with_columns((pl.col("rating") >= pl.col("rating").mean().over("u")).alias("liked"))
    titles = dict(zip(items["item_id"], items["title"]))
    overall_mean = to_float(inter["rating"].mean(), 0.0)
    activity = inter.group_by("u").agg(pl.len(), pl.col("segment_id").first())
    overall_activity = to_float(activity["len"].mean(), 0.0)
    # (segment, item): rows and distinct users (their sum over segments is the item's distinct users: a user is in
    # one segment)
    seg_items = (
        inter.group_by("segment_id", "i")
        .agg(pl.len(), pl.col("u").n_unique().alias("n_seg"))
        .join(catalogue, on="i").drop("i")
    )  # fmt: skip

    # category counts per segment from (segment, item) counts, at most segments x items rows: exploding every
    # interaction's category list took 9 GB at 1M users and 25M rows
    cat_all = (
        seg_items.select("segment_id", "item_id", "len")
        .join(items.select("item_id", "categories"), on="item_id")
        .explode("categories").drop_nulls("categories")
        .group_by("segment_id", "categories").agg(pl.col("len").sum())
    )  # fmt: skip
    cat_overall = (
        cat_all.group_by("categories").agg(pl.col("len").sum())
        .with_columns((pl.col("len") / pl.col("len").sum()).alias("p_all"))
    )  # fmt: skip
    item_users_all = seg_items.group_by("item_id").agg(pl.col("n_seg").sum().alias("n_all"))

    desc = dict(zip(item_texts["item_id"], item_texts["description"]))
    liked = (inter.filter(pl.col("liked")).group_by("segment_id", "i").len()
             .join(catalogue, on="i").select("segment_id", "item_id", "len"))  # fmt: skip
    seg_codes = assignments["segment_id"].to_numpy()
    profiles, pending = [], []
    for sid in sorted(assignments["segment_id"].unique().to_list()):
        members = assignments.filter(pl.col("segment_id") == sid)
        size = members.height
        # categories by lift, with a support floor so a single odd rating does not win
        cs = (
            cat_all.filter(pl.col("segment_id") == sid).select("categories", "len")
            .with_columns((pl.col("len") / pl.col("len").sum()).alias("p_seg"))
            .join(cat_overall.select("categories", "p_all"), on="categories")
            .with_columns((pl.col("p_seg") / pl.col("p_all")).alias("lift"))
            .filter(pl.col("p_seg") >= 0.02)
            .sort(["lift", "categories"], descending=[True, False]).head(top_n)
        )  # fmt: skip
        # distinctive items: share of segment users who chose it over share of all users (r, a tie-break of the popular
        # list, rounded: a group-by mean may differ in its last bit run to run)
        seg = inter.filter(pl.col("segment_id") == sid)  # narrow codes; float means in row order, run to run alike
        its = (
            seg.group_by("i").agg(pl.col("u").n_unique().alias("n_seg"), pl.col("rating").mean().round(9).alias("r"))
            .join(catalogue, on="i").drop("i")
            .join(item_users_all, on="item_id")
            .with_columns(((pl.col("n_seg") / size) / (pl.col("n_all") / n_users)).alias("lift"))
        )  # fmt: skip
        distinct = (
            its.filter(pl.col("n_seg") >= min(min_item_users, max(2, size // 10)))
            .sort(["lift", "n_seg", "item_id"], descending=[True, True, False])
            .head(top_n)
        )
        popular = its.sort(["n_seg", "r", "item_id"], descending=[True, True, False]).head(top_n)
        ua = activity.filter(pl.col("segment_id") == sid)["len"]
        # numpy on the rows in log order: polars' std summed in a thread- and chunk-dependent order, and two runs of
        # the same data wrote rating_std values a last bit apart
        ratings = seg["rating"].to_numpy()
        mean_r = float(ratings.mean()) if len(ratings) else 0.0
        rating_std = float(ratings.std(ddof=1)) if len(ratings) > 1 else 0.0
        hist = seg["rating"].round(0).value_counts(normalize=True, name="p").sort("rating")
        cats, lifts = cs["categories"].to_list(), [float(v) for v in cs["lift"]]
        act = to_float(ua.mean(), 0.0)
        name = _name(cats, lifts, "" if implicit else _rating_word(mean_r, overall_mean), act, overall_activity, sid)
        if user_vectors is not None and size:
            rows = np.flatnonzero(seg_codes == sid)
            mine = user_vectors[rows] if vector_rows is None else user_vectors[vector_rows[rows]]
            centroid = mine.mean(axis=0)
            reps = members["user_id"].to_numpy()[np.argsort(-(mine @ centroid))[:5]].tolist()
            del mine
        else:
            reps = members.sort(["membership", "user_id"], descending=[True, False])["user_id"].head(5).to_list()
        demo = _attribute_profiles(members, users)
        top_titles = [titles.get(i, i) for i in distinct["item_id"]]
        pending.append((sid, name, size, cats, lifts, top_titles, mean_r, act, demo))
        if implicit:
            hist = hist.clear()
        profiles.append(SegmentProfile(
            segment_id=int(sid), name=name, description="", size=size, share=size / n_users, keywords=[],
            top_categories=cats, category_lift=lifts, category_share=[float(v) for v in cs["p_seg"]],
            top_item_ids=distinct["item_id"].to_list(), top_items=top_titles,
            item_lift=[float(v) for v in distinct["lift"]],
            popular_items=[titles.get(i, i) for i in popular["item_id"]],
            mean_rating=mean_r, rating_std=rating_std, mean_activity=act,
            median_activity=to_float(ua.median(), 0.0),
            rating_hist={f"{k:g}": float(p) for k, p in zip(hist["rating"], hist["p"])},
            demographics=demo, representative_users=reps,
        ))  # fmt: skip
    # keywords last: they leave out the categories each segment's lift list shows
    keywords = segment_keywords(liked, items, desc, top_n=top_n,
                                shown_categories={int(p[0]): p[3] for p in pending})  # fmt: skip
    for i, (sid, name, size, cats, lifts, top_titles, mean_r, act, demo) in enumerate(pending):
        kw = keywords.get(int(sid), [])
        text = _paragraph(sid, name, size, n_users, cats[:3], lifts[:3], top_titles[:3], kw[:5], mean_r, overall_mean,
                          act, overall_activity, demo, implicit=implicit)  # fmt: skip
        profiles[i] = replace(profiles[i], keywords=kw, description=text)
    _dedupe_names(profiles)
    logger.info("described %d segments", len(profiles))
    return profiles


def _dedupe_names(profiles: list[SegmentProfile]) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(profiles):
        if p.name in seen:
            # tell twins apart by their most distinctive category or item not already in the name
            extra = (
                next((c for c in p.top_categories if c not in p.name), None)
                or (p.top_items[:1] or [f"#{p.segment_id}"])[0]
            )
            object.__setattr__(profiles[i], "name", f"{p.name} ({extra})")
        seen[profiles[i].name] = i


def _paragraph(sid, name, size, n_users, cats, lifts, items, kw, mean_r, overall_mean, act, overall_act, demo, *,
               implicit: bool = False) -> str:  # fmt: skip
    if sid == NOISE:
        lead = (
            f"{size} users ({100 * size / n_users:.1f} %) fit no segment well; each is shown with its nearest segment."
        )
    else:
        lead = f"{name}: {size} users ({100 * size / n_users:.1f} % of all)."
    parts = [lead]
    if cats:
        parts.append("They choose " + ", ".join(f"{c} ({lift:.1f}×)" for c, lift in zip(cats, lifts))
                     + " more than the average user.")  # fmt: skip
    if items:
        parts.append("Distinctive titles: " + ", ".join(items) + ".")
    if not implicit:
        parts.append(f"They rate {mean_r:.2f} on average (all users {overall_mean:.2f}) and have {act:.0f} ratings "
                     f"each (all users {overall_act:.0f}).")  # fmt: skip
    elif overall_mean != 1.0 or mean_r != 1.0:  # a weight column (plays, counts)
        parts.append(f"They have {act:.0f} items each (all users {overall_act:.0f}), with a mean weight of "
                     f"{mean_r:.1f} per item (all users {overall_mean:.1f}).")  # fmt: skip
    else:
        parts.append(f"They have {act:.0f} items each (all users {overall_act:.0f}).")
    if demo:
        parts.append("Who they are: " + "; ".join(d.headline for d in demo[:3]) + ".")
    if kw:
        parts.append("Keywords: " + ", ".join(kw) + ".")
    return " ".join(parts)


def profiles_to_frame(profiles: list[SegmentProfile]) -> pl.DataFrame:
    """The parquet-ready ``SEGMENTS`` frame (demographics and histograms stay in the report)."""
    rows = [{k: v for k, v in asdict(p).items() if k in SEGMENTS} for p in profiles]
    return pl.DataFrame(rows, schema=SEGMENTS)


@dataclass(frozen=True)
class Described:
    """Segment profiles and the tables the report draws from them."""

    profiles: list[SegmentProfile]
    category_lift: pl.DataFrame


def category_lift_table(profiles: list[SegmentProfile]) -> pl.DataFrame:
    """Long frame segment_id, category, lift, share for the report's heatmap."""
    rows = [(p.segment_id, c, lift, share) for p in profiles
            for c, lift, share in zip(p.top_categories, p.category_lift, p.category_share)]  # fmt: skip
    return pl.DataFrame(rows, schema={"segment_id": pl.Int32, "category": pl.String, "lift": pl.Float64,
                                      "share": pl.Float64}, orient="row")  # fmt: skip


def describe_run(segmentation: Segmentation, split: Split, dataset: Dataset, profiles: pl.DataFrame,
                 users: Embeddings, config: ReportConfig) -> Described:  # fmt: skip
    """The flow's describe stage: profiles of every segment from train behaviour, item texts and user attributes."""
    ids = segmentation.assignments["user_id"]
    rows = None
    if len(users.ids) != len(ids) or not (ids.to_numpy() == np.asarray(users.ids, dtype=object)).all():
        pos = {u: i for i, u in enumerate(users.ids)}
        rows = np.array([pos[u] for u in ids], dtype=np.int64)
    out = describe_segments(segmentation.assignments, split.train_full, dataset.items, describe_items(dataset.items),
                            dataset.users, top_n=config.top_n, user_vectors=users.vectors, vector_rows=rows,
                            implicit=dataset.implicit)  # fmt: skip
    return Described(out, category_lift_table(out))


def with_stability(profiles: list[SegmentProfile], stability: dict | None) -> list[SegmentProfile]:
    """The profiles with each segment's stability filled in (``per_segment`` of
    :func:`segmentation.stability.measure_stability`).

    Outliers and segments the stability stage did not measure keep ``None``.
    """
    per = (stability or {}).get("per_segment") or {}
    return [replace(p, stability=(per.get(str(p.segment_id)) or {}).get("jaccard") if p.segment_id != NOISE else None)
            for p in profiles]  # fmt: skip
