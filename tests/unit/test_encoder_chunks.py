"""The encoder embeds many new texts in length-ordered chunks, caching each chunk as it finishes."""

import numpy as np
import pytest

import embeddings.encoder as encoder_module
from embeddings.encoder import Encoder
from segmentation._errors import ConfigError

TEXTS = [f"item {i}: " + "a long winding story about a lighthouse keeper " * (i % 5) + f"number {i}" for i in range(23)]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The texts embedded by one plain sentence-transformers call."""
    enc = Encoder(device="cpu")
    return enc._load_model().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


def test_chunks_give_the_same_vectors_in_input_order_and_cache_each_chunk(tmp_path, monkeypatch, reference):
    monkeypatch.setattr(encoder_module, "CHUNK_TEXTS", 5)
    calls = []
    enc = Encoder(device="cpu", cache_dir=tmp_path)
    st = enc._load_model()
    real = st.encode
    monkeypatch.setattr(st, "encode", lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw))
    v = enc.encode(TEXTS + TEXTS[:3])  # duplicates are embedded once
    assert np.allclose(v[:23], reference, atol=1e-5) and np.array_equal(v[23:], v[:3])
    assert [len(c) for c in calls] == [5, 5, 5, 5, 3]
    # each chunk holds texts of like length: chunks are cut from the longest-first order
    lengths = [[len(t) for t in c] for c in calls]
    assert all(min(a) >= max(b) for a, b in zip(lengths, lengths[1:]))
    assert len(list(enc.cache.folder.glob("*.npz"))) == 5
    assert enc.stats == {**enc.stats, "texts": 26, "embedded": 23, "cache_hits": 0}


def test_a_run_stopped_part_way_keeps_the_chunks_done(tmp_path, monkeypatch, reference):
    monkeypatch.setattr(encoder_module, "CHUNK_TEXTS", 10)
    enc = Encoder(device="cpu", cache_dir=tmp_path)
    st = enc._load_model()
    real, calls = st.encode, []

    def dies_on_the_second_chunk(texts, **kw):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(texts, **kw)

    monkeypatch.setattr(st, "encode", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        enc.encode(TEXTS)
    again = Encoder(device="cpu", cache_dir=tmp_path)
    v = again.encode(TEXTS)
    assert again.stats["cache_hits"] == 10 and again.stats["embedded"] == 13
    assert np.allclose(v, reference, atol=1e-5)


def test_threads_hold_while_embedding_and_are_put_back(monkeypatch):
    import torch

    before = torch.get_num_threads()
    enc = Encoder(device="cpu", threads=1)
    st = enc._load_model()
    real, seen = st.encode, []
    monkeypatch.setattr(st, "encode", lambda texts, **kw: seen.append(torch.get_num_threads()) or real(texts, **kw))
    enc.encode(TEXTS[:3])
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(ConfigError, match=r"threads must be 0 \(torch's default\) or positive \(given: -1\)"):
        Encoder(threads=-1)


def test_the_run_encoder_takes_encoder_threads_from_the_configuration(tmp_path):
    from embeddings.encoder import EncoderChoice
    from segmentation.config import EncoderConfig

    choice = EncoderChoice("m", "m", "m", None)
    assert choice.encoder(EncoderConfig(threads=1)).threads == 1
    assert choice.encoder(EncoderConfig()).threads == 0  # torch's default: one per core


def test_dim_is_measured_when_the_model_does_not_state_it(monkeypatch, reference):
    """sentence-transformers gives None for a model whose modules do not state their dimension (int(None) failed)."""
    enc = Encoder(device="cpu")
    st = enc._load_model()
    assert enc.dim == reference.shape[1]
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):  # the new name, and the old one
        if hasattr(st, name):
            monkeypatch.setattr(st, name, lambda: None)
    assert enc.dim == reference.shape[1]
