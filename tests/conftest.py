"""Shared fixtures: isolated Prefect/segflow homes, tiny planted data, MovieLens 100k (from the recbole wheel)."""

import os
import tempfile
from pathlib import Path

# Before anything imports Prefect: a private home, no telemetry, patience on a loaded 2-core machine.
_HOME = Path(tempfile.mkdtemp(prefix="segflow-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_HOME / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The dataset cache is shared with the user's (read-mostly, checksummed); everything else is per session.
os.environ.setdefault("SEGFLOW_TEST_HOME", str(_HOME))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from segmentation.data import Dataset, validate_dataset  # noqa: E402

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def make_planted(n_users: int = 150, n_items: int = 60, n_segments: int = 3, per_user: int = 20,
                 seed: int = 0) -> tuple[Dataset, np.ndarray]:  # fmt: skip
    """Users in ``n_segments`` planted groups; group g chooses items of genres 2g and 2g+1 and rates them high.

    Returns the dataset and the (n_users,) planted labels (user ``u{i}`` has label ``labels[i]``).
    """
    rng = np.random.default_rng(seed)
    item_genre = np.arange(n_items) % len(GENRES)
    items = pl.DataFrame({
        "item_id": [f"i{j}" for j in range(n_items)],
        "title": [f"{GENRES[g]} story number {j}" for j, g in enumerate(item_genre)],
        "year": [1990 + j % 20 for j in range(n_items)],
        "categories": [[GENRES[g]] for g in item_genre],
        "text": [f"A {GENRES[g].lower()} film." for g in item_genre],
    }, schema_overrides={"year": pl.Int32})  # fmt: skip
    labels = np.arange(n_users) % n_segments
    rows = []
    for u in range(n_users):
        liked = np.flatnonzero((item_genre // 2) == labels[u] % (len(GENRES) // 2))
        other = np.setdiff1d(np.arange(n_items), liked)
        chosen = np.concatenate([rng.choice(liked, per_user - 3, replace=False), rng.choice(other, 3, replace=False)])
        for j in chosen:
            r = float(np.clip(round(rng.normal(4.3 if j in liked else 2.2, 0.6)), 1, 5))
            rows.append((f"u{u}", f"i{j}", r, 1_000_000 + int(rng.integers(0, 10**6))))
    inter = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    users = pl.DataFrame({"user_id": [f"u{u}" for u in range(n_users)],
                          "gender": ["F" if u % 2 else "M" for u in range(n_users)],
                          "age": [str(18 + (u * 7) % 50) for u in range(n_users)]})  # fmt: skip
    return validate_dataset(inter, items, users, name="planted"), labels


@pytest.fixture(scope="session")
def planted():
    return make_planted()


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The segflow cache for this test session (embeddings, Prefect results); datasets come from the user cache."""
    path = Path(os.environ["SEGFLOW_TEST_HOME"]) / "cache"
    path.mkdir(exist_ok=True)
    from segmentation.data import default_cache_dir, ensure_movielens_100k

    src = ensure_movielens_100k(default_cache_dir())
    dst = path / "datasets" / "ml-100k"
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src, target_is_directory=True)
    return path


@pytest.fixture(scope="session")
def ml100k(cache_dir):
    from segmentation.data import load_movielens_100k

    return load_movielens_100k(cache_dir)


@pytest.fixture(scope="session")
def encoder(cache_dir):
    from embeddings.encoder import Encoder

    return Encoder(cache_dir=cache_dir / "embeddings")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session, shared by every folder that runs flows (~10-15 s once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
