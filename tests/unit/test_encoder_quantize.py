"""``encoder.quantize = "int8"``: torch's dynamic int8 quantisation of the encoder on the CPU, kept apart from fp32.

The model is the local all-MiniLM-L6-v2 (offline). int8 is faster but changes the vectors (docs/BENCHMARKS.md,
"Encoder throughput"), so its vectors must never be cached, labelled or reused as fp32 ones.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import embeddings.encoder as encoder_module
from embeddings.encoder import Encoder, effective_quantize, embed_items
from embeddings.finetune import choose_encoder
from embeddings.partitions import Partitions
from segmentation._errors import ConfigError
from segmentation.config import EncoderConfig, PipelineConfig, load_config

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "Sense and Sensibility (1995). Genres: Drama, Romance",
    "A quiet lighthouse keeper writes letters to the sea",
]


@pytest.fixture(scope="module")
def fp32() -> np.ndarray:
    return Encoder(device="cpu").encode(TEXTS)


@pytest.fixture(scope="module")
def int8_encoder() -> Encoder:
    return Encoder(device="cpu", quantize="int8")


def test_int8_quantises_the_linear_layers_and_changes_the_vectors_a_little(fp32, int8_encoder, caplog):
    with caplog.at_level(logging.INFO, logger="embeddings.encoder"):
        v = int8_encoder.encode(TEXTS)
    st = int8_encoder._load_model()
    kinds = {type(m) for m in st.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds and torch.nn.Linear not in kinds
    assert "quantised to int8" in caplog.text
    cos = np.sum(v * fp32, axis=1)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert (cos > 0.8).all(), cos  # close ...
    assert np.abs(v - fp32).max() > 1e-3  # ... but not the fp32 vectors
    assert Encoder(device="cpu").quantize == "none"  # the default stays fp32


def test_int8_vectors_are_cached_apart_and_never_read_as_fp32(tmp_path, fp32, int8_encoder):
    q = Encoder(device="cpu", quantize="int8", cache_dir=tmp_path)
    q._st = int8_encoder._load_model()  # the quantised model, loaded once for the module
    q.device_used = "cpu"
    v8 = q.encode(TEXTS)
    plain = Encoder(device="cpu", cache_dir=tmp_path)
    assert plain.cache.folder != q.cache.folder and list(q.cache.folder.glob("*.npz"))
    assert not plain.cache.folder.exists()
    v32 = plain.encode(TEXTS)
    assert plain.stats["cache_hits"] == 0 and plain.stats["embedded"] == len(TEXTS)  # int8 entries not read
    assert np.allclose(v32, fp32, atol=1e-5)
    again = Encoder(device="cpu", quantize="int8", cache_dir=tmp_path)  # a rerun with int8 reads its own
    assert np.array_equal(again.encode(TEXTS), v8) and again.stats["cache_hits"] == len(TEXTS)
    assert again._st is None  # all cached: the model never loaded


def test_unknown_quantisation_is_refused():
    with pytest.raises(ConfigError, match=r"encoder.quantize must be one of 'none', 'int8' \(given: 'int4'\)"):
        Encoder(quantize="int4")
    with pytest.raises(ConfigError, match=r"encoder.quantize: Input should be 'none' or 'int8' \(given: 'fp16'\)"):
        load_config(None, ["encoder.quantize='fp16'"])


def test_on_cuda_int8_does_not_apply_and_its_vectors_go_with_the_unquantised_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(encoder_module, "resolve_device", lambda device: "cuda")
    assert effective_quantize("int8", "auto") == "none" and effective_quantize("none", "cpu") == "none"
    on_gpu = Encoder(quantize="int8", cache_dir=tmp_path)
    assert on_gpu.quantized == "none"
    assert on_gpu.cache.folder == Encoder(cache_dir=tmp_path).cache.folder
    assert choose_encoder(EncoderConfig(quantize="int8"), tmp_path).label == "all-MiniLM-L6-v2"


def test_the_run_records_int8_in_its_labels_stats_and_stage_keys(tmp_path, int8_encoder):
    import polars as pl

    from flows.tasks import cache_key

    settings = EncoderConfig(device="cpu", quantize="int8")
    choice = choose_encoder(settings, tmp_path)
    assert choice.label == "all-MiniLM-L6-v2+int8" and choose_encoder(EncoderConfig(), tmp_path).label == (
        "all-MiniLM-L6-v2"
    )
    assert choice.encoder(settings).quantize == "int8"
    items = pl.DataFrame({"item_id": ["a", "b"], "title": ["Heat", "Toy Story"], "year": [1995, 1995],
                          "categories": [["Action"], ["Comedy"]], "text": [None, None]},
                         schema_overrides={"year": pl.Int32, "text": pl.String})  # fmt: skip
    emb, stats = embed_items(items, choice, settings)
    assert emb.model == "all-MiniLM-L6-v2+int8" and stats["quantize"] == "int8"
    # a stage keyed on the encoder section or the run's configuration never reuses an fp32 result
    key = cache_key("represent")
    fp32_config, int8_config = PipelineConfig(), PipelineConfig(encoder={"quantize": "int8"})
    assert key(None, {"config": fp32_config}) != key(None, {"config": int8_config})
    assert key(None, {"e": EncoderConfig()}) != key(None, {"e": settings})


def test_partitioned_chunks_are_quantised_where_they_run(int8_encoder, fp32):
    """The chunk's spec carries the quantisation, so a Dask worker's encoder quantises too.

    Dynamic quantisation scales each batch's activations together, so an int8 vector depends on the texts batched
    with it: the comparison is with the same chunks (the same batches) embedded here.
    """
    encoder_module._PROCESS_ENCODERS.clear()
    int8_encoder.chunk_texts = 2
    try:
        here = int8_encoder.encode(TEXTS)
    finally:
        int8_encoder.chunk_texts = None
    with ThreadPoolExecutor(2) as pool:
        enc = Encoder(device="cpu", quantize="int8", chunk_texts=2, partitions=Partitions(executor=pool))
        there = enc.encode(TEXTS)
    specs = list(encoder_module._PROCESS_ENCODERS)
    assert specs and all(spec[-1] == "int8" for spec in specs)
    assert np.allclose(there, here, atol=1e-6) and np.abs(there - fp32).max() > 1e-3


class _Workers:
    """An executor whose workers embed on ``device``: unit vectors, as ``encode_chunk`` returns them."""

    def __init__(self, device: str) -> None:
        self.device = device

    def map(self, fn, parts, *shared):
        assert fn is encoder_module.encode_chunk
        return ((np.eye(len(texts), 8, dtype=np.float32), self.device) for texts in parts)


@pytest.mark.parametrize(("device", "cached"), [("cpu", True), ("cuda", False)])
def test_chunks_a_worker_embedded_with_another_quantisation_are_not_cached(tmp_path, caplog, device, cached):
    enc = Encoder(device="cpu", quantize="int8", cache_dir=tmp_path, partitions=Partitions(executor=_Workers(device)))
    with caplog.at_level(logging.WARNING, logger="embeddings.encoder"):
        enc.encode(TEXTS)
    assert bool(list(enc.cache.folder.glob("*.npz"))) is cached
    assert ("its vectors are not cached" in caplog.text) is not cached
    assert enc.device_used == device
