"""Contrastive fine-tuning of the encoder: pairs from train only, a loadable seeded model that moves users
toward their liked items, a cache that keeps base and fine-tuned vectors apart, and the pipeline's wiring."""

import json

import numpy as np
import polars as pl
import pytest

from embeddings.encoder import DEFAULT_MODEL, Encoder
from embeddings.finetune import FINETUNE_INFO, PAIRS, finetune_encoder, liked_pairs
from embeddings.text import describe_items, describe_users
from segmentation._errors import ConfigError, DataError
from segmentation.config import EncoderConfig
from segmentation.data import split_ratings


@pytest.fixture(autouse=True)
def _two_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(planted):
    ds, _ = planted
    split = split_ratings(ds.interactions, "random90")
    profiles = describe_users(split.train_full, ds.items)
    return ds, split, profiles


def _keys(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"].to_list(), frame["item_id"].to_list()))


def test_pairs_come_from_liked_train_rows_only(data):
    ds, split, profiles = data
    pairs = liked_pairs(split.train_full, ds.items, profiles, min_rating=4, max_per_user=3, seed=0)
    assert pairs.schema == PAIRS and pairs.height > 0
    train, test = split.train_full, split.test
    liked_train = _keys(train.filter(pl.col("rating") >= 4))
    assert _keys(pairs) <= liked_train
    assert not _keys(pairs) & _keys(test)
    assert pairs.group_by("user_id").len()["len"].max() <= 3
    # anchor = the user's profile, positive = the item's description
    prof = dict(zip(profiles["user_id"], profiles["profile"]))
    desc = dict(zip(*describe_items(ds.items).get_columns()))
    assert all(prof[u] == a and desc[i] == p for u, i, a, p in pairs.iter_rows())
    # seeded, and independent of the input's row order
    shuffled = train.sample(fraction=1.0, shuffle=True, seed=1)
    assert liked_pairs(shuffled, ds.items, profiles, max_per_user=3, seed=0).equals(pairs)
    assert not liked_pairs(train, ds.items, profiles, max_per_user=3, seed=1).equals(pairs)
    # no cap: every liked train row of a user with a profile
    assert _keys(liked_pairs(train, ds.items, profiles, max_per_user=None)) == liked_train
    # implicit feedback: every train row counts
    assert liked_pairs(train, ds.items, profiles, min_rating=None, max_per_user=None).height == train.height


def test_pairs_refuse_bad_input(data):
    ds, split, profiles = data
    with pytest.raises(ConfigError, match="max_per_user"):
        liked_pairs(split.train_full, ds.items, profiles, max_per_user=0)
    with pytest.raises(DataError, match="no \\(profile, liked item\\) pairs"):
        liked_pairs(split.train_full, ds.items, profiles, min_rating=6)
    with pytest.raises(DataError, match="no \\(profile, liked item\\) pairs"):
        liked_pairs(split.train_full, ds.items, profiles.clear())
    with pytest.raises(DataError, match="rating"):
        liked_pairs(split.train_full.drop("rating"), ds.items, profiles)


def test_finetune_refuses_bad_arguments(tmp_path):
    pairs = [("a user who loves comedies", "Airplane! (1980). Genres: Comedy"), ("a horror fan", "Scream (1996)")]
    for kwargs, match in [({"epochs": 0}, "epochs"), ({"batch_size": 1}, "batch_size"),
                          ({"learning_rate": 0.0}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"),
                          ({"max_pairs": 1}, "max_pairs")]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            finetune_encoder(pairs, output_dir=tmp_path / "m", **kwargs)
    with pytest.raises(DataError, match="no \\(anchor, positive\\) pairs"):
        finetune_encoder([], output_dir=tmp_path / "m")
    with pytest.raises(DataError, match="anchor"):
        finetune_encoder(pl.DataFrame({"x": ["a"]}), output_dir=tmp_path / "m")
    with pytest.raises(DataError, match="no batch"):  # one profile only: no in-batch negative
        finetune_encoder([("same user", "item a"), ("same user", "item b")], output_dir=tmp_path / "m")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "modules.json").write_text("{}")
    with pytest.raises(ConfigError, match="exists"):
        finetune_encoder(pairs, output_dir=tmp_path / "taken")
    assert not (tmp_path / "m").exists()


TINY = {"epochs": 1, "batch_size": 8, "learning_rate": 2e-4, "max_pairs": 16, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def tuned(data, tmp_path_factory):
    ds, split, profiles = data
    pairs = liked_pairs(split.train_full, ds.items, profiles, max_per_user=1, seed=0).head(16)  # all trained on
    root = tmp_path_factory.mktemp("finetune")
    a = finetune_encoder(pairs, output_dir=root / "a", **TINY)
    b = finetune_encoder(pairs, output_dir=root / "b", **TINY)
    return pairs, a, b


def _margin(enc: Encoder, anchors: list[str], positives: list[str]) -> float:
    """Mean cosine of each anchor with its own positive minus its mean cosine with the other positives."""
    a, p = enc.encode(anchors), enc.encode(positives)
    sim = a @ p.T
    own = np.diag(sim)
    other = (sim.sum(axis=1) - own) / (len(p) - 1)
    return float((own - other).mean())


def test_tiny_finetune_is_loadable_seeded_and_moves_users_to_liked_items(tuned):
    pairs, a, b = tuned
    info = json.loads((a / FINETUNE_INFO).read_text())
    assert info["pairs_used"] == 16 and info["steps"] >= 2 and info["base_model"] == DEFAULT_MODEL
    assert (a / "modules.json").exists() and not list(a.parent.glob(".*tmp"))
    anchors, positives = pairs["anchor"].to_list(), pairs["positive"].to_list()  # one pair per user
    base, ft_a, ft_b = (
        Encoder(DEFAULT_MODEL, device="cpu"),
        Encoder(str(a), device="cpu"),
        Encoder(str(b), device="cpu"),
    )
    va, vb = ft_a.encode(positives), ft_b.encode(positives)
    assert va.shape == (len(positives), 384)
    np.testing.assert_allclose(va, vb, atol=1e-5)  # same seed, same model
    assert not np.allclose(va, base.encode(positives), atol=1e-3)  # it did train
    before, after = _margin(base, anchors, positives), _margin(ft_a, anchors, positives)
    assert after > before + 0.01, (before, after)


def test_cache_keeps_base_and_finetuned_vectors_apart(tuned, tmp_path):
    _, a, _ = tuned
    text = ["Toy Story (1995). Genres: Animation, Children's, Comedy"]
    base, ft = (
        Encoder(DEFAULT_MODEL, device="cpu", cache_dir=tmp_path),
        Encoder(str(a), device="cpu", cache_dir=tmp_path),
    )
    assert base.cache.folder != ft.cache.folder
    v_base, v_ft = base.encode(text), ft.encode(text)
    assert not np.allclose(v_base, v_ft, atol=1e-3)
    again = Encoder(str(a), device="cpu", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.encode(text), v_ft)
    assert again.stats["cache_hits"] == 1
    with pytest.raises(ConfigError, match="exists"):  # a path names one model: never overwritten
        finetune_encoder([("u1", "i1"), ("u2", "i2")], output_dir=a)


def test_pipeline_finetunes_once_and_reuses_the_model(data, tmp_path, monkeypatch):
    import embeddings.finetune as ft
    from embeddings.encoder import embed_items, resolve_model_path
    from embeddings.finetune import choose_encoder

    ds, split, _ = data
    off = EncoderConfig()
    assert off.finetune is False
    base = choose_encoder(off, tmp_path)
    assert (base.model, base.label, base.cache_dir) == (off.model, off.model, tmp_path / "embeddings")
    assert base.path == resolve_model_path(off.model)  # resolved once, here; the encoder takes it as it is
    cfg = EncoderConfig(finetune=True, finetune_max_pairs=8, finetune_batch_size=8, device="cpu")
    with pytest.raises(ConfigError, match="split"):
        choose_encoder(cfg, tmp_path)
    calls = []
    real = ft.finetune_encoder
    monkeypatch.setattr(ft, "finetune_encoder", lambda *a, **k: calls.append(k) or real(*a, **k))
    first = choose_encoder(cfg, tmp_path, split.train_full, ds.items, 0)
    again = choose_encoder(cfg, tmp_path, split.train_full, ds.items, 0)
    assert len(calls) == 1 and first == again
    assert first.model.startswith(str(tmp_path / "encoders" / "finetuned-")) and first.path == first.model
    assert "finetuned:" in first.label and first.cache_dir != base.cache_dir
    emb, _ = embed_items(ds.items, first, cfg)  # the chosen model: no second fine-tune
    assert len(calls) == 1 and emb.model == first.label and emb.vectors.shape == (ds.items.height, 384)

    class Trained(Exception):
        pass

    def refuse(*a, **k):
        raise Trained(str(k["output_dir"]))

    monkeypatch.setattr(ft, "finetune_encoder", refuse)  # other settings: another folder (stop before training)
    with pytest.raises(Trained) as other:
        choose_encoder(cfg.model_copy(update={"finetune_learning_rate": 1e-4}), tmp_path, split.train_full, ds.items)
    assert other.value.args[0] != first.model


def test_a_run_chooses_its_encoder_once_and_finds_the_model_once(data, tmp_path, monkeypatch):
    """The items and, with a profile representation, the users are embedded with the one encoder chosen for the run:
    the model's path is resolved once (it was resolved again by every Encoder, and the choice was made twice)."""
    import embeddings.encoder as enc
    import embeddings.finetune as ft
    from segmentation.config import PipelineConfig
    from segmentation.represent import represent_users

    resolved, chosen = [], []
    real_resolve, real_choose = enc.resolve_model_path, ft.choose_encoder
    monkeypatch.setattr(enc, "resolve_model_path", lambda m: resolved.append(m) or real_resolve(m))
    monkeypatch.setattr(ft, "resolve_model_path", enc.resolve_model_path)
    monkeypatch.setattr(ft, "choose_encoder", lambda *a, **k: chosen.append(a) or real_choose(*a, **k))
    ds, split, _ = data
    config = PipelineConfig(represent={"method": "item-mean+profile"})
    choice = ft.choose_encoder(config.encoder, tmp_path)
    items, _ = enc.embed_items(ds.items, choice, config.encoder)
    users, _, _ = represent_users(split, ds.items, items, config, choice)
    assert resolved == [config.encoder.model] and len(chosen) == 1
    assert items.model == choice.label and users.model == f"item-mean+profile:{choice.label}"
    assert users.vectors.shape == (split.train_full["user_id"].n_unique(), 2 * 384)
