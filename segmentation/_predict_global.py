"""The global rating model: one model or a ridge blend of several, with save/load."""

import json
import logging
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import polars as pl
import torch
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_predict

from embeddings.encoder import Embeddings, resolve_device
from segmentation._errors import ConfigError, DataError, check_is_fitted
from segmentation._metrics import rmse
from segmentation._predict_common import (
    _FORMAT,
    _FORMAT_VERSION,
    PAIRS,
    _child_seed,
    _read_manifest,
    _settings,
    _versions,
    cpu_threads,
)
from segmentation._predict_components import (
    COMPONENTS,
    MF,
    AutoRec,
    AutoRecSettings,
    Component,
    FitData,
    KNNBaseline,
    SVDpp,
    SVDppSettings,
    component_mib,
)
from segmentation._predict_mf import MFParams, Ratings
from segmentation.config import PredictorConfig
from segmentation.data import Split, Vocab, check_schema

logger = logging.getLogger(__name__)


def _make_component(name: str, config: PredictorConfig, device: str) -> Component:
    """A fresh, unfitted component for ``name`` (a value of ``PredictorConfig.model`` other than 'blend')."""
    if name == "mf":
        return MF(embedding_size=config.mf.embedding_size, settings=_settings(config), device=device)
    if name == "svdpp":
        s = config.svdpp
        return SVDpp(SVDppSettings(embedding_size=s.embedding_size, epochs=s.epochs, learning_rate=s.learning_rate,
                                   reg=s.reg, implicit_reg=s.reg, bias_reg=s.bias_reg, batch_size=s.batch_size,
                                   patience=s.patience, item_time_bins=s.time_bins, user_day_bias=s.user_day_bias,
                                   side_features=s.side_features, patience_ratings=s.patience_ratings))  # fmt: skip
    if name == "autorec":
        a = config.autorec
        return AutoRec(AutoRecSettings(hidden=a.hidden, epochs=a.epochs, learning_rate=a.learning_rate, reg=a.reg,
                                       batch_size=a.batch_size, patience=a.patience,
                                       patience_ratings=a.patience_ratings))  # fmt: skip
    if name in ("item-knn", "user-knn"):
        return KNNBaseline(user_based=name == "user-knn", k=config.knn.neighbors, shrinkage=config.knn.shrinkage)
    raise ValueError(f"unknown rating model {name!r}; expected one of mf, svdpp, autorec, item-knn, user-knn")


def _component_kind(component: Component) -> str:
    return "knn" if isinstance(component, KNNBaseline) else component.name


def _ridge_model(reg: float) -> Ridge:
    """The blend's ridge regression: an unpenalised intercept, exact (Cholesky) solve."""
    return Ridge(alpha=reg, fit_intercept=True, solver="cholesky")


