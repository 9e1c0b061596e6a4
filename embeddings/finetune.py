"""Optional domain adaptation of the sentence encoder: contrastive fine-tuning on (user profile, liked item) pairs.

The method segflow follows trains the language model so that users and the items they like come
close. :func:`liked_pairs` builds the pairs from TRAIN interactions only (a user's behaviour profile
text, the description of an item the user rated at or above ``min_rating``), and
:func:`finetune_encoder` fine-tunes the encoder on them with sentence-transformers'
``MultipleNegativesRankingLoss`` (in-batch negatives: every other pair's item in the batch is a
negative), in a plain seeded PyTorch loop (no ``datasets``/``accelerate`` needed), and saves a
sentence-transformers model folder that :class:`embeddings.encoder.Encoder` takes as its ``model``.

Batches never hold the same profile or the same item twice, so no in-batch "negative" is in fact a
positive. The embedding cache is keyed by the model string, so the folder's path keeps the fine-tuned
model's vectors apart from the base model's; a folder is written once (atomically) and never
overwritten, so one path always names one model.

>>> pairs = liked_pairs(split.train_full, items, describe_users(split.train_full, items))  # doctest: +SKIP
>>> path = finetune_encoder(pairs, output_dir=Path("models/minilm-ft"))                  # doctest: +SKIP
>>> Encoder(str(path)).encode(["Toy Story (1995). Genres: Animation"]).shape             # doctest: +SKIP
(1, 384)
"""

import hashlib
import importlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from embeddings.encoder import (
    DEFAULT_MODEL,
    EncoderChoice,
    EncoderSettings,
    effective_quantize,
    quantized_model_id,
    resolve_device,
    resolve_model_path,
)
from embeddings.errors import ConfigError, DataError
from embeddings.text import describe_users

__all__ = ["FINETUNE_INFO", "PAIRS", "choose_encoder", "finetune_encoder", "liked_pairs", "read_finetune_info"]

logger = logging.getLogger(__name__)

PAIRS = pl.Schema({"user_id": pl.String, "item_id": pl.String, "anchor": pl.String, "positive": pl.String})
"""Schema of :func:`liked_pairs`' frame: ``anchor`` is the user's profile, ``positive`` the liked item's text."""
FINETUNE_INFO = "segflow-finetune.json"
"""File written into a fine-tuned model folder: settings, pair count, losses, timing and a hash of the weights."""


def liked_pairs(train_interactions: pl.DataFrame, items: pl.DataFrame, profiles: pl.DataFrame, *,
                min_rating: float | None = 4.0, max_per_user: int | None = 5, seed: int = 0) -> pl.DataFrame:  # fmt: skip
    """(user profile, liked item description) pairs from TRAIN interactions only.

    Pass the split's train rows (``split.train_full``), never test rows: every pair this returns
    comes from ``train_interactions``, and the profiles should be built from the same rows.

    Args:
        train_interactions: ``INTERACTIONS`` frame of train rows.
        items: ``ITEMS`` frame (described with :func:`embeddings.text.describe_items`) or an
            ``ITEM_TEXTS`` frame (``item_id``, ``description``).
        profiles: ``USER_PROFILES`` frame (``user_id``, ``profile``); users without one get no pairs.
        min_rating: a rating at or above this counts as liked; None: every interaction counts
            (implicit feedback).
        max_per_user: at most this many liked items per user, drawn at random with ``seed``
            (None: all), so heavy users do not dominate the pairs.
        seed: the draw's seed (the result does not depend on the row order of the inputs).

    Returns:
        Frame with schema :data:`PAIRS`, sorted by user id then item id.

    Raises:
        ConfigError: ``max_per_user`` below 1.
        DataError: a frame lacks its columns, or no train interaction is liked by a user with a profile.
    """
    if max_per_user is not None and max_per_user < 1:
        raise ConfigError(f"liked_pairs: max_per_user must be at least 1 or None (given {max_per_user})")
    _need(train_interactions, ("user_id", "item_id", "rating"), "train interactions")
    _need(profiles, ("user_id", "profile"), "profiles")
    if "description" in items.columns:
        texts = items.select("item_id", "description")
    else:
        from embeddings.text import describe_items

        _need(items, ("item_id", "title", "categories", "year", "text"), "items")
        texts = describe_items(items)
    liked = train_interactions.select("user_id", "item_id", "rating")
    if min_rating is not None:
        liked = liked.filter(pl.col("rating") >= min_rating)
    liked = (
        liked.select("user_id", "item_id").unique()
        .join(profiles.select("user_id", pl.col("profile").alias("anchor")), on="user_id", how="inner")
        .join(texts.select("item_id", pl.col("description").alias("positive")), on="item_id", how="inner")
        .filter(pl.col("anchor").str.len_chars() > 0, pl.col("positive").str.len_chars() > 0)
        .sort("user_id", "item_id")
    )  # fmt: skip
    if liked.height == 0:
        rule = f"rated at or above {min_rating}" if min_rating is not None else "interacted with"
        raise DataError(
            f"liked_pairs: no (profile, liked item) pairs: no train interaction is {rule} by a user with a "
            f"profile and an item with a description ({train_interactions.height} train rows, "
            f"{profiles.height} profiles)"
        )
    if max_per_user is not None:
        key = np.random.default_rng(np.random.SeedSequence([seed, 0xF1E])).random(liked.height)
        liked = (
            liked.with_columns(pl.Series("_key", key))
            .sort("user_id", "_key")
            .group_by("user_id", maintain_order=True)
            .head(max_per_user)
            .drop("_key")
            .sort("user_id", "item_id")
        )  # fmt: skip
    out = liked.select(pl.col(c).cast(t) for c, t in PAIRS.items())
    logger.info("built %d (profile, liked item) pairs of %d users", out.height, out["user_id"].n_unique())
    return out


