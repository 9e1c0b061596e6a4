"""Rating models that the blend combines: SVD++ with time biases and item side features, kNN-baseline
models and I-AutoRec. Each component fits on encoded ratings, predicts unclipped float64, and saves as
named float/int arrays (safetensors) plus a small JSON-ready ``meta`` dict.

References:
    Koren, "Factorization meets the neighborhood", KDD 2008 (SVD++, kNN-baseline, shrunk Pearson-baseline).
    Koren, "Collaborative filtering with temporal dynamics", KDD 2009 (item time-bin and user-day biases).
    Sedhain et al., "AutoRec: autoencoders meet collaborative filtering", WWW 2015 (I-AutoRec).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import expit

from segmentation._metrics import rmse
from segmentation._predict_mf import MFParams, Ratings, RowAdam, TrainSettings, early_stop, train_mf

__all__ = [
    "COMPONENTS",
    "AutoRec",
    "Component",
    "FitData",
    "KNNBaseline",
    "MF",
    "SVDpp",
    "baseline_biases",
    "component_mib",
]

logger = logging.getLogger(__name__)

_DAY = 86_400


@dataclass(frozen=True)
class FitData:
    """What a component may use when fitting.

    Attributes:
        train: training ratings.
        valid: early-stopping ratings (may be empty: then ``epochs`` gives the fixed number of epochs).
        n_users: rows of user tables.
        n_items: rows of item tables.
        clip: rating range.
        item_features: (n_items, d) float32 side features (e.g. text embeddings; zero rows where unknown) or None.
        epochs: fixed epoch counts by component name (refits), overriding early stopping.
    """

    train: Ratings
    valid: Ratings
    n_users: int
    n_items: int
    clip: tuple[float, float]
    item_features: np.ndarray | None = None
    epochs: dict[str, int] = field(default_factory=dict)


class Component(Protocol):
    """A rating model inside the blend."""

    @property
    def name(self) -> str: ...  # a class constant (MF, SVDpp, AutoRec) or set per instance (KNNBaseline)

    best_epoch_: int
    history_: list[dict]

    def fit(self, data: FitData, generator: torch.Generator) -> "Component": ...

    def predict(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> np.ndarray: ...

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...


# ---------------------------------------------------------------------- helpers


def baseline_biases(data: Ratings, n_users: int, n_items: int, *, reg_user: float = 15.0, reg_item: float = 10.0,
                    iterations: int = 10) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """``mu + b_u + b_i`` by alternating damped means (surprise's BaselineOnly, ALS).

    Returns:
        ``(mu, b_u (n_users,), b_i (n_items,))`` in float64.
    """
    mu = float(data.ratings.mean()) if len(data) else 0.0
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    cu = np.bincount(data.users, minlength=n_users)
    ci = np.bincount(data.items, minlength=n_items)
    for _ in range(iterations):
        bi = np.bincount(data.items, data.ratings - mu - bu[data.users], minlength=n_items) / (ci + reg_item)
        bu = np.bincount(data.users, data.ratings - mu - bi[data.items], minlength=n_users) / (cu + reg_user)
    return mu, bu, bi


def _lookup(table: np.ndarray, idx: np.ndarray, fill: float = 0.0) -> np.ndarray:
    ok = idx >= 0
    out = np.full(idx.shape, fill, dtype=np.float64)
    out[ok] = table[idx[ok]]
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


# ---------------------------------------------------------------------- MF


class MF:
    """Biased MF (see :mod:`segmentation._predict_mf`) as a blend component."""

    name: ClassVar[str] = "mf"

    def __init__(self, *, embedding_size: int = 64, settings: TrainSettings | None = None, device: str = "cpu") -> None:
        self.embedding_size = embedding_size
        self.settings = settings or TrainSettings(100, 0.01, 0.1, 0.01, 4096, 5)
        self.device = device
        self.params_: MFParams | None = None
        self.best_epoch_ = 0
        self.history_: list[dict] = []

    def fit(self, data: FitData, generator: torch.Generator) -> "MF":
        settings = self.settings
        valid = data.valid
        if self.name in data.epochs:
            settings = TrainSettings(**{**settings.__dict__, "epochs": max(1, data.epochs[self.name])})
            valid = data.valid.subset(np.zeros(len(data.valid), bool))
        self.params_, history, self.best_epoch_ = train_mf(data.train, valid, data.n_users, data.n_items,
                                                           embedding_size=self.embedding_size, settings=settings,
                                                           generator=generator, clip=data.clip, device=self.device)  # fmt: skip
        self.history_ = history[1:]
        return self

    def predict(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        assert self.params_ is not None
        return self.params_.predict(users, items)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        assert self.params_ is not None
        return self.params_.tensors(), {"best_epoch": self.best_epoch_}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> "MF":
        model = cls()
        model.params_ = MFParams.from_tensors(tensors)
        model.best_epoch_ = int(meta["best_epoch"])
        return model


# ---------------------------------------------------------------------- SVD++


@dataclass(frozen=True)
class SVDppSettings:
    """Settings of :class:`SVDpp`."""

    embedding_size: int = 64
    epochs: int = 100
    learning_rate: float = 0.005
    reg: float = 0.1
    implicit_reg: float = 0.1
    bias_reg: float = 0.01
    time_reg: float = 0.1
    batch_size: int = 4096
    patience: int = 5
    item_time_bins: int = 20
    user_day_bias: bool = True
    side_features: bool = True
    init_std: float = 0.1
    patience_ratings: int | None = None


class _CsrRows:
    """The stored entries of a sparse (users x items) weight matrix, a batch of users at a time."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.indptr = torch.as_tensor(matrix.indptr.astype(np.int64))
        self.indices = torch.as_tensor(matrix.indices.astype(np.int64))
        self.data = torch.as_tensor(matrix.data.astype(np.float32))

    def rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The entries of the distinct ``users``, for :func:`torch.nn.functional.embedding_bag`.

        Returns:
            (items, weights, offsets, distinct users, each of ``users``' row among them); the cost grows with the
            entries of those users only.
        """
        distinct, inverse = torch.unique(users, return_inverse=True)
        starts, lengths = self.indptr[distinct], self.indptr[distinct + 1] - self.indptr[distinct]
        offsets = torch.cumsum(lengths, 0) - lengths
        positions = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(int(lengths.sum()))
        return self.indices[positions], self.data[positions], offsets, distinct, inverse


class SVDpp:
    """SVD++ with time-aware biases and optional item side features (a hybrid).

    ``r(u,i,t) = mu + b_u + b_{u,day(t)} + b_i + b_{i,bin(t)} + (q_i + W f_i) . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``

    ``N(u)`` is the set of items ``u`` rated in training, ``f_i`` the item's side features (text
    embeddings), ``bin(t)`` one of ``item_time_bins`` equal-width periods over the training time span and
    ``day(t)`` the user's calendar day (a day never seen in training contributes 0). Trained with lazy Adam
    (:class:`~segmentation._predict_mf.RowAdam`: a step reads and updates its batch's rows only) and
    per-example L2, early-stopped on validation RMSE.
    """

    name: ClassVar[str] = "svdpp"

    def __init__(self, settings: SVDppSettings | None = None) -> None:
        self.settings = settings or SVDppSettings()
        self.best_epoch_ = 0
        self.history_: list[dict] = []
        self.tensors_: dict[str, np.ndarray] = {}

    # The user-day table is keyed by (user, day) pairs seen in training, kept sorted for lookup.
    def _day_keys(self, users: np.ndarray, times: np.ndarray | None) -> np.ndarray:
        if times is None:
            return np.full(len(users), -1, dtype=np.int64)
        return np.where(users >= 0, users.astype(np.int64) * 1_000_000 + times // _DAY, -1)

    def _bins(self, times: np.ndarray | None, n: int) -> np.ndarray:
        if times is None or "time_range" not in self.tensors_:
            return np.full(n, -1, dtype=np.int64)
        t0, t1 = self.tensors_["time_range"]
        width = max((t1 - t0) / self.settings.item_time_bins, 1.0)
        return np.clip(((times - t0) / width).astype(np.int64), 0, self.settings.item_time_bins - 1)

    def fit(self, data: FitData, generator: torch.Generator) -> "SVDpp":
        s = self.settings
        t_start = time.perf_counter()
        n_u, n_i, k = data.n_users, data.n_items, s.embedding_size
        tr = data.train
        mu = float(tr.ratings.mean())
        # implicit feedback: row-normalised user x item matrix of the training items
        counts = np.bincount(tr.users, minlength=n_u).astype(np.float64)
        norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        implicit = sp.csr_matrix((norm[tr.users], (tr.users, tr.items)), shape=(n_u, n_i), dtype=np.float32)
        rows_of = _CsrRows(implicit)
        coo = implicit.tocoo()
        indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
        n_mat = torch.sparse_coo_tensor(indices, coo.data, (n_u, n_i), check_invariants=False).coalesce()
        use_time = data.train.times is not None and s.item_time_bins > 0
        tensors: dict[str, np.ndarray] = {"mu": np.array([mu])}
        if use_time:
            assert data.train.times is not None
            tensors["time_range"] = np.array([data.train.times.min(), data.train.times.max()], dtype=np.float64)
            self.tensors_ = tensors
        use_day = use_time and s.user_day_bias
        day_keys = np.unique(self._day_keys(tr.users, data.train.times)) if use_day else np.zeros(0, np.int64)
        use_side = s.side_features and data.item_features is not None

        def day_index(users: np.ndarray, times: np.ndarray | None) -> np.ndarray:
            if not use_day or times is None:
                return np.full(len(users), -1, dtype=np.int64)
            keys = self._day_keys(users, times)
            pos = np.clip(np.searchsorted(day_keys, keys), 0, max(len(day_keys) - 1, 0))
            return np.where((len(day_keys) > 0) & (day_keys[pos] == keys), pos, -1)

        g = generator
        p = torch.randn(n_u, k, generator=g) * s.init_std
        q = torch.randn(n_i, k, generator=g) * s.init_std
        y = torch.randn(n_i, k, generator=g) * s.init_std * 0.1
        bu = torch.zeros(n_u)
        bi = torch.zeros(n_i)
        n_bins = max(s.item_time_bins, 1)
        bit = torch.zeros(n_i, n_bins)
        bud = torch.zeros(len(day_keys) + 1)  # last row: unseen day (kept at 0)
        # lazy Adam on the tables: a step reads and updates the rows its batch touches, so its cost grows with the
        # batch, not with users + items + user-days (dense Adam over every table made an epoch grow with their
        # product with the interactions)
        adam = RowAdam({"p": p, "q": q, "y": y, "bu": bu, "bi": bi, "bit": bit.view(-1), "bud": bud},
                        lr=s.learning_rate)  # fmt: skip
        params = [p, q, y, bu, bi, bit, bud]
        if use_side:
            assert data.item_features is not None
            feats = torch.as_tensor(np.ascontiguousarray(data.item_features, dtype=np.float32))
            w_side = torch.nn.Parameter(torch.zeros(feats.shape[1], k))
            params.append(w_side)
            side_opt = torch.optim.Adam([w_side], lr=s.learning_rate)

        def encode(r: Ratings, times: np.ndarray | None) -> tuple[torch.Tensor, ...]:
            return (torch.tensor(r.users), torch.tensor(r.items), torch.tensor(r.ratings, dtype=torch.float32),
                    torch.tensor(self._bins(times, len(r)) if use_time else np.full(len(r), -1)),
                    torch.tensor(day_index(r.users, times)))  # fmt: skip

        tu, ti, trr, tb, td = encode(tr, data.train.times)
        last_day = len(day_keys)

        def loss_of(u: torch.Tensor, i: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                    r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
            """Squared error plus the per-example L2 of one batch, over rows gathered by ``adam``."""
            hist_items, hist_weights, offsets, users, u_row = rows_of.rows(u)
            y_rows = adam.gather("y", torch.cat([hist_items, i]))
            z = torch.nn.functional.embedding_bag(y_rows[: len(hist_items)], adam.leaf("y"), offsets, mode="sum",
                                                  per_sample_weights=hist_weights)[u_row]  # fmt: skip
            pu, q_i = adam.rows("p", adam.gather("p", users)[u_row]), adam.rows("q", adam.gather("q", i))
            bu_u, bi_i = adam.rows("bu", adam.gather("bu", users)[u_row]), adam.rows("bi", adam.gather("bi", i))
            qi = q_i + feats[i] @ w_side if use_side else q_i
            pred = mu + bu_u + bi_i + (qi * (pu + z)).sum(1)
            yu = adam.rows("y", y_rows[len(hist_items) :])
            penalty = (s.reg * ((pu**2).sum(1) + (q_i**2).sum(1)).mean() + s.bias_reg * (bu_u**2 + bi_i**2).mean()
                       + s.implicit_reg * (yu**2).sum(1).mean())  # fmt: skip
            if use_time:
                bt = adam.rows("bit", adam.gather("bit", i * n_bins + b.clamp(min=0))) * (b >= 0)
                pred = pred + bt
                penalty = penalty + s.time_reg * (bt**2).mean()
            if use_day:
                bd = adam.rows("bud", adam.gather("bud", torch.where(d >= 0, d, torch.full_like(d, last_day)))) * (
                    d >= 0
                )
                pred = pred + bd
                penalty = penalty + s.time_reg * (bd**2).mean()
            err = pred - r
            return (err**2).mean() + penalty, err.detach()

        def snapshot() -> dict[str, np.ndarray]:
            """The parameters as :meth:`predict` reads them."""
            with torch.no_grad():
                z = torch.sparse.mm(n_mat, y)
                item_vec = q + feats @ w_side if use_side else q
                return {
                    **tensors,
                    "user_vec": _np(p + z), "item_vec": _np(item_vec), "user_bias": _np(bu), "item_bias": _np(bi),
                    "item_time_bias": _np(bit) if use_time else np.zeros((n_i, 1), np.float32),
                    "day_keys": day_keys.astype(np.int64),
                    "day_bias": _np(bud[:last_day]) if use_day else np.zeros(0, np.float32),
                }  # fmt: skip

        fixed = data.epochs.get(self.name)
        epochs = fixed if fixed is not None else s.epochs
        n = len(tr)
        best_rmse, best_state, best_epoch = np.inf, None, 0
        lo, hi = data.clip
        self.history_ = []
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(n, generator=g)
            sse = 0.0
            for start in range(0, n, s.batch_size):
                idx = perm[start : start + s.batch_size]
                if use_side:
                    side_opt.zero_grad(set_to_none=True)
                loss, err = loss_of(tu[idx], ti[idx], tb[idx], td[idx], trr[idx])
                loss.backward()
                adam.step()
                if use_side:
                    side_opt.step()
                sse += float((err**2).sum())
            entry = {"epoch": epoch, "train_rmse": float(np.sqrt(sse / max(n, 1))), "valid_rmse": None}
            self.history_.append(entry)
            if fixed is not None or len(data.valid) == 0:
                best_epoch = epoch
                continue
            self.tensors_ = snapshot()  # scored as predict() scores: an unknown user or item contributes nothing
            vp = self.predict(data.valid.users, data.valid.items, data.valid.times)
            score = rmse(data.valid.ratings, np.clip(vp, lo, hi))
            entry["valid_rmse"] = score
            if score < best_rmse:
                best_rmse, best_epoch = score, epoch
                best_state = [t.detach().clone() for t in params]
            elif stop := early_stop(epoch, best_epoch, n, s.patience, s.patience_ratings):
                logger.info("svdpp: %s", stop)
                break
        if best_state is not None:
            with torch.no_grad():
                for t, b in zip(params, best_state):
                    t.copy_(b)
        self.best_epoch_ = best_epoch
        self.tensors_ = snapshot()
        logger.debug(
            "svdpp: best epoch %d, valid RMSE %.4f, %.1f s", best_epoch, best_rmse, time.perf_counter() - t_start
        )
        return self

    def predict(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        t = self.tensors_
        ku, ki = users >= 0, items >= 0
        u, i = np.where(ku, users, 0), np.where(ki, items, 0)
        dot = np.einsum("nk,nk->n", t["user_vec"][u].astype(np.float64), t["item_vec"][i].astype(np.float64))
        pred = (
            float(t["mu"][0])
            + _lookup(t["user_bias"], users)
            + _lookup(t["item_bias"], items)
            + np.where(ku & ki, dot, 0.0)
        )
        if times is not None and "time_range" in t:
            b = self._bins(times, len(users))
            pred += np.where(ki, t["item_time_bias"][i, np.clip(b, 0, t["item_time_bias"].shape[1] - 1)], 0.0)
            keys = t["day_keys"]
            if len(keys):
                k = self._day_keys(users, times)
                pos = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
                pred += np.where(ku & (keys[pos] == k), t["day_bias"][pos], 0.0)
        return pred

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return dict(self.tensors_), {"best_epoch": self.best_epoch_, "settings": self.settings.__dict__}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> "SVDpp":
        model = cls(SVDppSettings(**meta["settings"]))
        model.tensors_ = dict(tensors)
        model.best_epoch_ = int(meta["best_epoch"])
        return model


# ---------------------------------------------------------------------- kNN baseline


#: Cells of the (block x entities) similarity tables a kNN fit works on at once (and of the (rows x neighbours)
#: tables its prediction does).
KNN_BLOCK_CELLS = 1 << 20

#: Peak bytes of a blend component, temporaries included, as ``(bytes per cell, fixed MiB)``: kNN per (entities x
#: neighbours kept) cell, AutoRec per (items x users) cell. Measured by ``benchmarks/dense_budget.py`` (peak RSS of
#: a fit, its validation predictions, and the refit while the first fit is held, as the blend does; synthetic logs
#: of 3,000 x 600 and 6,000 x 1,200; docs/BENCHMARKS.md, "One memory budget for the rating blend") and rounded up:
#: kNN 15 bytes per cell plus about 60-70 MiB for one block of similarities, AutoRec 33 bytes per cell plus about
#: 180 MiB (its weights and Adam state grow with users). Before the kNN similarities were computed in blocks, a kNN
#: fit took about 63 bytes per entities^2 cell (user-kNN over 10,000 users: 5.8 GiB).
PEAK_BYTES: dict[str, tuple[float, float]] = {"knn": (16.0, 80.0), "autorec": (36.0, 192.0)}


def component_mib(name: str, n_users: int, n_items: int, *, candidates: int = 1000) -> float:
    """Estimated peak MiB of fitting the blend component ``name`` over ``n_users`` x ``n_items`` (0 for the models
    whose tables grow with users + items only: mf, svdpp).

    >>> round(component_mib("user-knn", 10_000, 2_000))
    233
    >>> round(component_mib("autorec", 10_000, 2_000))
    879
    """
    if name in ("item-knn", "user-knn"):
        n = n_users if name == "user-knn" else n_items
        per_cell, fixed = PEAK_BYTES["knn"]
        return per_cell * n * min(candidates, n) / 2**20 + fixed
    if name == "autorec":
        per_cell, fixed = PEAK_BYTES["autorec"]
        return per_cell * n_users * n_items / 2**20 + fixed
    return 0.0


def _shrunk_pearson_neighbours(x: sp.csr_matrix, m: sp.csr_matrix, shrinkage: float,
                               candidates: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each column entity's ``candidates`` most similar entities by shrunk Pearson-baseline similarity, best first.

    ``x`` holds residuals and ``m`` ones over (other side, entity). The similarity of entities ``a`` and ``b`` is
    ``sum x_a x_b / sqrt(sum x_a^2 * sum x_b^2)`` over their common rows, shrunk by ``(n-1) / (n-1 + shrinkage)``
    with ``n`` the common rows; an entity is not its own neighbour. Computed in blocks of entities (sparse
    products, ``KNN_BLOCK_CELLS`` similarities at a time), so no entities x entities table is ever held: memory is
    the (entities x candidates) result plus one block.

    Returns:
        ``(neighbours int32, similarities float32)``, each (n_entities, min(candidates, n_entities)), sorted by
        similarity (descending; ties in the order the partition left them).
    """
    n = x.shape[1]
    c = min(candidates, n)
    xt, mt, x2 = x.T.tocsr(), m.T.tocsr(), x.multiply(x).tocsr()
    x2t = x2.T.tocsr()
    nb_out = np.empty((n, c), np.int32)
    sim_out = np.empty((n, c), np.float32)
    step = max(1, KNN_BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        num = (xt[start:stop] @ x).toarray()
        sq_a = (x2t[start:stop] @ m).toarray()  # sum over common rows of x_a^2 (a in the block)
        sq_b = (mt[start:stop] @ x2).toarray()  # sum over common rows of x_b^2
        common = (mt[start:stop] @ m).toarray()
        den = np.sqrt(sq_a * sq_b)
        del sq_a, sq_b
        with np.errstate(divide="ignore", invalid="ignore"):
            sim = np.where(den > 0, num / den, 0.0)
        del num, den
        shared = np.maximum(common - 1, 0)
        sim *= shared / (shared + shrinkage)
        del common, shared
        sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if c < n:
            nb = np.argpartition(-sim, c - 1, axis=1)[:, :c]
        else:
            nb = np.tile(np.arange(n), (stop - start, 1))
        nb_sim = np.take_along_axis(sim, nb, axis=1)
        order = np.argsort(-nb_sim, axis=1, kind="stable")
        nb_out[start:stop] = np.take_along_axis(nb, order, axis=1)
        sim_out[start:stop] = np.take_along_axis(nb_sim, order, axis=1)
    return nb_out, sim_out


class KNNBaseline:
    """kNN on baseline residuals with shrunk Pearson-baseline similarity (Koren 2008; surprise's KNNBaseline).

    ``r(u,i) = b_ui + sum_{j in N^k_i(u)} s_ij (r_uj - b_uj) / sum_{j in N^k_i(u)} s_ij`` over the ``k``
    most similar items ``j`` that ``u`` rated, positive similarities only. ``user_based=True`` swaps the
    roles of users and items. Each entity keeps its ``candidates`` most similar neighbours.
    """

    def __init__(self, *, user_based: bool = False, k: int = 40, shrinkage: float = 100.0,
                 candidates: int = 1000) -> None:  # fmt: skip
        self.user_based = user_based
        self.name = "user-knn" if user_based else "item-knn"
        self.k = k
        self.shrinkage = shrinkage
        self.candidates = candidates
        self.best_epoch_ = 0
        self.history_: list[dict] = []
        self.tensors_: dict[str, np.ndarray] = {}
        self._resid: sp.csr_matrix | None = None

    def fit(self, data: FitData, generator: torch.Generator) -> "KNNBaseline":
        tr = data.train
        mu, bu, bi = baseline_biases(tr, data.n_users, data.n_items)
        resid = tr.ratings - mu - bu[tr.users] - bi[tr.items]
        # rows: the "other side" (users for item-kNN); columns: entities whose similarity we need
        rows, cols, n_rows, n_cols = (
            (tr.items, tr.users, data.n_items, data.n_users)
            if self.user_based
            else (tr.users, tr.items, data.n_users, data.n_items)
        )
        x = sp.csr_matrix((resid, (rows, cols)), shape=(n_rows, n_cols), dtype=np.float64)
        m = sp.csr_matrix((np.ones(len(tr)), (rows, cols)), shape=(n_rows, n_cols), dtype=np.float64)
        nb, nb_sim = _shrunk_pearson_neighbours(x, m, self.shrinkage, self.candidates)
        self.tensors_ = {
            "mu": np.array([mu]), "user_bias": bu, "item_bias": bi,
            "neighbors": nb.astype(np.int32), "neighbor_sims": nb_sim.astype(np.float32),
            "train_users": tr.users.astype(np.int64), "train_items": tr.items.astype(np.int64),
            "train_ratings": tr.ratings.astype(np.float64),
        }  # fmt: skip
        self._resid = None
        return self

    def _residuals(self) -> sp.csr_matrix:
        """Residual matrix indexed [other side, entity] with +1e-9 so that rated-and-zero stays visible."""
        if self._resid is None:
            t = self.tensors_
            u, i, r = t["train_users"], t["train_items"], t["train_ratings"]
            res = r - float(t["mu"][0]) - t["user_bias"][u] - t["item_bias"][i]
            rows, cols = (i, u) if self.user_based else (u, i)
            n_rows = len(t["item_bias"]) if self.user_based else len(t["user_bias"])
            n_cols = len(t["user_bias"]) if self.user_based else len(t["item_bias"])
            self._resid = sp.csr_matrix((res + 1e-9, (rows, cols)), shape=(n_rows, n_cols))
        return self._resid

    def predict(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        t = self.tensors_
        pred = float(t["mu"][0]) + _lookup(t["user_bias"], users) + _lookup(t["item_bias"], items)
        owner, entity = (items, users) if self.user_based else (users, items)
        ok = np.flatnonzero((owner >= 0) & (entity >= 0))
        if len(ok) == 0:
            return pred
        resid = self._residuals()
        order = ok[np.argsort(owner[ok], kind="stable")]
        chunk = max(1, 2_000_000 // resid.shape[1])
        owners_sorted = owner[order]
        bounds = np.searchsorted(owners_sorted, np.unique(owners_sorted))
        uniq = owners_sorted[bounds]
        for start in range(0, len(uniq), chunk):
            block = uniq[start : start + chunk]
            dense = resid[block].toarray()
            lo = bounds[start]
            hi = bounds[start + chunk] if start + chunk < len(bounds) else len(order)
            piece = max(1, KNN_BLOCK_CELLS // max(t["neighbors"].shape[1], 1))  # (rows x candidates) at once
            for p0 in range(lo, hi, piece):
                rows = order[p0 : min(hi, p0 + piece)]
                local = np.searchsorted(block, owner[rows])
                nb = t["neighbors"][entity[rows]]
                s = t["neighbor_sims"][entity[rows]].astype(np.float64)
                vals = dense[local[:, None], nb]
                use = (vals != 0) & (s > 0)
                use &= np.cumsum(use, axis=1) <= self.k
                ws = np.where(use, s, 0.0)
                den = ws.sum(1)
                num = (ws * vals).sum(1)
                pred[rows] += np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        return pred

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        meta = {"user_based": self.user_based, "k": self.k, "shrinkage": self.shrinkage, "candidates": self.candidates}
        return dict(self.tensors_), meta

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> "KNNBaseline":
        model = cls(**meta)
        model.tensors_ = dict(tensors)
        return model


# ---------------------------------------------------------------------- I-AutoRec


#: Items x users cells of AutoRec's reconstructions computed at once when predicting (4 MiB of float32).
AUTOREC_BLOCK_CELLS = 1 << 20


def _pairs_by_item_block(items: np.ndarray, users: np.ndarray, n_users: int,
                         reconstruct: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:  # fmt: skip
    """``reconstruct(block)[item, user]`` for each (item, user) pair, as float64, reconstructing a block of the
    pairs' distinct items at a time (``AUTOREC_BLOCK_CELLS`` cells), so no items x users table is held."""
    out = np.empty(len(items), np.float64)
    if len(items) == 0:
        return out
    uniq, inverse = np.unique(items, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    sorted_inverse = inverse[order]
    step = max(1, AUTOREC_BLOCK_CELLS // max(n_users, 1))
    for start in range(0, len(uniq), step):
        block = uniq[start : start + step]
        lo, hi = np.searchsorted(sorted_inverse, [start, start + len(block)])
        rows = order[lo:hi]
        out[rows] = reconstruct(block)[inverse[rows] - start, users[rows]]
    return out


@dataclass(frozen=True)
class AutoRecSettings:
    """Settings of :class:`AutoRec`."""

    hidden: int = 500
    epochs: int = 200
    learning_rate: float = 0.001
    reg: float = 1.0
    batch_size: int = 64
    patience: int = 10
    patience_ratings: int | None = None


class AutoRec:
    """Item-based AutoRec: each item's vector of user ratings is encoded (sigmoid) and decoded (identity).

    Loss: squared error on observed ratings plus ``reg / 2 * (||V||^2 + ||W||^2)`` per item batch
    (Sedhain et al. 2015). Prediction for ``(u, i)`` is the ``u``-th output of item ``i``'s reconstruction;
    unknown users or items fall back to ``mu + b_u + b_i`` baselines.
    """

    name: ClassVar[str] = "autorec"

    def __init__(self, settings: AutoRecSettings | None = None) -> None:
        self.settings = settings or AutoRecSettings()
        self.best_epoch_ = 0
        self.history_: list[dict] = []
        self.tensors_: dict[str, np.ndarray] = {}
        self._x: sp.csr_matrix | None = None

    def fit(self, data: FitData, generator: torch.Generator) -> "AutoRec":
        s = self.settings
        tr = data.train
        n_u, n_i = data.n_users, data.n_items
        mu, bu, bi = baseline_biases(tr, n_u, n_i)
        # the items x users ratings and their mask stay sparse; a batch of items is made dense when it is used
        x_sp = sp.csr_matrix((tr.ratings.astype(np.float32), (tr.items, tr.users)), shape=(n_i, n_u))
        m_sp = sp.csr_matrix((np.ones(len(tr), np.float32), (tr.items, tr.users)), shape=(n_i, n_u))

        def rows(table: sp.csr_matrix, idx: Any) -> torch.Tensor:
            return torch.from_numpy(table[np.asarray(idx)].toarray())

        g = generator
        enc = torch.nn.Linear(n_u, s.hidden)
        dec = torch.nn.Linear(s.hidden, n_u)
        with torch.no_grad():
            for layer in (enc, dec):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
                layer.bias.zero_()
        params = [*enc.parameters(), *dec.parameters()]
        opt = torch.optim.Adam(params, lr=s.learning_rate)
        fixed = data.epochs.get(self.name)
        epochs = fixed if fixed is not None else s.epochs
        lo, hi = data.clip
        vu, vi = data.valid.users, data.valid.items
        best_rmse, best_state, best_epoch = np.inf, None, 0
        self.history_ = []
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(n_i, generator=g)
            total = 0.0
            for start in range(0, n_i, s.batch_size):
                idx = perm[start : start + s.batch_size]
                xb = rows(x_sp, idx)
                out = dec(torch.sigmoid(enc(xb)))
                sse = (((out - xb) * rows(m_sp, idx)) ** 2).sum()
                total += float(sse.detach())
                # the paper's objective, with the weight penalty spread evenly over the item batches
                weights = (enc.weight**2).sum() + (dec.weight**2).sum()
                loss = (sse + s.reg / 2 * len(idx) / n_i * weights) / len(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            entry = {"epoch": epoch, "train_rmse": float(np.sqrt(total / max(len(tr), 1))), "valid_rmse": None}
            self.history_.append(entry)
            if fixed is not None or len(data.valid) == 0:
                best_epoch = epoch
                continue
            known = (vu >= 0) & (vi >= 0)
            with torch.no_grad():  # the reconstructions of the validation items, a block of items at a time
                out = _pairs_by_item_block(vi[known], vu[known], n_u,
                                           lambda blk: dec(torch.sigmoid(enc(rows(x_sp, blk)))).numpy())  # fmt: skip
            pv = mu + _lookup(bu, vu) + _lookup(bi, vi)
            pv[known] = out
            score = rmse(data.valid.ratings, np.clip(pv, lo, hi))
            entry["valid_rmse"] = score
            if score < best_rmse:
                best_rmse, best_epoch = score, epoch
                best_state = [t.detach().clone() for t in params]
            elif stop := early_stop(epoch, best_epoch, len(tr), s.patience, s.patience_ratings):
                logger.info("autorec: %s", stop)
                break
        if best_state is not None:
            with torch.no_grad():
                for t, b in zip(params, best_state):
                    t.copy_(b)
        self.best_epoch_ = best_epoch
        self.tensors_ = {
            "mu": np.array([mu]), "user_bias": bu, "item_bias": bi,
            "enc_weight": _np(enc.weight), "enc_bias": _np(enc.bias),
            "dec_weight": _np(dec.weight), "dec_bias": _np(dec.bias),
            "train_users": tr.users.astype(np.int64), "train_items": tr.items.astype(np.int64),
            "train_ratings": tr.ratings.astype(np.float64),
        }  # fmt: skip
        self._x = None
        logger.debug("autorec: best epoch %d, valid RMSE %.4f", best_epoch, best_rmse)
        return self

    def _reconstruct(self, block: np.ndarray) -> np.ndarray:
        """(len(block), n_users) float32 reconstructions of the items in ``block``."""
        t = self.tensors_
        if self._x is None:  # the train ratings as a sparse items x users matrix (never a dense one)
            shape = (len(t["item_bias"]), len(t["user_bias"]))
            self._x = sp.csr_matrix((t["train_ratings"].astype(np.float32), (t["train_items"], t["train_users"])),
                                    shape=shape)  # fmt: skip
        x = self._x[block].toarray()
        h = expit(x @ t["enc_weight"].T + t["enc_bias"])
        return h @ t["dec_weight"].T + t["dec_bias"]

    def predict(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        t = self.tensors_
        pred = float(t["mu"][0]) + _lookup(t["user_bias"], users) + _lookup(t["item_bias"], items)
        ok = (users >= 0) & (items >= 0)
        pred[ok] = _pairs_by_item_block(items[ok], users[ok], len(t["user_bias"]), self._reconstruct)
        return pred

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return dict(self.tensors_), {"best_epoch": self.best_epoch_, "settings": self.settings.__dict__}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> "AutoRec":
        model = cls(AutoRecSettings(**meta["settings"]))
        model.tensors_ = dict(tensors)
        model.best_epoch_ = int(meta["best_epoch"])
        return model


#: Component classes by kind, for loading.
COMPONENTS: dict[str, type[MF] | type[SVDpp] | type[KNNBaseline] | type[AutoRec]] = {
    "mf": MF, "svdpp": SVDpp, "knn": KNNBaseline, "autorec": AutoRec,
}  # fmt: skip
