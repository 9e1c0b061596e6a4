"""segflow's own ranker: rating-aware EASE blended with the similarity of the items' descriptions."""

import logging
from collections.abc import Sequence
from typing import Self

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from segmentation._errors import ConfigError
from segmentation.config import RankerConfig
from segmentation.data.contracts import Vocab
from segmentation.rank.als import ALS
from segmentation.rank.base import Candidates, MatrixRanker, TrainMatrices, dense_mib, validation_ndcg, zscore

__all__ = ["LikedEase", "SegflowRanker"]

logger = logging.getLogger(__name__)


def _content_similarity(items: Vocab, emb: Embeddings, neighbors: int) -> np.ndarray:
    """Cosine similarity of item description embeddings, top-``neighbors`` per item, zero diagonal.

    Items without an embedding get an all-zero row and column.
    """
    pos = emb.index_of()
    vec = np.zeros((len(items), emb.dim), dtype=np.float64)
    have = np.array([i in pos for i in items.ids])
    if have.any():
        vec[have] = emb.vectors[[pos[i] for i in items.ids[have]]]
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    sim = vec @ vec.T
    np.fill_diagonal(sim, 0.0)
    if neighbors < sim.shape[1]:
        cut = np.argpartition(-sim, neighbors, axis=1)[:, neighbors:]
        np.put_along_axis(sim, cut, 0.0, axis=1)
    return sim


