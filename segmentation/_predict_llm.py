"""The language model as the rating predictor: a sentence encoder fine-tuned end to end with a regression head.

>>> model = fit_encoder_predictor(split, dataset.items, EncoderRegressorConfig(), seed=42)  # doctest: +SKIP
>>> model.predict(split.test)                                                               # doctest: +SKIP

A bi-encoder: one shared encoder (``EncoderRegressorConfig.model``, MiniLM by default) embeds the user's
behaviour profile (:func:`embeddings.text.describe_users` of the TRAIN rows only) and the item's
description (:func:`embeddings.text.describe_items`); a small MLP on ``[u, v, u*v, |u-v|]`` predicts the
residual of a damped baseline-bias model ``mu + b_u + b_i`` (fitted on the same train rows, then frozen;
with ``EncoderRegressorConfig.refit`` the biases alone are fitted again on train + valid at the end, as the blend
refits its components).
The head's last layer starts at zero, so training starts from the biases. The encoder, the head and the
batch order are trained with AdamW (seeded), evaluated on ``split.valid`` twice per epoch and early-stopped
there; ``split.test`` is never read.

Why a bi-encoder rather than a cross-encoder: every profile and description is embedded once per step
(and once per prediction, at the end of fitting), so a step costs about ``2 x batch`` short sequences and
prediction is a small MLP over stored embeddings; a cross-encoder would run the encoder over every
(user, item) pair, at training and at prediction time.

Predictions for users or items unseen in training fall back to the biases (unknown user: ``mu + b_i``,
unknown item: ``mu + b_u``, both: ``mu``). Saved as ``weights.safetensors`` (the fine-tuned encoder, the
head, the biases and the final user and item embeddings) plus ``manifest.json``; no pickle. Predicting
from a loaded model uses the stored embeddings and does not rebuild the encoder.
"""

import copy
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import polars as pl
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from embeddings.encoder import resolve_device, resolve_model_path, stated_dimension
from embeddings.text import describe_items, describe_users
from segmentation._errors import ConfigError, DataError, check_is_fitted
from segmentation._metrics import rmse
from segmentation._predict_common import (
    _FORMAT,
    _FORMAT_VERSION,
    PAIRS,
    _child_seed,
    _read_manifest,
    _versions,
    cpu_threads,
)
from segmentation._predict_components import baseline_biases
from segmentation._predict_mf import Ratings
from segmentation.config import EncoderRegressorConfig
from segmentation.data import Split, Vocab, check_schema

__all__ = ["EncoderRegressor", "fit_encoder_predictor"]

logger = logging.getLogger(__name__)

_KIND = "encoder-regressor"
_HIDDEN = 128  # units of the head's hidden layer
_EVALS_PER_EPOCH = 2
_PATIENCE = 3  # evaluations without a better validation RMSE before stopping
_WARMUP = 0.1  # share of the planned steps with a linear learning-rate warm-up
_EVAL_BATCH = 128


def _dim(encoder: Any) -> int:
    """The encoder's output size, as the model states it (:func:`embeddings.encoder.stated_dimension`)."""
    dim = stated_dimension(encoder)
    if dim is None:
        raise ValueError("the encoder does not state its output size")
    return dim


class _Head(nn.Module):
    """MLP on ``[u, v, u*v, |u-v|]`` -> one residual rating; the last layer starts at zero."""

    def __init__(self, dim: int, hidden: int = _HIDDEN) -> None:
        super().__init__()
        first, last = nn.Linear(4 * dim, hidden), nn.Linear(hidden, 1)  # created in this order, as before
        self.net = nn.Sequential(first, nn.GELU(), last)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([u, v, u * v, (u - v).abs()], dim=1)).squeeze(1)