def _need(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"liked_pairs: {what} lack the column(s) {', '.join(missing)} (has {', '.join(frame.columns)})")


def _as_pairs(pairs: "pl.DataFrame | Sequence[tuple[str, str]]") -> tuple[list[str], list[str]]:
    if isinstance(pairs, pl.DataFrame):
        if "anchor" not in pairs.columns or "positive" not in pairs.columns:
            raise DataError(f"finetune_encoder: pairs need 'anchor' and 'positive' columns (has {pairs.columns})")
        anchors, positives = pairs["anchor"].to_list(), pairs["positive"].to_list()
    else:
        try:
            anchors, positives = [str(a) for a, _ in pairs], [str(p) for _, p in pairs]
        except (TypeError, ValueError):
            raise DataError("finetune_encoder: pairs must be a PAIRS frame or (anchor, positive) tuples") from None
    keep = [i for i, (a, p) in enumerate(zip(anchors, positives)) if a and p]
    return [anchors[i] for i in keep], [positives[i] for i in keep]


def _batches(anchors: list[str], positives: list[str], order: np.ndarray, batch_size: int) -> list[list[int]]:
    """Pair indices in ``order``, cut into batches with no repeated anchor and no repeated positive.

    A pair that would repeat one waits for a later batch; batches of one pair (no negative) are dropped.
    """
    out, remaining = [], [int(i) for i in order]
    while remaining:
        batch: list[int] = []
        seen_a: set[str] = set()
        seen_p: set[str] = set()
        rest: list[int] = []
        for i in remaining:
            if len(batch) < batch_size and anchors[i] not in seen_a and positives[i] not in seen_p:
                batch.append(i)
                seen_a.add(anchors[i])
                seen_p.add(positives[i])
            else:
                rest.append(i)
        if len(batch) >= 2:
            out.append(batch)
        remaining = rest if len(batch) >= 2 else []
    return out


def _mnrl(model):
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6: the module under its old path, imported by name (no redefinition)
        losses = importlib.import_module("sentence_transformers.losses")
    return losses.MultipleNegativesRankingLoss(model)


