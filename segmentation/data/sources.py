"""Reading one input file: CSV, TSV, ``.dat`` or Parquet; gzip or zstd; any text encoding.

:func:`read_table` scans a file with every column as String (types are checked later, by
:mod:`segmentation.data.tables`); the loaders that call it run inside :func:`with_scratch`, which gives
them a temporary folder for decompressed or re-encoded copies. Problems of the file itself (missing,
empty, not decodable, ragged lines, damaged compression) raise a :class:`DataError` naming the file and line.
"""

import codecs
import contextlib
import functools
import tempfile
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from segmentation._errors import DataError

__all__ = ["collect_table", "format_suffix", "read_table", "with_scratch"]


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


def with_scratch(loader):
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


def format_suffix(path: Path) -> str:
    """The suffix that says the format, past compression suffixes: '.tsv' for ``plays.tsv.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _quote_for(path: Path, separator: str, quote_char: str) -> str | None:
    """``data.quote_char`` resolved: 'auto' quotes with '"' unless the file is tab-separated."""
    if quote_char != "auto":
        return quote_char or None
    return None if separator == "\t" or format_suffix(path) in _UNQUOTED_SUFFIXES else '"'


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
    damaged: tuple[type[Exception], ...]  # what a failed read raises: none for a plain file
    if compression:
        import pyarrow as pa  # a dependency already (Parquet); imported only for compressed text

        source, damaged = pa.input_stream(str(path), compression=compression), (OSError, pa.ArrowException)
    else:
        source, damaged = path.open("rb"), ()
    with source as src, out.open("wb") if out else contextlib.nullcontext() as dst:
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


def read_table(path: Path, role: str, *, separator: str | None = None, has_header: bool = True,
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
        raise RuntimeError("read_table runs inside a loader decorated with with_scratch")
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


def collect_table(lf: pl.LazyFrame, path: Path, role: str) -> pl.DataFrame:
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as err:
        _check_decodable(path, role)
        where = _locate_csv_problem(path) or str(err).splitlines()[0]
        raise DataError(f"{role} file {path} could not be read: {where}") from None
