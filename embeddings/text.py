"""Readable texts: one description per item, one behaviour profile per user.

Item descriptions are what the encoder embeds. User profiles explain users in
plain words (for reports and labels) and are the representation of last resort
for users with no usable history.
"""

import logging

import polars as pl

__all__ = ["describe_items", "describe_users", "ITEM_TEXTS", "USER_PROFILES"]

logger = logging.getLogger(__name__)

ITEM_TEXTS = pl.Schema({"item_id": pl.String, "description": pl.String})
USER_PROFILES = pl.Schema({"user_id": pl.String, "profile": pl.String})


def describe_items(items: pl.DataFrame) -> pl.DataFrame:
    """One description per item: ``"Title (year). Genres: A, B. free text"``.

    Args:
        items: frame with schema ``segmentation.data.ITEMS``.

    Returns:
        Frame with schema ``ITEM_TEXTS``, in the order of ``items``.
    """
    title = (
        pl.when(pl.col("title").str.len_chars() > 0)
        .then(pl.col("title"))
        .otherwise(pl.lit("Item ") + pl.col("item_id"))
    )
    year = (
        pl.when(pl.col("year").is_not_null() & ~title.str.contains(r"\(\d{4}\)$"))
        .then(pl.lit(" (") + pl.col("year").cast(pl.String) + pl.lit(")"))
        .otherwise(pl.lit(""))
    )
    genres = (
        pl.when(pl.col("categories").list.len() > 0)
        .then(pl.lit(". Genres: ") + pl.col("categories").list.join(", "))
        .otherwise(pl.lit(""))
    )
    text = (
        pl.when(pl.col("text").fill_null("").str.len_chars() > 0)
        .then(pl.lit(". ") + pl.col("text"))
        .otherwise(pl.lit(""))
    )
    return items.select(pl.col("item_id"), pl.concat_str([title, year, genres, text]).alias("description"))


ACTIVITY_WORDS = ((150, "a very active"), (60, "an active"), (25, "an occasional"), (0, "a light"))
"""Rating counts from which a profile calls its user very active, active, occasional or light. Fixed (about
ML-100k's quartiles), not the data's quantiles: a user's profile text then depends on that user's rows
alone, so when a few users change, only their profiles are embedded again."""


def _activity_word(n: int) -> str:
    return next(word for threshold, word in ACTIVITY_WORDS if n >= threshold)


def describe_users(interactions: pl.DataFrame, items: pl.DataFrame, *, n_titles: int = 3, n_genres: int = 3,
                   implicit: bool = False) -> pl.DataFrame:  # fmt: skip
    """One readable behaviour profile per user.

    Example: ``"An active viewer with 272 ratings (mean 3.6). Loves Star Wars, Fargo, Contact.
    Dislikes Batman Forever. Favourite genres: Drama, Comedy, Action."``

    Args:
        interactions: ``INTERACTIONS`` frame (train rows only, to keep test data out).
        items: ``ITEMS`` frame.
        n_titles: titles named as loved and disliked.
        n_genres: genres named as favourites.
        implicit: interactions are counts, not ratings (no loves/dislikes, most-consumed instead).

    Returns:
        Frame with schema ``USER_PROFILES``, one row per user in ``interactions``.
    """
    # Items as codes numbered in (title, item_id) order, so that sorting by the code sorts as by title and id; the
    # wide columns (titles, category lists) meet only the few rows kept per user, never every interaction (at 1M
    # users and 25M rows, joining them to every row took gigabytes).
    named = (
        interactions.select("item_id").unique()
        .join(items.select("item_id", "title", "categories"), on="item_id", how="left")
        .with_columns(pl.col("title").fill_null(pl.col("item_id")))  # an item missing from ``items``: its id
        .sort(["title", "item_id"])
        .with_row_index("_code")
    )  # fmt: skip
    # users as codes too: the string ids meet only the one row per user at the end
    user_ids = interactions.select("user_id").unique().with_row_index("_u")
    by_user = (
        interactions.lazy().select("user_id", "item_id", "rating", "timestamp")
        .join(named.lazy().select("item_id", "_code"), on="item_id", how="left")
        .join(user_ids.lazy(), on="user_id", how="left")
        .select(pl.col("_u").alias("user_id"), "rating", "timestamp", "_code")
        .with_columns((pl.col("rating") - pl.col("rating").mean().over("user_id")).alias("centred"))
        .collect()
    )  # fmt: skip
    stats = by_user.group_by("user_id").agg(pl.len().alias("n"), pl.col("rating").mean().alias("mean"))
    titles = named.select("_code", "title")

    def first_titles(rows: pl.DataFrame, descending: bool, name: str) -> pl.DataFrame:
        # ties broken by title and id: the order must not depend on other users' rows (incremental embedding)
        kept = (
            rows.sort(["rating", "timestamp", "_code"], descending=[descending, True, False], nulls_last=True)
            .group_by("user_id", maintain_order=True)
            .head(n_titles)
            .join(titles, on="_code", how="left", maintain_order="left")
        )
        return kept.group_by("user_id", maintain_order=True).agg(pl.col("title").alias(name))

    loves = first_titles(by_user.filter(pl.col("centred") >= 0) if not implicit else by_user, True, "loves")
    dislikes = first_titles(by_user.filter(pl.col("centred") < -0.75), False, "dislikes")
    # categories as codes in name order, per item once; each liked row then carries one small code per category
    item_cats = named.select("_code", "categories").explode("categories").drop_nulls("categories")
    names = item_cats.select(pl.col("categories").unique().sort()).with_row_index("_cat")
    item_cats = item_cats.join(names, on="categories").select("_code", "_cat")
    genres = (
        by_user.filter(pl.col("centred") >= 0)
        .select("user_id", "_code")
        .join(item_cats, on="_code")
        .group_by("user_id", "_cat")
        .agg(pl.len().alias("c"))
        .sort(["user_id", "c", "_cat"], descending=[False, True, False])
        .group_by("user_id", maintain_order=True)
        .head(n_genres)
        .join(names, on="_cat", how="left", maintain_order="left")
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("categories").alias("genres"))
    )
    frame = (
        stats.join(loves, on="user_id", how="left")
        .join(dislikes, on="user_id", how="left")
        .join(genres, on="user_id", how="left")
        .join(user_ids.rename({"user_id": "id", "_u": "user_id"}), on="user_id", how="left")
        .drop("user_id").rename({"id": "user_id"})
    )  # fmt: skip
    rows = []
    noun = "interactions" if implicit else "ratings"
    for r in frame.iter_rows(named=True):
        parts = [f"{_activity_word(r['n']).capitalize()} user with {r['n']} {noun}"
                 + ("" if implicit else f" (mean {r['mean']:.1f})") + "."]  # fmt: skip
        if r["loves"]:
            parts.append(("Often chooses " if implicit else "Loves ") + ", ".join(r["loves"]) + ".")
        if r["dislikes"] and not implicit:
            parts.append("Dislikes " + ", ".join(r["dislikes"]) + ".")
        if r["genres"]:
            parts.append("Favourite genres: " + ", ".join(r["genres"]) + ".")
        rows.append((r["user_id"], " ".join(parts)))
    out = pl.DataFrame(rows, schema=USER_PROFILES, orient="row")
    logger.info("wrote behaviour profiles for %d users", out.height)
    return out.sort("user_id")