def finetune_encoder(pairs: "pl.DataFrame | Sequence[tuple[str, str]]", *, base_model: str = DEFAULT_MODEL,
                     output_dir: Path, epochs: int = 1, batch_size: int = 32, learning_rate: float = 5e-5,
                     max_pairs: int | None = 2000, seed: int = 0, device: str = "cpu") -> Path:  # fmt: skip
    """Fine-tune ``base_model`` contrastively on (anchor, positive) pairs; save and return the model folder.

    The loss is sentence-transformers' ``MultipleNegativesRankingLoss`` (in-batch negatives, scale 20,
    cosine similarity). AdamW (weight decay 0.01) with a linear warm-up over the first 10 % of steps
    and linear decay after, gradients clipped at norm 1. Seeded: the pair sample, the batch order and
    dropout come from ``seed`` (on one machine and thread count, a rerun gives the same weights).

    Args:
        pairs: a :data:`PAIRS` frame (``anchor``, ``positive``) or (anchor, positive) tuples.
        base_model: the model to start from (name or local folder, as ``EncoderConfig.model``).
        output_dir: the folder to write; it must not exist yet (or be empty): a path names one model,
            and the embedding cache, keyed by that path, must never mix two models' vectors.
        epochs: passes over the pairs.
        batch_size: pairs per step (each pair's item is a negative for the batch's other pairs).
        learning_rate: AdamW's peak learning rate.
        max_pairs: at most this many pairs, drawn at random with ``seed`` (None: all).
        seed: the random seed.
        device: ``cpu``, ``cuda`` or ``auto``.

    Returns:
        ``output_dir``, a sentence-transformers model folder holding also :data:`FINETUNE_INFO`.

    Raises:
        ConfigError: a bad argument, an ``output_dir`` that holds files, or a base model that cannot load.
        DataError: no usable pairs, or fewer than two distinct pairs for a batch.
    """
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"finetune_encoder: {name} must be an integer of at least {low} (given {value!r})")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and 0 < learning_rate < 1):
        raise ConfigError(f"finetune_encoder: learning_rate must be in (0, 1) (given {learning_rate!r})")
    if max_pairs is not None and (not isinstance(max_pairs, int) or max_pairs < 2):
        raise ConfigError(f"finetune_encoder: max_pairs must be at least 2 or None (given {max_pairs!r})")
    output_dir = Path(output_dir).expanduser()
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConfigError(
            f"finetune_encoder: output_dir {str(output_dir)!r} exists and is not an empty folder; give a new path "
            "(a path names one model: the embedding cache is keyed by it)"
        )
    anchors, positives = _as_pairs(pairs)
    if not anchors:
        raise DataError("finetune_encoder: no (anchor, positive) pairs to train on")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF17]))
    n_given = len(anchors)
    if max_pairs is not None and n_given > max_pairs:
        keep = np.sort(rng.choice(n_given, max_pairs, replace=False))
        anchors, positives = [anchors[i] for i in keep], [positives[i] for i in keep]
    plan = [_batches(anchors, positives, rng.permutation(len(anchors)), batch_size) for _ in range(epochs)]
    n_steps = sum(len(p) for p in plan)
    if n_steps == 0:
        raise DataError(
            f"finetune_encoder: the {len(anchors)} pairs give no batch of two distinct pairs "
            "(every pair repeats the same profile or item)"
        )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    dev = resolve_device(device)
    torch.manual_seed(seed)
    try:
        model = SentenceTransformer(resolve_model_path(base_model), device=dev)
    except OSError as err:
        raise ConfigError(f"finetune_encoder: base model {base_model!r} could not be loaded offline: {err}") from None
    loss_fn = _mnrl(model)
    encode_inputs = getattr(model, "preprocess", None) or model.tokenize  # tokenize: sentence-transformers < 6
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, int(0.1 * n_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (n_steps - s) / max(1, n_steps - warmup))
    )
    t0 = time.perf_counter()
    losses: list[float] = []
    model.train()
    for epoch, batches in enumerate(plan):
        for batch in batches:
            features = [encode_inputs([texts[i] for i in batch]) for texts in (anchors, positives)]
            features = [{k: v.to(dev) if hasattr(v, "to") else v for k, v in f.items()} for f in features]
            loss = loss_fn(features, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        logger.info("fine-tune epoch %d/%d: %d steps, mean loss %.4f", epoch + 1, epochs, len(batches),
                    float(np.mean(losses[-len(batches):])) if batches else float("nan"))  # fmt: skip
    model.eval()
    seconds = time.perf_counter() - t0

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save(str(tmp), create_model_card=False)
    except TypeError:  # older sentence-transformers without create_model_card
        model.save(str(tmp))
    info = {
        "base_model": base_model,
        "loss": "MultipleNegativesRankingLoss (in-batch negatives, no repeated profile or item in a batch)",
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "max_pairs": max_pairs,
        "seed": seed, "device": dev, "pairs_given": n_given, "pairs_used": len(anchors), "steps": n_steps,
        "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
        "loss_mean_last_epoch": round(float(np.mean(losses[-len(plan[-1]):])), 5) if plan[-1] else None,
        "seconds": round(seconds, 2), "weights_sha256": _weights_hash(tmp),
    }  # fmt: skip
    (tmp / FINETUNE_INFO).write_text(json.dumps(info, indent=1) + "\n")
    if output_dir.exists():
        output_dir.rmdir()  # empty (checked above)
    os.replace(tmp, output_dir)
    logger.info("fine-tuned %s on %d pairs (%d steps) in %.1fs, loss %.3f -> %.3f; saved to %s", base_model,
                len(anchors), n_steps, seconds, losses[0], losses[-1], output_dir)  # fmt: skip
    return output_dir


def _weights_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin"):
            h.update(f.relative_to(folder).as_posix().encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def read_finetune_info(folder: Path) -> dict | None:
    """The :data:`FINETUNE_INFO` of a fine-tuned model folder (None if it is not one, or is unreadable)."""
    try:
        return json.loads((Path(folder) / FINETUNE_INFO).read_text())
    except (OSError, ValueError):
        return None


def choose_encoder(settings: EncoderSettings, cache_dir: Path | None, train: pl.DataFrame | None = None,
                   items: pl.DataFrame | None = None, seed: int = 0, implicit: bool = False) -> EncoderChoice:  # fmt: skip
    """The run's encoder, chosen once: the configured model, or with ``settings.finetune`` that model fine-tuned
    on the train rows. The model's path is resolved here, once per run (:func:`resolve_model_path`).

    The fine-tuned model is trained once and kept under ``<cache_dir>/encoders/finetuned-<key>``, the
    key a hash of the (profile, liked item) pairs, the fine-tuning settings, the base model and ``seed``;
    a rerun on the same train rows and settings loads it instead of training again. Its embeddings are
    cached apart from the base model's (the cache is keyed by the model folder, under a folder named by
    the hash of its weights).

    Args:
        settings: the encoder's configuration (``EncoderConfig``).
        cache_dir: the run's cache folder (embeddings under ``embeddings/``, fine-tuned models under ``encoders/``).
        train, items: the split's train rows (``split.train_full``) and the items; needed with ``settings.finetune``.
        seed, implicit: the run's seed, and whether the data is implicit feedback (every row counts as liked).

    Raises:
        ConfigError: the model cannot be found; or ``settings.finetune`` without train rows, items or a cache folder.
    """
    emb_cache = (cache_dir / "embeddings") if (settings.cache and cache_dir) else None
    path = resolve_model_path(settings.model)
    quantized = effective_quantize(settings.quantize, settings.device)  # int8 vectors are labelled apart
    if not settings.finetune:
        return EncoderChoice(settings.model, path, quantized_model_id(settings.model, quantized), emb_cache)
    if train is None or items is None or cache_dir is None:
        raise ConfigError("encoder.finetune = true needs the split's train rows, the items and a cache folder: pass "
                          "train=, items= and cache_dir= (the flow does this; see flows/pipeline.py)")  # fmt: skip
    min_rating = None if implicit or train["rating"].n_unique() <= 1 else 4.0  # implicit: every row counts as liked
    pairs = liked_pairs(train, items, describe_users(train, items, implicit=implicit), min_rating=min_rating,
                        max_per_user=5, seed=seed)  # fmt: skip
    settings_key = (settings.model, settings.finetune_epochs, settings.finetune_batch_size,
                    settings.finetune_learning_rate, settings.finetune_max_pairs, seed, "mnrl/1")  # fmt: skip
    folder = Path(cache_dir) / "encoders" / f"finetuned-{_pairs_key(pairs, settings_key)}"
    info = read_finetune_info(folder)
    if info is None or not (folder / "modules.json").exists():
        if folder.exists():
            logger.warning("removing an incomplete fine-tuned encoder folder %s", folder)
            shutil.rmtree(folder)
        finetune_encoder(pairs, base_model=settings.model, output_dir=folder, epochs=settings.finetune_epochs,
                         batch_size=settings.finetune_batch_size, learning_rate=settings.finetune_learning_rate,
                         max_pairs=settings.finetune_max_pairs, seed=seed, device=settings.device)  # fmt: skip
        info = read_finetune_info(folder) or {}
    else:
        logger.info("reusing the fine-tuned encoder %s", folder)
    weights = str(info.get("weights_sha256", ""))[:12]
    label = quantized_model_id(f"{settings.model}+finetuned:{weights}", quantized)
    return EncoderChoice(str(folder), str(folder), label, (emb_cache / f"finetuned-{weights}") if emb_cache else None)


def _pairs_key(pairs: pl.DataFrame, settings: tuple) -> str:
    """Content hash of the pairs frame and the fine-tuning settings (the fine-tuned model's folder name)."""
    h = hashlib.sha256(str(pairs.schema).encode())
    h.update(pairs.hash_rows(seed=0).to_numpy().tobytes())
    h.update(repr(settings).encode())
    return h.hexdigest()[:24]
