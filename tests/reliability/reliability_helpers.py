"""Helpers of the reliability tests: small data files, a published run to protect, snapshots of run folders.

A module, not a conftest: ``from reliability_helpers import ...`` (pytest puts this folder on sys.path).
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # for `from tests.conftest import ...`, whatever directory pytest was started from
    sys.path.insert(0, str(ROOT))
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def write_base_files(folder: Path, n_users: int = 40, n_items: int = 30, per_user: int = 8) -> dict[str, Path]:
    """A small valid data set as CSV: ``ratings.csv``, ``items.csv``, ``users.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = ["user_id,item_id,rating,timestamp"]
    for u in range(n_users):
        for k in range(per_user):
            ratings.append(f"u{u},i{(u * 7 + k) % n_items},{1 + (u + k) % 5},{1_600_000_000 + 3600 * k}")
    items = ["item_id,title,categories"]
    items += [f"i{j},Film number {j} (19{70 + j % 30}),{GENRES[j % 6]}|{GENRES[(j + 1) % 6]}" for j in range(n_items)]
    users = ["user_id,gender,age"] + [f"u{u},{'FM'[u % 2]},{18 + u % 50}" for u in range(n_users)]
    out = {}
    for name, lines in (("ratings", ratings), ("items", items), ("users", users)):
        out[name] = folder / f"{name}.csv"
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def write_planted_files(folder: Path, *, n_users: int = 200, n_items: int = 60, seed: int = 0,
                        hostile: bool = False) -> dict[str, Path]:  # fmt: skip
    """Planted taste groups (as ``tests/conftest.py``'s ``make_planted``) written as CSV files.

    ``hostile``: ids and titles full of path separators, ``..``, NUL-like text and HTML; plus repairs the
    loader must make (3 duplicate rows, 2 users without ratings, 2 ratings of undescribed items).
    """
    from tests.conftest import make_planted

    ds, _ = make_planted(n_users=n_users, n_items=n_items, n_segments=3, per_user=20, seed=seed)
    inter, items, users = ds.interactions, ds.items, ds.users
    if hostile:
        evil_user = ["../../etc/u{}", "u{}/../../x", "<script>alert('u{}')</script>", "u{}%00\\0\\x00", "C:\\u{}\\..",
                     "u{} ␀ nul", "/abs/u{}"]  # fmt: skip
        evil_item = ["../i{}", "i{}/..", "<img src=x onerror=alert({})>", "i{}%2e%2e%2f", "i{}\\..\\..", "&i{};"]
        umap_ = {f"u{k}": evil_user[k % len(evil_user)].format(k) for k in range(n_users)}
        umap_.update({"u0": "..", "u1": "/", "u2": "."})
        imap_ = {f"i{k}": evil_item[k % len(evil_item)].format(k) for k in range(n_items)}
        imap_.update({"i0": "..", "i1": "/"})
        inter = inter.with_columns(pl.col("user_id").replace(umap_), pl.col("item_id").replace(imap_))
        users = users.with_columns(pl.col("user_id").replace(umap_))
        items = items.with_columns(
            pl.col("item_id").replace(imap_),
            (pl.lit("<script>alert(1)</script> ../../") + pl.col("title") + pl.lit(" /etc/passwd \\0")).alias("title"),
        )
        dup = inter.head(3).with_columns((6 - pl.col("rating")).alias("rating"),
                                         (pl.col("timestamp") + 10**7).alias("timestamp"))  # fmt: skip
        ghost = pl.DataFrame({"user_id": [inter["user_id"][0]] * 2, "item_id": ["no/such/item", "<b>gone</b>"],
                              "rating": [3.0, 4.0], "timestamp": [1, 2]})  # fmt: skip
        inter = pl.concat([inter, dup, ghost])
        users = pl.concat([users, pl.DataFrame({"user_id": ["lonely/../1", "<i>lonely2</i>"], "gender": ["F", "M"],
                                                "age": ["30", "40"]})])  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    out = {"ratings": folder / "ratings.csv", "items": folder / "items.csv", "users": folder / "users.csv"}
    inter.write_csv(out["ratings"])
    items.with_columns(pl.col("categories").list.join("|")).drop("year", "text").write_csv(out["items"])
    users.write_csv(out["users"])
    return out


def make_published_run(out: Path, tag: str = "previous") -> Path:
    """A complete-looking published run in ``out`` (written with RunWriter, so ``latest`` points at it)."""
    from segmentation.runs import SCHEMA_VERSION, RunWriter

    with RunWriter(out) as w:
        pl.DataFrame({"user_id": ["a", "b"], "segment_id": [0, 1]}).write_parquet(w.path / "users.parquet")
        pl.DataFrame({"segment_id": [0, 1], "name": ["x", "y"]}).write_parquet(w.path / "segments.parquet")
        (w.path / "metrics.json").write_text(json.dumps({"tag": tag}))
        (w.path / "manifest.json").write_text(json.dumps({"run_id": w.run_id, "schema_version": SCHEMA_VERSION}))
        (w.path / "report").mkdir()
        (w.path / "report" / "index.html").write_text(f"<html>{tag}</html>")
    return w.final_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: files by content hash, symlinks by target, folders as such."""
    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_untouched(out: Path, before: dict[str, str]) -> None:
    after = snapshot(out)
    assert not list(out.glob(".partial-*")), "a .partial-* folder was left behind"
    assert after == before, f"the published runs changed: {set(after.items()) ^ set(before.items())}"
    from segmentation.runs import load_run

    load_run(out / "latest")  # still a complete run


def run_env(tmp: Path) -> dict[str, str]:
    """Environment for a ``segflow`` child process: offline, its own Prefect home, unbuffered output."""
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_EXTRA_LOGGERS="embeddings,segmentation,reports")  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    return env
