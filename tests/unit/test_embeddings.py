"""Item texts, user profiles, the cached encoder and the FAISS index."""

import numpy as np
import polars as pl
import pytest

from embeddings.encoder import Encoder, resolve_model_path
from embeddings.index import VectorIndex
from embeddings.text import describe_items, describe_users
from segmentation._errors import ConfigError


def test_item_descriptions(planted):
    ds, _ = planted
    d = describe_items(ds.items)
    assert d.columns == ["item_id", "description"] and d.height == ds.items.height
    assert d["description"][0] == "Action story number 0 (1990). Genres: Action. A action film."


def test_user_profiles_are_readable(planted):
    ds, _ = planted
    p = describe_users(ds.interactions, ds.items)
    assert p.height == ds.n_users
    text = p.filter(pl.col("user_id") == "u0")["profile"].item()
    assert "ratings (mean" in text and "Loves" in text and "Favourite genres: Action" in text


def test_a_user_profile_depends_on_that_users_rows_alone(planted):
    """Incremental embedding: when some users change, only their profile texts (and vectors) change."""
    ds, _ = planted
    items = ds.items["item_id"].to_list()
    # 20 users with 10, 20, ..., 200 ratings, so the quantiles of counts sit among them
    rows = [(f"v{u}", items[j % len(items)], float(1 + (u + j) % 5), j) for u in range(20) for j in range(10 * (u + 1))]
    inter = pl.DataFrame(rows, schema=ds.interactions.schema, orient="row")
    before = describe_users(inter, ds.items)
    changed = {f"v{u}" for u in range(12, 20)}
    # the 8 heaviest users lose all but their first 2 ratings: every quantile of counts moves
    after = describe_users(inter.filter(~pl.col("user_id").is_in(list(changed)) | (pl.col("timestamp") < 2)),
                           ds.items)  # fmt: skip
    both = before.join(after, on="user_id", suffix="_after")
    differs = set(both.filter(pl.col("profile") != pl.col("profile_after"))["user_id"].to_list())
    assert differs == changed
    # ties (one timestamp for all of a user's ratings, as in bulk imports) are broken by title, not by row order
    tied = inter.with_columns(pl.lit(0, dtype=pl.Int64).alias("timestamp"))
    shuffled = tied.sample(fraction=1.0, shuffle=True, seed=3)
    assert describe_users(tied, ds.items).sort("user_id").equals(describe_users(shuffled, ds.items).sort("user_id"))


def test_encoder_normalised_and_cached(tmp_path):
    enc = Encoder(cache_dir=tmp_path)
    texts = ["a space opera with lasers", "a quiet romantic drama", "a space opera with lasers"]
    v = enc.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.array_equal(v[0], v[2])
    assert enc.stats["embedded"] == 2  # duplicates embedded once
    again = Encoder(cache_dir=tmp_path)  # a new process would see the same files
    w = again.encode(texts[:2])
    assert again.stats["embedded"] == 0 and again._st is None  # model never loaded
    assert np.allclose(v[:2], w)
    # similar texts are closer than unrelated ones
    x = enc.encode(["science fiction battle in space", "a love story in Paris"])
    assert float(v[0] @ x[0]) > float(v[0] @ x[1])


def test_encoder_refuses_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        Encoder(str(tmp_path / "missing-model"))
    with pytest.raises(ConfigError, match="not a sentence-transformers model folder"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(ConfigError, match="batch_size"):
        Encoder(batch_size=0)
    with pytest.raises(TypeError):
        Encoder(cache_dir=tmp_path).encode("one string")


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_search_save_load(tmp_path, kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.array([f"id{i}" for i in range(200)], dtype=object)
    idx = VectorIndex(kind).fit(ids, x)
    found, sims = idx.search(x[:5], 3)
    assert list(found[:, 0]) == ["id0", "id1", "id2", "id3", "id4"]
    assert np.allclose(sims[:, 0], 1, atol=1e-4)
    assert all(i != "id7" for i, _ in idx.similar("id7", 5))
    idx.save(tmp_path / "ix")
    again = VectorIndex.load(tmp_path / "ix")
    assert again.kind_ == kind and list(again.search(x[:5], 3)[0][:, 0]) == list(found[:, 0])


def test_index_auto_switches_and_rejects_nan():
    x = np.eye(4, dtype=np.float32)
    assert VectorIndex("auto", approximate_above=3).fit(np.array(list("abcd")), x).kind_ == "hnsw"
    assert VectorIndex("auto").fit(np.array(list("abcd")), x).kind_ == "flat"
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex().fit(np.array(list("abcd")), x)


def test_profile_names_an_unknown_item_by_its_id(planted):
    ds, _ = planted
    extra = pl.DataFrame({"user_id": ["u0"], "item_id": ["not-in-items"], "rating": [5.0], "timestamp": [9_999_999]},
                         schema=ds.interactions.schema)  # fmt: skip
    p = describe_users(pl.concat([ds.interactions, extra]), ds.items)
    assert "not-in-items" in p.filter(pl.col("user_id") == "u0")["profile"].item()