class EncoderRegressor:
    """A sentence encoder fine-tuned, with a regression head, to predict ratings from texts.

    Args:
        config: its settings (segflow 0.1 took a ``PredictorConfig`` with ``encoder_*`` fields).
        seed: seed of the head's initialisation, dropout, the row sample and the batch order.

    Attributes:
        user_vocab_: users seen in training (they have a profile text).
        item_vocab_: items seen in training.
        mu_, user_bias_, item_bias_: the frozen baseline biases.
        user_emb_, item_emb_: (n, d) float32 final embeddings of the known users' profiles and items' descriptions.
        rating_range_: (min, max) of the training ratings; predictions are clipped to it.
        history_: ``{"step", "epoch", "train_rmse", "valid_rmse"}`` at each evaluation (step 0: the biases).
        best_step_: the step whose weights were kept (0: the head learnt nothing useful; the biases alone).
        valid_rmse_: ``{"biases", "model"}`` validation RMSE of the biases alone and of the kept model.
        valid_pred_: (n_valid,) predictions of the kept model for ``split.valid``, before the biases' refit
            (for stacking: :meth:`predict` on the validation rows after a refit has seen their ratings).
        n_train_rows_: training rows used (after ``max_train_rows``).
        seconds_: training wall time; ``fit_seconds_`` splits it into ``{"texts", "train", "embed"}``.
    """

    def __init__(self, config: EncoderRegressorConfig | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else EncoderRegressorConfig()
        self.seed = seed
        self.user_vocab_: Vocab | None = None
        self.item_vocab_: Vocab | None = None
        self.mu_: float = 0.0
        self.user_bias_: np.ndarray | None = None
        self.item_bias_: np.ndarray | None = None
        self.user_emb_: np.ndarray | None = None
        self.item_emb_: np.ndarray | None = None
        self.rating_range_: tuple[float, float] = (1.0, 5.0)
        self.history_: list[dict] = []
        self.best_step_: int = 0
        self.valid_rmse_: dict[str, float] = {}
        self.valid_pred_: np.ndarray | None = None
        self.n_train_rows_: int = 0
        self.seconds_: float = 0.0
        self.fit_seconds_: dict[str, float] = {}
        self.device_: str = "cpu"
        self._head: _Head | None = None
        self._encoder: Any = None  # the fine-tuned SentenceTransformer (None after load)

    def __repr__(self) -> str:
        fitted = "fitted" if self.user_emb_ is not None else "not fitted"
        return f"EncoderRegressor(model={self.config.model!r}, seed={self.seed}, {fitted})"

    # ------------------------------------------------------------------ fitting

    def fit(self, split: Split, items: pl.DataFrame, *, max_train_rows: int | None = None) -> Self:
        """Fine-tune on ``split.train``, early-stopped on ``split.valid``; ``split.test`` is never read.

        Args:
            split: the data split; user profiles are written from ``split.train`` only.
            items: the ``ITEMS`` frame (``item_id``, ``title``, ``year``, ``categories``, ``text``).
            max_train_rows: train on a seeded sample of this many rows (default: ``config.max_train_rows``,
                else all).

        Returns:
            self.

        Raises:
            DataError: no training ratings, non-finite ratings, or no validation rows.
            SchemaError: the rating or item frames lack columns.
            ConfigError: ``max_train_rows`` is not positive, or the encoder cannot be loaded.
        """
        check_schema(split.train, PAIRS, what="train ratings")
        check_schema(split.valid, PAIRS, what="validation ratings")
        check_schema(items, pl.Schema({"item_id": pl.String}), what="items")
        for name, frame in (("train", split.train), ("valid", split.valid)):
            if "rating" not in frame.columns:
                raise DataError(f"cannot fit a rating model: split.{name} has no rating column")
        if split.train.height == 0:
            raise DataError("cannot fit a rating model: split.train has no rows")
        if split.valid.height == 0:
            raise DataError("EncoderRegressor needs validation rows (split.valid) for early stopping; it has none")
        if not np.isfinite(split.train["rating"].cast(pl.Float64).to_numpy()).all():
            raise DataError("split.train has missing or non-finite ratings")
        limit = max_train_rows if max_train_rows is not None else self.config.max_train_rows
        if limit is not None and limit <= 0:
            raise ConfigError(f"max_train_rows must be positive (given: {limit})")
        with cpu_threads(self.config.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(_child_seed(self.seed, "encoder-torch"))
            self._fit(split, items, limit)
        return self

    def _fit(self, split: Split, items: pl.DataFrame, limit: int | None) -> None:
        t0 = time.perf_counter()
        cfg = self.config
        self.device_ = resolve_device(cfg.device)
        ratings = split.train["rating"].cast(pl.Float64).to_numpy()
        self.rating_range_ = (float(ratings.min()), float(ratings.max()))
        self.user_vocab_ = Vocab.from_ids(split.train["user_id"].unique().sort())
        self.item_vocab_ = Vocab.from_ids(split.train["item_id"].unique().sort())
        train, valid = self._encode(split.train), self._encode(split.valid)
        self.mu_, self.user_bias_, self.item_bias_ = baseline_biases(
            train, len(self.user_vocab_), len(self.item_vocab_)
        )
        user_texts, item_texts = self._texts(split.train, items)
        t_texts = time.perf_counter()

        rng = np.random.default_rng(_child_seed(self.seed, "encoder-rows"))
        rows = np.arange(len(train))
        if limit is not None and limit < len(rows):
            rows = np.sort(rng.choice(len(rows), size=limit, replace=False))
        self.n_train_rows_ = len(rows)
        target = train.ratings - self._bias(train.users, train.items)

        encoder = self._load_encoder()
        head = _Head(_dim(encoder)).to(self.device_)
        self._encoder, self._head = encoder, head
        opt = torch.optim.AdamW([{"params": encoder.parameters(), "lr": cfg.learning_rate},
                                 {"params": head.parameters(), "lr": cfg.head_learning_rate}],
                                weight_decay=0.01)  # fmt: skip
        batch = cfg.batch_size
        steps_per_epoch = max(1, math.ceil(len(rows) / batch))
        total = steps_per_epoch * cfg.epochs
        warmup = max(1, int(_WARMUP * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
        )
        every = max(1, math.ceil(steps_per_epoch / _EVALS_PER_EPOCH))
        logger.info("encoder regressor: %d of %d train rows, %d valid rows, %d users, %d items, %d steps of %d on %s",
                    len(rows), len(train), len(valid), len(self.user_vocab_), len(self.item_vocab_), total, batch,
                    self.device_)  # fmt: skip

        self.valid_pred_ = np.clip(self._bias(valid.users, valid.items), *self.rating_range_)  # kept until refit
        base_valid = rmse(valid.ratings, self.valid_pred_)
        self.valid_rmse_ = {"biases": base_valid}
        self.history_ = [{"step": 0, "epoch": 0.0, "train_rmse": None, "valid_rmse": base_valid}]
        best, best_state, bad, step, sq, seen = base_valid, None, 0, 0, 0.0, 0
        stop = False
        for _epoch in range(cfg.epochs):
            order = rows[rng.permutation(len(rows))]
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                encoder.train()
                head.train()
                u_ids, u_inv = np.unique(train.users[idx], return_inverse=True)
                i_ids, i_inv = np.unique(train.items[idx], return_inverse=True)
                u = self._embed(encoder, [user_texts[k] for k in u_ids])[torch.as_tensor(u_inv, device=self.device_)]
                v = self._embed(encoder, [item_texts[k] for k in i_ids])[torch.as_tensor(i_inv, device=self.device_)]
                y = torch.as_tensor(target[idx], dtype=torch.float32, device=self.device_)
                loss = torch.mean((head(u, v) - y) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                sq += float(loss.detach()) * len(idx)
                seen += len(idx)
                if step % 20 == 0:
                    logger.info("  step %d of %d, %.1f s per step", step, total, (time.perf_counter() - t_texts) / step)
                if step % every == 0 or step == total:
                    pred = self._predict_with(encoder, head, valid, user_texts, item_texts)
                    score = rmse(valid.ratings, pred)
                    self.history_.append({"step": step, "epoch": round(step / steps_per_epoch, 3),
                                          "train_rmse": math.sqrt(sq / max(1, seen)), "valid_rmse": score})  # fmt: skip
                    logger.info("  step %d (epoch %.2f): train residual RMSE %.4f, valid RMSE %.4f, %.0f s", step,
                                step / steps_per_epoch, math.sqrt(sq / max(1, seen)), score,
                                time.perf_counter() - t_texts)  # fmt: skip
                    sq, seen = 0.0, 0
                    if score < best - 1e-5:
                        best, bad, self.best_step_, self.valid_pred_ = score, 0, step, pred
                        best_state = (copy.deepcopy(encoder.state_dict()), copy.deepcopy(head.state_dict()))
                    else:
                        bad += 1
                        stop = bad >= _PATIENCE
                if stop:
                    break
            if stop:
                break
        if best_state is None:
            self.best_step_ = 0
            head = _Head(_dim(encoder)).to(self.device_)  # zero: the biases alone
            self._head = head
        else:
            encoder.load_state_dict(best_state[0])
            head.load_state_dict(best_state[1])
        self.valid_rmse_["model"] = best
        if cfg.refit:  # as the blend does: the biases again on train + valid (the head and texts stay as trained)
            both = self._encode(split.train_full)
            both = both.subset((both.users >= 0) & (both.items >= 0))
            self.mu_, self.user_bias_, self.item_bias_ = baseline_biases(both, len(self.user_vocab_),
                                                                         len(self.item_vocab_))  # fmt: skip
        t_train = time.perf_counter()
        encoder.eval()
        head.eval()
        self.user_emb_ = self._embed_all(encoder, [user_texts[k] for k in range(len(self.user_vocab_))])
        self.item_emb_ = self._embed_all(encoder, [item_texts[k] for k in range(len(self.item_vocab_))])
        t_end = time.perf_counter()
        self.fit_seconds_ = {"texts": round(t_texts - t0, 3), "train": round(t_train - t_texts, 3),
                             "embed": round(t_end - t_train, 3)}  # fmt: skip
        self.seconds_ = t_end - t0
        logger.info("encoder regressor: best step %d, valid RMSE %.4f (biases %.4f), %.1f s", self.best_step_, best,
                    base_valid, self.seconds_)  # fmt: skip

    def _texts(self, train: pl.DataFrame, items: pl.DataFrame) -> tuple[list[str], list[str]]:
        """Profile text of each known user and description of each known item, in vocabulary order."""
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        needed = {"title", "year", "categories", "text"}
        if "description" in items.columns:
            described = items.select("item_id", "description")
        elif needed <= set(items.columns):
            described = describe_items(items)
        else:
            raise DataError(f"items needs a 'description' column or {sorted(needed)} (found {items.columns})")
        by_item = dict(described.iter_rows())
        missing = [i for i in self.item_vocab_.ids if not by_item.get(i)]
        if missing:
            logger.warning("%d rated items have no description; they are described by their id", len(missing))
        item_texts = [by_item.get(i) or f"Item {i}" for i in self.item_vocab_.ids]
        frame = train if "timestamp" in train.columns else train.with_columns(pl.lit(0, pl.Int64).alias("timestamp"))
        if not {"title", "categories"} <= set(items.columns):
            raise DataError("items needs 'title' and 'categories' columns to write the user profiles")
        profiles = dict(describe_users(frame, items).iter_rows())
        user_texts = [profiles[u] for u in self.user_vocab_.ids]
        return user_texts, item_texts

    def _load_encoder(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(self.config.model)
        try:
            encoder = SentenceTransformer(path, device=self.device_)
        except OSError as err:
            raise ConfigError(f"EncoderRegressorConfig.model {self.config.model!r} could not be loaded offline: "
                              f"{err}") from None  # fmt: skip
        encoder.max_seq_length = self.config.max_seq_length
        return encoder

    def _embed(self, encoder: Any, texts: list[str]) -> torch.Tensor:
        features = encoder.preprocess(texts)
        features = {k: v.to(self.device_) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return encoder(features)["sentence_embedding"]

    def _embed_all(self, encoder: Any, texts: list[str]) -> np.ndarray:
        """(n, d) float32 embeddings in inference mode (texts sorted by length to pad less)."""
        out = np.zeros((len(texts), _dim(encoder)), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), _EVAL_BATCH):
                idx = order[start : start + _EVAL_BATCH]
                out[idx] = self._embed(encoder, [texts[k] for k in idx]).float().cpu().numpy()
        return out

    def _predict_with(self, encoder: Any, head: _Head, data: Ratings, user_texts: list[str],
                      item_texts: list[str]) -> np.ndarray:  # fmt: skip
        """Clipped predictions during training: embeds only the users and items ``data`` needs."""
        encoder.eval()
        head.eval()
        known = (data.users >= 0) & (data.items >= 0)
        u_ids, u_inv = np.unique(data.users[known], return_inverse=True)
        i_ids, i_inv = np.unique(data.items[known], return_inverse=True)
        u = self._embed_all(encoder, [user_texts[k] for k in u_ids])[u_inv]
        v = self._embed_all(encoder, [item_texts[k] for k in i_ids])[i_inv]
        return self._combine(data, known, self._head_out(head, u, v))

    def _head_out(self, head: _Head, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.zeros(len(u))
        head.eval()
        with torch.inference_mode():
            for start in range(0, len(u), 8192):
                uu = torch.as_tensor(u[start : start + 8192], device=self.device_)
                vv = torch.as_tensor(v[start : start + 8192], device=self.device_)
                out[start : start + 8192] = head(uu, vv).float().cpu().numpy()
        return out

    def _combine(self, data: Ratings, known: np.ndarray, residual: np.ndarray) -> np.ndarray:
        pred = self._bias(data.users, data.items)
        pred[known] += residual
        return np.clip(pred, *self.rating_range_)

    def _bias(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``mu + b_u + b_i`` with zero biases for unknown (-1) users or items."""
        assert self.user_bias_ is not None and self.item_bias_ is not None
        bu = np.where(users >= 0, self.user_bias_[np.maximum(users, 0)], 0.0) if len(self.user_bias_) else 0.0
        bi = np.where(items >= 0, self.item_bias_[np.maximum(items, 0)], 0.0) if len(self.item_bias_) else 0.0
        return self.mu_ + bu + bi + np.zeros(len(users))

    # ------------------------------------------------------------------ inference

    def _encode(self, frame: pl.DataFrame) -> Ratings:
        """User and item numbers (-1 = unknown) and ratings (NaN if the frame has none)."""
        check_is_fitted(self, "user_vocab_")
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        check_schema(frame, PAIRS, what="rating frame")
        users = self.user_vocab_.lookup(frame["user_id"], missing=-1)
        items = self.item_vocab_.lookup(frame["item_id"], missing=-1)
        y = frame["rating"].cast(pl.Float64).to_numpy() if "rating" in frame.columns else np.full(frame.height, np.nan)
        return Ratings(users, items, y)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Predict ratings.

        Args:
            frame: has ``user_id`` and ``item_id`` (String); other columns are ignored.

        Returns:
            (n,) float64, clipped to the training rating range. Users or items unseen in training get the
            biases alone (``mu + b_i``, ``mu + b_u`` or ``mu``).

        Raises:
            NotFittedError: before :meth:`fit`.
            SchemaError: the id columns are missing or not strings.
        """
        check_is_fitted(self, "user_emb_")
        assert self.user_emb_ is not None and self.item_emb_ is not None and self._head is not None
        data = self._encode(frame)
        known = (data.users >= 0) & (data.items >= 0)
        with cpu_threads(self.config.threads):
            residual = self._head_out(self._head, self.user_emb_[data.users[known]], self.item_emb_[data.items[known]])
        return self._combine(data, known, residual)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for run metrics."""
        return {
            "model": _KIND,
            "encoder_model": self.config.model,
            "n_users": len(self.user_vocab_) if self.user_vocab_ is not None else 0,
            "n_items": len(self.item_vocab_) if self.item_vocab_ is not None else 0,
            "n_train_rows": self.n_train_rows_,
            "best_step": self.best_step_,
            "valid_rmse": self.valid_rmse_,
            "seconds": round(self.seconds_, 3),
            "fit_seconds": self.fit_seconds_,
            "device": self.device_,
            "history": self.history_,
        }

    # ------------------------------------------------------------------ persistence

    def save(self, folder: Path, *, include_encoder: bool = True) -> None:
        """Write ``weights.safetensors`` and ``manifest.json`` into ``folder`` (created if needed).

        Args:
            folder: where to write.
            include_encoder: also store the fine-tuned encoder's weights (``encoder.*``, about 90 MB for
                MiniLM); predictions do not need them (they use the stored embeddings).
        """
        check_is_fitted(self, "user_emb_")
        assert self.user_vocab_ is not None and self.item_vocab_ is not None and self._head is not None
        assert self.user_bias_ is not None and self.item_bias_ is not None and self.item_emb_ is not None
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"head.{k}": v.detach().float().cpu().numpy() for k, v in self._head.state_dict().items()}
        tensors.update(user_bias=self.user_bias_, item_bias=self.item_bias_, user_emb=self.user_emb_,
                       item_emb=self.item_emb_)  # fmt: skip
        if include_encoder and self._encoder is not None:
            tensors.update({f"encoder.{k}": v.detach().cpu().numpy() for k, v in self._encoder.state_dict().items()})
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "weights.safetensors"))
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "kind": _KIND,
            "config": self.config.model_dump(mode="json"),
            "seed": self.seed,
            "mu": self.mu_,
            "rating_range": list(self.rating_range_),
            "user_ids": [str(u) for u in self.user_vocab_.ids],
            "item_ids": [str(i) for i in self.item_vocab_.ids],
            "embedding_dim": int(self.item_emb_.shape[1]),
            "head_hidden": _HIDDEN,
            "has_encoder_weights": bool(include_encoder and self._encoder is not None),
            "best_step": self.best_step_,
            "valid_rmse": self.valid_rmse_,
            "n_train_rows": self.n_train_rows_,
            "seconds": self.seconds_,
            "fit_seconds": self.fit_seconds_,
            "history": self.history_,
            "versions": _versions(),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "EncoderRegressor":
        """Read a model written by :meth:`save` (on the CPU; the encoder itself is not rebuilt).

        Raises:
            DataError: the folder holds no saved encoder regressor, or one of another format version.
        """
        folder = Path(folder)
        manifest = _read_manifest(folder, _KIND)
        model = cls(EncoderRegressorConfig.model_validate(manifest["config"]), seed=int(manifest["seed"]))
        tensors = load_file(str(folder / "weights.safetensors"))
        model.user_vocab_ = Vocab.from_ids(manifest["user_ids"])
        model.item_vocab_ = Vocab.from_ids(manifest["item_ids"])
        model.mu_ = float(manifest["mu"])
        model.user_bias_ = tensors["user_bias"].astype(np.float64)
        model.item_bias_ = tensors["item_bias"].astype(np.float64)
        model.user_emb_ = tensors["user_emb"].astype(np.float32)
        model.item_emb_ = tensors["item_emb"].astype(np.float32)
        head = _Head(int(manifest["embedding_dim"]), int(manifest["head_hidden"]))
        head.load_state_dict({k[5:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith("head.")})
        model._head = head.eval()
        model.device_ = "cpu"
        model.rating_range_ = (float(manifest["rating_range"][0]), float(manifest["rating_range"][1]))
        model.best_step_ = int(manifest["best_step"])
        model.valid_rmse_ = dict(manifest["valid_rmse"])
        model.n_train_rows_ = int(manifest["n_train_rows"])
        model.seconds_ = float(manifest["seconds"])
        model.fit_seconds_ = dict(manifest["fit_seconds"])
        model.history_ = list(manifest["history"])
        return model


def fit_encoder_predictor(split: Split, items_frame: pl.DataFrame, config: EncoderRegressorConfig, *, seed: int = 0,
                          max_train_rows: int | None = None) -> EncoderRegressor:  # fmt: skip
    """Fine-tune the text encoder as a rating predictor on ``split.train``, early-stopped on ``split.valid``.

    Args:
        split: train/valid/test; test is never read.
        items_frame: the ``ITEMS`` frame (titles, years, categories, texts) the descriptions come from.
        config: the regressor's settings.
        seed: the run's seed.
        max_train_rows: train on a seeded sample of this many rows (default ``config.max_train_rows``).

    Returns:
        A fitted :class:`EncoderRegressor`.
    """
    return EncoderRegressor(config, seed=seed).fit(split, items_frame, max_train_rows=max_train_rows)