def _ridge(x: np.ndarray, y: np.ndarray, reg: float, prior: np.ndarray | None = None) -> np.ndarray:
    """Weights ``[intercept, w...]`` minimising ``||y - b - x w||^2 + reg ||(b, w) - prior||^2`` (intercept free
    when ``prior`` is None), by scikit-learn's :class:`~sklearn.linear_model.Ridge`.

    With a prior the intercept is penalised too: the ridge is fitted to ``y - [1, x] @ prior`` on
    ``[1, x]`` without an intercept of its own, and the prior added back.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if prior is None:
        model = _ridge_model(reg).fit(x, y)
        return np.concatenate([[model.intercept_], model.coef_])
    xa = np.column_stack([np.ones(len(x)), x])
    prior = np.asarray(prior, np.float64)
    delta = Ridge(alpha=reg, fit_intercept=False, solver="cholesky").fit(xa, y - xa @ prior).coef_
    return prior + delta


def _item_features(vocab: Vocab, embeddings: Embeddings | None) -> np.ndarray | None:
    """(n_items, d) float32 rows of ``embeddings`` in vocabulary order; zero rows for items without one."""
    if embeddings is None:
        return None
    pos = embeddings.index_of()
    out = np.zeros((len(vocab), embeddings.dim), np.float32)
    rows = np.array([pos.get(str(i), -1) for i in vocab.ids])
    out[rows >= 0] = embeddings.vectors[rows[rows >= 0]]
    missing = int((rows < 0).sum())
    if missing:
        logger.warning("%d of %d rated items have no embedding; they get no side features", missing, len(vocab))
    return out


class GlobalPredictor:
    """One rating model for all users: a single model or a ridge blend of several.

    Args:
        config: predictor settings (``config.model`` picks the model).
        seed: seed of initialisation and shuffling.

    Attributes:
        user_vocab_: users seen in training.
        item_vocab_: items seen in training.
        components_: the fitted models (one unless ``config.model == "blend"``).
        weights_: blend weights ``[intercept, w_1, ...]`` fitted on the validation rows, or None for one model.
        rating_range_: (min, max) of the training ratings; predictions are clipped to it.
        history_: per-epoch ``{"component", "epoch", "train_rmse", "valid_rmse"}`` of every trained model.
        best_epoch_: the kept epoch of the first component (what early stopping chose).
        valid_rmse_: validation RMSE of each component and of the model (``"model"``; for a blend this is a
            5-fold cross-validated figure over the validation rows, since its weights were fitted there).
        seconds_: training wall time.
    """

    def __init__(self, config: PredictorConfig | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else PredictorConfig()
        self.seed = seed
        self.user_vocab_: Vocab | None = None
        self.item_vocab_: Vocab | None = None
        self.components_: list[Component] | None = None
        self.weights_: np.ndarray | None = None
        self.rating_range_: tuple[float, float] = (1.0, 5.0)
        self.history_: list[dict] = []
        self.best_epoch_: int = 0
        self.valid_rmse_: dict[str, float] = {}
        self.seconds_: float = 0.0
        self._valid_preds: tuple[str, np.ndarray] | None = None  # (fingerprint of split.valid, (n, C) preds)

    def __repr__(self) -> str:
        fitted = "fitted" if self.components_ is not None else "not fitted"
        return f"GlobalPredictor({self.config.model_dump_json()}, seed={self.seed}, {fitted})"

    @property
    def component_names(self) -> list[str]:
        """Names of the fitted components, in blend order."""
        check_is_fitted(self, "components_")
        return [c.name for c in self.components_ or []]

    @property
    def params_(self) -> MFParams | None:
        """The MF component's parameters, or None if the model has no MF component."""
        for c in self.components_ or []:
            if isinstance(c, MF):
                return c.params_
        return None

    # ------------------------------------------------------------------ fitting

    def fit(self, split: Split, *, item_embeddings: Embeddings | None = None) -> Self:
        """Train on ``split.train``, early-stopped on ``split.valid`` (blend weights are fitted there too).

        With ``config.refit`` every component is then trained again on train + valid for the number of
        epochs early stopping chose, and the blend weights are kept.

        Args:
            split: the data split; ``split.test`` is never read.
            item_embeddings: item text embeddings (side features of ``svdpp``; ignored by other models).

        Returns:
            self.

        Raises:
            DataError: there are no training ratings.
        """
        check_schema(split.train, PAIRS, what="train ratings")
        if split.train.height == 0:
            raise DataError("cannot fit a rating model: split.train has no rows")
        with cpu_threads(self.config.threads):
            self._fit(split, item_embeddings)
        return self

    def _fit(self, split: Split, item_embeddings: Embeddings | None) -> None:
        t0 = time.perf_counter()
        cfg = self.config
        device = resolve_device(cfg.device)
        names: list[str] = list(dict.fromkeys(cfg.blend.components)) if cfg.model == "blend" else [cfg.model]
        ratings = split.train["rating"].to_numpy()
        self.rating_range_ = (float(ratings.min()), float(ratings.max()))
        self._set_vocab(split.train)
        names = self._affordable(self._svdpp_within_cap(names, split.train.height), split.train_full)
        train, valid = self._encode(split.train), self._encode(split.valid)
        features = self._features(names, item_embeddings)
        data = FitData(train, valid, len(self.user_vocab_), len(self.item_vocab_), self.rating_range_,  # type: ignore[arg-type]
                       item_features=features)  # fmt: skip
        logger.info("rating model %s: %d train and %d valid ratings, %d users, %d items", cfg.model, len(train),
                    len(valid), data.n_users, data.n_items)  # fmt: skip
        components: list[Component] = []
        preds = np.zeros((len(valid), len(names)))
        self.history_, self.valid_rmse_ = [], {}
        for j, name in enumerate(names):
            tc = time.perf_counter()
            generator = torch.Generator().manual_seed(_child_seed(self.seed, f"global-{name}"))
            component = _make_component(name, cfg, device).fit(data, generator)
            components.append(component)
            preds[:, j] = component.predict(valid.users, valid.items, valid.times)
            self.history_.extend({"component": name, **h} for h in component.history_)
            self.valid_rmse_[name] = rmse(valid.ratings, np.clip(preds[:, j], *self.rating_range_))
            logger.info("  %s: best epoch %d, valid RMSE %.4f, %.1f s", name, component.best_epoch_,
                        self.valid_rmse_[name], time.perf_counter() - tc)  # fmt: skip
        self.components_ = components
        self.best_epoch_ = components[0].best_epoch_
        if cfg.model == "blend":
            self._fit_blend(preds, valid.ratings)
        else:
            self.weights_ = None
            self.valid_rmse_["model"] = self.valid_rmse_[names[0]]
        self._valid_preds = (_fingerprint(split.valid), preds)
        if cfg.refit and len(valid):
            self._refit(split, item_embeddings, names, device)
        self.seconds_ = time.perf_counter() - t0
        logger.info("rating model %s: valid RMSE %.4f, %.1f s", cfg.model, self.valid_rmse_["model"], self.seconds_)

    def _svdpp_within_cap(self, names: list[str], n_train: int) -> list[str]:
        """A blend over more than ``blend.svdpp_max_ratings`` training ratings fits 'mf' in place of 'svdpp'
        (drops 'svdpp' when 'mf' is there too): the log says so. A single 'svdpp' model is left as chosen."""
        cap = self.config.blend.svdpp_max_ratings
        if self.config.model != "blend" or "svdpp" not in names or cap is None or n_train <= cap:
            return names
        swapped = list(dict.fromkeys("mf" if n == "svdpp" else n for n in names))
        logger.info("rating blend on %s training ratings, over predictor.blend.svdpp_max_ratings = %s: components %s "
                    "instead of %s (SVD++ costs more per epoch than MF and its blend needs a second MF for the "
                    "new-user priors)", f"{n_train:,}", f"{cap:,}", swapped, names)  # fmt: skip
        return swapped

    def _affordable(self, names: list[str], frame: pl.DataFrame) -> list[str]:
        """Drop (blend) or refuse (single model) the components whose estimated peak is over ``dense_budget_mib``.

        The estimate (:func:`~segmentation._predict_components.component_mib`) counts the bytes a component was
        measured to hold while fitting, temporaries included: item-kNN and user-kNN their neighbour tables (and
        one block of similarities), AutoRec its items x users reconstructions; mf and svdpp grow with users +
        items and are not bound. The choice is logged with its reason.
        """
        n_u, n_i = frame["user_id"].n_unique(), frame["item_id"].n_unique()
        budget = self.config.dense_budget_mib
        mib = {n: component_mib(n, n_u, n_i) for n in names if component_mib(n, n_u, n_i) > 0}
        too_big = [n for n in names if mib.get(n, 0.0) > budget]
        sizes = ", ".join(f"{n} about {m:,.0f} MiB" for n, m in mib.items()) or "no dense table"
        if not too_big:
            logger.info("rating model %s over %s users x %s items: %s, within predictor.dense_budget_mib = %s; "
                        "components as configured", self.config.model, f"{n_u:,}", f"{n_i:,}", sizes,
                        f"{budget:,}")  # fmt: skip
            return names
        if len(too_big) == len(names):
            raise ConfigError(
                f"predictor.model {self.config.model!r} is too large for {n_u:,} users and {n_i:,} items ({sizes} "
                f"while fitting, over predictor.dense_budget_mib = {budget:,}): use model = 'mf' or 'svdpp', or raise "
                "the budget on a machine with the memory"
            )
        logger.warning("rating blend over %s users x %s items: %s; over predictor.dense_budget_mib = %s, left out: %s",
                       f"{n_u:,}", f"{n_i:,}", sizes, f"{budget:,}", ", ".join(too_big))  # fmt: skip
        return [n for n in names if n not in too_big]

    def _set_vocab(self, frame: pl.DataFrame) -> None:
        self.user_vocab_ = Vocab.from_ids(frame["user_id"].unique(maintain_order=True).sort())
        self.item_vocab_ = Vocab.from_ids(frame["item_id"].unique(maintain_order=True).sort())

    def _features(self, names: list[str], item_embeddings: Embeddings | None) -> np.ndarray | None:
        if "svdpp" not in names or not self.config.svdpp.side_features:
            return None
        if item_embeddings is None:
            logger.info("svdpp: no item embeddings given, so no side features")
            return None
        assert self.item_vocab_ is not None
        return _item_features(self.item_vocab_, item_embeddings)

    def _fit_blend(self, preds: np.ndarray, y: np.ndarray) -> None:
        reg = self.config.blend.reg
        n_parts = preds.shape[1]
        if len(y) < 10 * (n_parts + 1):
            logger.warning("blend: only %d validation rows for %d weights; averaging the components instead",
                           len(y), n_parts + 1)  # fmt: skip
            self.weights_ = np.concatenate([[0.0], np.full(n_parts, 1.0 / n_parts)])
            self.valid_rmse_["model"] = rmse(y, np.clip(self.combine(preds), *self.rating_range_))
            return
        self.weights_ = _ridge(preds, y, reg)
        # an honest figure for the blend: 5-fold cross-validation over the validation rows (seeded folds)
        folds = np.array_split(np.random.default_rng(_child_seed(self.seed, "blend-cv")).permutation(len(y)), 5)
        splits = [(np.setdiff1d(np.arange(len(y)), fold), fold) for fold in folds]
        cv = cross_val_predict(_ridge_model(reg), np.asarray(preds, np.float64), np.asarray(y, np.float64), cv=splits)
        self.valid_rmse_["model"] = rmse(y, np.clip(cv, *self.rating_range_))
        names = ["intercept", *self.component_names]
        logger.info("blend weights %s", {n: round(float(w), 3) for n, w in zip(names, self.weights_)})

    def _refit(self, split: Split, item_embeddings: Embeddings | None, names: list[str], device: str) -> None:
        full = split.train_full
        self._set_vocab(full)
        train = self._encode(full)
        empty = train.subset(np.zeros(len(train), bool))
        epochs = {c.name: max(1, c.best_epoch_) for c in self.components_ or []}
        data = FitData(train, empty, len(self.user_vocab_), len(self.item_vocab_), self.rating_range_,  # type: ignore[arg-type]
                       item_features=self._features(names, item_embeddings), epochs=epochs)  # fmt: skip
        refitted: list[Component] = []
        for name in names:
            tc = time.perf_counter()
            generator = torch.Generator().manual_seed(_child_seed(self.seed, f"refit-{name}"))
            refitted.append(_make_component(name, self.config, device).fit(data, generator))
            logger.info("  %s refitted on %d ratings for %d epochs, %.1f s", name, len(train), epochs.get(name, 0),
                        time.perf_counter() - tc)  # fmt: skip
        self.components_ = refitted

    # ------------------------------------------------------------------ inference

    def _encode(self, frame: pl.DataFrame) -> Ratings:
        """User and item numbers (-1 = unknown), ratings (NaN if the frame has none) and times (or None)."""
        check_is_fitted(self, "user_vocab_")
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        check_schema(frame, PAIRS, what="rating frame")
        users = self.user_vocab_.lookup(frame["user_id"], missing=-1)
        items = self.item_vocab_.lookup(frame["item_id"], missing=-1)
        y = frame["rating"].cast(pl.Float64).to_numpy() if "rating" in frame.columns else np.full(frame.height, np.nan)
        times = None
        if "timestamp" in frame.columns and frame["timestamp"].null_count() == 0:  # partial times: ignore them all
            times = frame["timestamp"].cast(pl.Int64).to_numpy()
        return Ratings(users, items, y, times)

    def component_predictions(self, data: Ratings) -> np.ndarray:
        """(n, n_components) float64 unclipped predictions of every component."""
        check_is_fitted(self, "components_")
        assert self.components_ is not None
        out = np.zeros((len(data), len(self.components_)))
        for j, c in enumerate(self.components_):
            out[:, j] = c.predict(data.users, data.items, data.times)
        return out

    def combine(self, preds: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Unclipped model output from component predictions (blend weights, or the single component)."""
        w = self.weights_ if weights is None else weights
        if w is None:
            return preds[:, 0].copy()
        return w[0] + preds @ w[1:]

    def predict_encoded(self, data: Ratings) -> np.ndarray:
        """Clipped float64 predictions for encoded rows."""
        return np.clip(self.combine(self.component_predictions(data)), *self.rating_range_)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Predict ratings.

        Args:
            frame: has ``user_id`` and ``item_id`` (String), optionally ``timestamp`` (Int64, used by
                time-aware models); other columns are ignored.

        Returns:
            (n,) float64, clipped to the training rating range. Unknown users get the item's bias,
            unknown items the user's bias, and both unknown the global mean.

        Raises:
            NotFittedError: before :meth:`fit`.
            SchemaError: the id columns are missing or not strings.
        """
        return self.predict_encoded(self._encode(frame))

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for run metrics."""
        return {
            "model": self.config.model,
            "components": self.component_names if self.components_ is not None else [],
            "weights": self.weights_.tolist() if self.weights_ is not None else None,
            "refit": self.config.refit,
            "n_users": len(self.user_vocab_) if self.user_vocab_ is not None else 0,
            "n_items": len(self.item_vocab_) if self.item_vocab_ is not None else 0,
            "best_epoch": self.best_epoch_,
            "valid_rmse": self.valid_rmse_,
            "seconds": round(self.seconds_, 3),
            "history": self.history_,
        }

    # ------------------------------------------------------------------ persistence

    def save(self, folder: Path) -> None:
        """Write ``weights.safetensors`` and ``manifest.json`` into ``folder`` (created if needed)."""
        check_is_fitted(self, "components_")
        assert self.components_ is not None and self.user_vocab_ is not None and self.item_vocab_ is not None
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        entries = []
        for j, c in enumerate(self.components_):
            arrays, meta = c.state()
            tensors.update({f"c{j}.{k}": np.ascontiguousarray(v) for k, v in arrays.items()})
            entries.append({"name": c.name, "kind": _component_kind(c), "meta": meta})
        save_file(tensors, str(folder / "weights.safetensors"))
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "kind": "global",
            "config": self.config.model_dump(mode="json"),
            "seed": self.seed,
            "components": entries,
            "weights": self.weights_.tolist() if self.weights_ is not None else None,
            "rating_range": list(self.rating_range_),
            "user_ids": [str(u) for u in self.user_vocab_.ids],
            "item_ids": [str(i) for i in self.item_vocab_.ids],
            "best_epoch": self.best_epoch_,
            "valid_rmse": self.valid_rmse_,
            "seconds": self.seconds_,
            "history": self.history_,
            "versions": _versions(),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "GlobalPredictor":
        """Read a model written by :meth:`save`.

        Raises:
            DataError: the folder holds no saved global predictor, or one of another format version.
        """
        folder = Path(folder)
        manifest = _read_manifest(folder, "global")
        model = cls(PredictorConfig.model_validate(manifest["config"]), seed=int(manifest["seed"]))
        model.user_vocab_ = Vocab.from_ids(manifest["user_ids"])
        model.item_vocab_ = Vocab.from_ids(manifest["item_ids"])
        tensors = load_file(str(folder / "weights.safetensors"))
        components: list[Component] = []
        for j, entry in enumerate(manifest["components"]):
            prefix = f"c{j}."
            arrays = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            component = COMPONENTS[entry["kind"]].from_state(arrays, entry["meta"])
            components.append(component)
        model.components_ = components
        model.weights_ = np.asarray(manifest["weights"], np.float64) if manifest["weights"] is not None else None
        model.rating_range_ = (float(manifest["rating_range"][0]), float(manifest["rating_range"][1]))
        model.history_ = list(manifest["history"])
        model.best_epoch_ = int(manifest["best_epoch"])
        model.valid_rmse_ = dict(manifest["valid_rmse"])
        model.seconds_ = float(manifest["seconds"])
        return model


def _fingerprint(frame: pl.DataFrame) -> str:
    """A hash of a frame's (user_id, item_id) rows, to recognise the same validation rows later."""
    h = frame.select(pl.concat_str("user_id", "item_id", separator="\x1f").hash(seed=0)).to_series()
    return f"{frame.height}:{int(h.sum()) & 0xFFFFFFFFFFFF:x}:{int((h * 31 + 7).sum()) & 0xFFFFFFFFFFFF:x}"


def fit_global_predictor(split: Split, config: PredictorConfig, *, item_embeddings: Embeddings | None = None,
                         seed: int = 0) -> GlobalPredictor:  # fmt: skip
    """Fit the global rating model on ``split.train``, early-stopped on ``split.valid``.

    Args:
        split: train/valid/test; test is never read.
        config: predictor settings.
        item_embeddings: item text embeddings (side features of ``svdpp``, alone or in the blend).
        seed: the run's seed.

    Returns:
        A fitted :class:`GlobalPredictor`.
    """
    return GlobalPredictor(config, seed=seed).fit(split, item_embeddings=item_embeddings)