class SegflowRanker(MatrixRanker):
    """segflow's ranker: rating-aware EASE blended with item-description similarity.

    Relevance is "will rate it at or above ``like_threshold``", so a liked item is stronger
    evidence and a better target than one merely watched. With ``L`` the liked indicator:

    - input ``X_a = X + a·L`` and target ``Y = X + w·L`` (:func:`~segmentation.rank.ease.ease_weights`, asymmetric
      EASE with a zero diagonal), ridge ``λ·mean(X_a²) + p/(1-p)·diag(X_aᵀX_a)``;
    - content: ``C = X_a S``, ``S`` the top-``content_neighbors`` cosine similarity of the
      items' description embeddings (:class:`~embeddings.encoder.Embeddings`);
    - ``score(u) = z(x_a,u B) + β·z(c_u)``, ``z`` standardising each user's row.

    ``a``, ``w``, ``λ``, ``p`` and ``β`` are the best point of their ``segflow_*`` grids on the
    validation carve (NDCG@10). Without embeddings ``β`` is 0. With no rating at or above the
    threshold (implicit data) every interaction counts as liked and it reduces to EASE.

    Its EASE and content parts are dense items x items tables: above ``dense_budget_mib`` it
    logs why and falls back to :class:`~segmentation.rank.als.ALS` (no content blend), which it
    then delegates ``recommend`` to (``params_`` says ``{"fallback": "als", ...}``).

    Args:
        config: ranker settings (``like_threshold`` and the ``segflow_*`` grids).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        bad = [p for p in self.config.segflow_dropouts if not 0.0 <= p < 1.0]
        if bad:
            raise ConfigError(f"ranker.segflow_dropouts must lie in [0, 1) (given: {bad})")

    def fit(self, train: pl.DataFrame, *, items: pl.DataFrame | None = None,
            item_embeddings: Embeddings | None = None, seed: int = 0, implicit: bool = False) -> Self:  # fmt: skip
        self.fallback_: ALS | None = None  # set by _over_budget during the fit
        return super().fit(train, items=items, item_embeddings=item_embeddings, seed=seed, implicit=implicit)

    fit.__doc__ = MatrixRanker.fit.__doc__

    def _over_budget(self, n_items: int) -> bool:
        logger.info("SegflowRanker: %d items need about %.0f MiB of dense items x items tables (EASE, content "
                    "similarity), over ranker.dense_budget_mib = %d: falling back to ALS, without the content blend",
                    n_items, dense_mib(n_items), self.config.dense_budget_mib)  # fmt: skip
        self.fallback_ = ALS(self.config)
        return True

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        if self.fallback_ is not None:
            self.fallback_.fit(self._train, items=items, seed=seed, implicit=self.implicit_)
            self.params_ = {"fallback": "als", **self.fallback_.params_}
            self.validation_ = getattr(self.fallback_, "validation_", [])
            return
        cfg = self.config
        self.content_ = _content_similarity(self.items_, emb, cfg.content_neighbors) if emb is not None else None
        if self.content_ is None:
            logger.info("SegflowRanker: no item embeddings given; the content blend is off")
        betas = cfg.segflow_content_weights if self.content_ is not None else [0.0]
        like_weights, target_weights = cfg.segflow_like_weights, cfg.segflow_target_weights
        if (data.liked != data.x).nnz == 0:
            # every interaction liked (implicit data): X + a·L and X + w·L are multiples of X, and the scores are
            # standardised per user with a scale-free ridge, so a and w change nothing: try one of each
            like_weights, target_weights = like_weights[:1], target_weights[:1]
            logger.info("SegflowRanker: every interaction counts as liked; the like and target weights are not "
                        "searched (%d candidates instead of %d)", len(cfg.segflow_reg_grid) * len(cfg.segflow_dropouts)
                        * len(betas), len(cfg.segflow_like_weights) * len(cfg.segflow_target_weights)
                        * len(cfg.segflow_reg_grid) * len(cfg.segflow_dropouts) * len(betas))  # fmt: skip
        grid = [{"a": a, "reg": lam, "dropout": p, "w": w, "beta": b}
                for a in like_weights for lam in cfg.segflow_reg_grid for p in cfg.segflow_dropouts
                for w in target_weights for b in betas]  # fmt: skip
        self.params_ = grid[0] if len(grid) == 1 else self._validate(grid, seed)
        p = self.params_
        parts = LikedEase(data, p["a"])
        b0, bl = parts.weights(p["reg"], p["dropout"])
        self.b_ = b0 + p["w"] * bl
        self._x_in = parts.x_in

    def _validate(self, grid: list[dict], seed: int) -> dict:
        """Score every grid point on the validation carve, sharing work between neighbours of the grid."""
        carve = self._carve(seed)
        seen = carve.fit.x[carve.users]
        results: list[tuple[float, dict]] = []
        for a in dict.fromkeys(g["a"] for g in grid):
            parts = LikedEase(carve.fit, a)
            rows = parts.x_in[carve.users]
            content = zscore(np.asarray(rows @ self.content_.T)) if self.content_ is not None else None
            sub = [g for g in grid if g["a"] == a]
            for reg, drop in dict.fromkeys((g["reg"], g["dropout"]) for g in sub):
                b0, bl = parts.weights(reg, drop)
                for w in dict.fromkeys(g["w"] for g in sub if (g["reg"], g["dropout"]) == (reg, drop)):
                    base = zscore(np.asarray(rows @ (b0 + w * bl)))
                    for g in sub:
                        if (g["reg"], g["dropout"], g["w"]) == (reg, drop, w):
                            s = base + g["beta"] * content if g["beta"] and content is not None else base
                            results.append((validation_ndcg(s, seen, carve.relevant), g))
        return self._record(results, len(carve.users))

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                  candidates: Candidates = None) -> pl.DataFrame:  # fmt: skip
        fallback: ALS | None = getattr(self, "fallback_", None)  # unset before fit
        if fallback is not None:  # fitted over the budget
            return fallback.recommend(user_ids, k, exclude_seen=exclude_seen, candidates=candidates)
        return super().recommend(user_ids, k, exclude_seen=exclude_seen, candidates=candidates)

    recommend.__doc__ = MatrixRanker.recommend.__doc__

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        x = self._x_in[rows]
        out = zscore(np.asarray(x @ self.b_))
        if self.params_["beta"] and self.content_ is not None:
            out += self.params_["beta"] * zscore(np.asarray(x @ self.content_.T))
        return out


class LikedEase:
    """The parts of rating-aware EASE that do not depend on the ridge or the target weight.

    With ``X_a = X + a·L`` and target ``Y_w = X + w·L``: ``B_w = B_0 + w·B_L`` where ``B_0`` and
    ``B_L`` solve the zero-diagonal problem for targets ``X`` and ``L`` (the constraint's
    multipliers are linear in the target too).
    """

    def __init__(self, data: TrainMatrices, a: float) -> None:
        self.x_in = (data.x + a * data.liked).tocsr()
        xt = self.x_in.T.tocsr()
        self.gram = (xt @ self.x_in).toarray()
        self.xy0 = (xt @ data.x).toarray()
        self.xyl = (xt @ data.liked).toarray()
        self.scale = float(self.x_in.power(2).sum() / max(data.x.nnz, 1))  # mean squared input weight

    def weights(self, reg: float, dropout: float) -> tuple[np.ndarray, np.ndarray]:
        """``(B_0, B_L)`` for ridge ``reg·scale + dropout/(1-dropout)·diag(X_aᵀX_a)``."""
        g = self.gram.copy()
        d = np.diag(self.gram)
        g[np.diag_indices_from(g)] += reg * self.scale + (dropout / (1.0 - dropout)) * d
        p = np.linalg.inv(g)
        dp = np.diag(p)
        out = []
        for xy in (self.xy0, self.xyl):
            c = p @ xy
            b = c - p * (np.diag(c) / dp)[None, :]
            np.fill_diagonal(b, 0.0)
            out.append(b)
        return out[0], out[1]
