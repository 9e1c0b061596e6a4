"""Biased matrix factorisation in PyTorch: the parameters, the training loop and the fine-tuning strategies.

The model is ``r(u, i) = mu + b_u + b_i + p_u . q_i`` (Koren, Bell & Volinsky, "Matrix factorization
techniques for recommender systems", IEEE Computer 2009). Parameters live in :class:`MFParams` as
float32 numpy arrays; inference runs in numpy float64 so that a saved and reloaded model predicts
bit-identically. Training uses torch with a seeded ``torch.Generator`` and Adam (lazy Adam, :class:`RowAdam`, for
the global model, so that a step costs its batch and not the tables), with per-example L2
regularisation (rows seen in a batch are penalised), and keeps the epoch with the best validation RMSE.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from segmentation._metrics import rmse

__all__ = ["FINETUNE_STRATEGIES", "MFParams", "Ratings", "RowAdam", "early_stop", "finetune_mf", "train_mf"]

logger = logging.getLogger(__name__)

#: Per-segment fine-tuning strategies, in the order they are tried.
FINETUNE_STRATEGIES = ("bias+lowrank-delta", "full-l2")


@dataclass(frozen=True)
class Ratings:
    """Encoded ratings: contiguous user and item numbers with their ratings.

    Attributes:
        users: (n,) int64 user numbers (-1 = unknown).
        items: (n,) int64 item numbers (-1 = unknown).
        ratings: (n,) float64 ratings (NaN where not known).
        times: (n,) int64 epoch seconds, or None.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, mask: np.ndarray) -> "Ratings":
        """The rows where ``mask`` (bool or index array) selects."""
        times = self.times[mask] if self.times is not None else None
        return Ratings(self.users[mask], self.items[mask], self.ratings[mask], times)


@dataclass(frozen=True)
class MFParams:
    """Parameters of one biased MF model (float32 arrays, float64 global mean).

    Attributes:
        mu: global mean rating.
        user_factors: (n_users, k) float32.
        item_factors: (n_items, k) float32.
        user_bias: (n_users,) float32.
        item_bias: (n_items,) float32.
    """

    mu: float
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Unclipped predictions in float64; a user or item number of -1 (unknown) contributes nothing.

        Args:
            users: (n,) int64 user numbers, -1 for unknown.
            items: (n,) int64 item numbers, -1 for unknown.

        Returns:
            (n,) float64.
        """
        ku, ki = users >= 0, items >= 0
        u, i = np.where(ku, users, 0), np.where(ki, items, 0)
        bu = np.where(ku, self.user_bias[u].astype(np.float64), 0.0)
        bi = np.where(ki, self.item_bias[i].astype(np.float64), 0.0)
        dot = np.einsum("nk,nk->n", self.user_factors[u].astype(np.float64), self.item_factors[i].astype(np.float64))
        return self.mu + bu + bi + np.where(ku & ki, dot, 0.0)

    def tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays by name, for safetensors (``mu`` as a one-element float64 array)."""
        return {
            f"{prefix}mu": np.array([self.mu], dtype=np.float64),
            f"{prefix}user_factors": np.ascontiguousarray(self.user_factors, dtype=np.float32),
            f"{prefix}item_factors": np.ascontiguousarray(self.item_factors, dtype=np.float32),
            f"{prefix}user_bias": np.ascontiguousarray(self.user_bias, dtype=np.float32),
            f"{prefix}item_bias": np.ascontiguousarray(self.item_bias, dtype=np.float32),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str = "") -> "MFParams":
        """Inverse of :meth:`tensors`."""
        return cls(
            mu=float(tensors[f"{prefix}mu"][0]),
            user_factors=tensors[f"{prefix}user_factors"],
            item_factors=tensors[f"{prefix}item_factors"],
            user_bias=tensors[f"{prefix}user_bias"],
            item_bias=tensors[f"{prefix}item_bias"],
        )


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser settings of one training run (a subset of ``PredictorConfig``)."""

    epochs: int
    learning_rate: float
    reg: float
    bias_reg: float
    batch_size: int
    patience: int
    min_delta: float = 0.0
    patience_ratings: int | None = None


def early_stop(epoch: int, best_epoch: int, n_train: int, patience: int, patience_ratings: int | None) -> str | None:
    """Which bound stops training after ``epoch``, or None to go on.

    Training stops when ``patience`` epochs, or ``patience_ratings`` training ratings (``n_train`` per epoch; None:
    no such bound), have passed since ``best_epoch`` without a better validation RMSE. The ratings bound lets a large
    log stop sooner: one worse epoch over millions of validation ratings is already clear evidence, where a small
    log needs several.

    Returns:
        None, or a sentence for the log naming the bound that stopped it.
    """
    since = epoch - best_epoch
    if since < 1:
        return None
    seen = since * n_train
    if since >= patience:
        return (f"{since} epochs ({seen:,} training ratings) past the best epoch {best_epoch} without a better "
                f"validation RMSE: stopped by patience = {patience} epochs")  # fmt: skip
    if patience_ratings is not None and seen >= patience_ratings:
        return (f"{since} epoch{'s' if since > 1 else ''} ({seen:,} training ratings) past the best epoch "
                f"{best_epoch} without a better validation RMSE: stopped by patience_ratings = {patience_ratings:,} "
                f"before patience = {patience} epochs")  # fmt: skip
    return None


class RowAdam:
    """Adam over the rows of several tables that a step touches ("lazy" Adam, as
    :class:`torch.optim.SparseAdam`: a row's moments move only when a batch reads it).

    A step gathers each table's rows into a small leaf tensor (:meth:`gather`), the loss is computed from those, and
    :meth:`step` applies the update to the gathered rows. Its cost grows with the rows a batch touches, not with the
    tables. (``SparseAdam`` with sparse embedding gradients computes the same update, measured 2.3x slower than dense
    Adam here on 2 CPU cores, from coalescing the sparse gradients.) It has :meth:`zero_grad` and :meth:`step`, so
    :func:`_fit_loop` drives it like a torch optimiser.
    """

    def __init__(self, tables: dict[str, torch.Tensor], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:  # fmt: skip
        self.tables = tables
        self.lr, self.betas, self.eps = lr, betas, eps
        self.moments = {name: (torch.zeros_like(t), torch.zeros_like(t)) for name, t in tables.items()}
        self.steps = dict.fromkeys(tables, 0)
        self._gathered: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def gather(self, name: str, index: torch.Tensor) -> torch.Tensor:
        """Gather the rows ``index`` of table ``name`` (once per step and table); returns each entry's row in
        :meth:`leaf`."""
        rows, inverse = torch.unique(index, return_inverse=True)
        self._gathered[name] = (rows, self.tables[name][rows].clone().requires_grad_(True))
        return inverse

    def leaf(self, name: str) -> torch.Tensor:
        """The gathered rows of table ``name`` (what the loss is computed from)."""
        return self._gathered[name][1]

    def rows(self, name: str, inverse: torch.Tensor) -> torch.Tensor:
        """The gathered rows at ``inverse``, as :meth:`gather` returned it."""
        return self._gathered[name][1][inverse]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: each step's gradients live on the rows it gathered."""

    def step(self) -> None:
        """One Adam update of every gathered row from its gradient; then the gathered rows are dropped."""
        b1, b2 = self.betas
        with torch.no_grad():
            for name, (rows, leaf) in self._gathered.items():
                if leaf.grad is None:
                    continue
                self.steps[name] += 1
                t = self.steps[name]
                grad = leaf.grad
                m_all, v_all = self.moments[name]
                m = m_all[rows].mul_(b1).add_(grad, alpha=1 - b1)
                v = v_all[rows].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                m_all[rows], v_all[rows] = m, v
                denom = (v / (1 - b2**t)).sqrt_().add_(self.eps)
                self.tables[name][rows] -= (self.lr / (1 - b1**t)) * m / denom
        self._gathered = {}


#: A forward function: (user nums, item nums) tensors -> (prediction tensor, penalty tensor).
Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _as_tensors(data: Ratings, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(data.users, dtype=torch.long, device=device),
        torch.tensor(data.items, dtype=torch.long, device=device),
        torch.tensor(data.ratings, dtype=torch.float32, device=device),
    )


def _fit_loop(
    forward: Forward,
    parameters: list[torch.nn.Parameter],
    snapshot: Callable[[], MFParams],
    train: Ratings,
    valid: Ratings,
    settings: TrainSettings,
    *,
    generator: torch.Generator,
    clip: tuple[float, float],
    device: str,
    what: str,
    optimiser: "RowAdam | None" = None,
    stop_level: int = logging.DEBUG,
) -> tuple[MFParams, list[dict], int]:
    """Adam over shuffled mini-batches, early-stopped on validation RMSE; returns the best snapshot.

    Args:
        forward: computes predictions and the regularisation penalty of a batch.
        parameters: what Adam updates.
        snapshot: materialises the current parameters as :class:`MFParams` (used for validation too).
        train: training rows.
        valid: validation rows for early stopping (if empty, the last epoch is kept).
        settings: epochs, learning rate, batch size, patience (in epochs and in training ratings, see
            :func:`early_stop`).
        generator: seeded torch generator for shuffling.
        clip: rating range for validation predictions.
        device: torch device.
        what: a name for log messages.
        optimiser: a :class:`RowAdam` that ``forward`` gathers its rows from, instead of Adam over ``parameters``.
        stop_level: the log level of the line saying which bound stopped training early.

    Returns:
        The best parameters, the per-epoch history and the best epoch (1-based; 0 = before training).
    """
    opt = optimiser if optimiser is not None else torch.optim.Adam(parameters, lr=settings.learning_rate)
    tu, ti, tr = _as_tensors(train, device)
    n = len(train)
    lo, hi = clip
    best = snapshot()
    best_rmse = rmse(valid.ratings, np.clip(best.predict(valid.users, valid.items), lo, hi)) if len(valid) else np.inf
    best_epoch = 0
    history: list[dict] = [{"epoch": 0, "train_rmse": None, "valid_rmse": best_rmse if len(valid) else None}]
    t0 = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        perm = torch.randperm(n, generator=generator).to(device)
        sse = 0.0
        for start in range(0, n, settings.batch_size):
            idx = perm[start : start + settings.batch_size]
            pred, penalty = forward(tu[idx], ti[idx])
            err = pred - tr[idx]
            loss = (err**2).mean() + penalty
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sse += float((err.detach() ** 2).sum())
        current = snapshot()
        train_rmse = float(np.sqrt(sse / max(n, 1)))
        if len(valid):
            valid_rmse = rmse(valid.ratings, np.clip(current.predict(valid.users, valid.items), lo, hi))
        else:
            valid_rmse = float("nan")
        history.append({"epoch": epoch, "train_rmse": train_rmse, "valid_rmse": valid_rmse if len(valid) else None})
        logger.debug("%s epoch %d: train RMSE %.4f, valid RMSE %.4f", what, epoch, train_rmse, valid_rmse)
        if not len(valid) or valid_rmse < best_rmse - settings.min_delta:
            best, best_rmse, best_epoch = current, valid_rmse, epoch
        elif stop := early_stop(epoch, best_epoch, n, settings.patience, settings.patience_ratings):
            logger.log(stop_level, "%s: %s", what, stop)
            break
    logger.debug("%s: best epoch %d of %d, valid RMSE %.4f, %.2f s", what, best_epoch, len(history) - 1, best_rmse,
                 time.perf_counter() - t0)  # fmt: skip
    return best, history, best_epoch


def train_mf(
    train: Ratings,
    valid: Ratings,
    n_users: int,
    n_items: int,
    *,
    embedding_size: int,
    settings: TrainSettings,
    generator: torch.Generator,
    clip: tuple[float, float],
    device: str = "cpu",
    init_std: float = 0.1,
) -> tuple[MFParams, list[dict], int]:
    """Fit a biased MF from scratch.

    Args:
        train: training rows (numbers < ``n_users``/``n_items``).
        valid: early-stopping rows.
        n_users: rows of the user tables.
        n_items: rows of the item tables.
        embedding_size: number of latent factors ``k``.
        settings: optimiser settings.
        generator: seeded generator (initialisation and shuffling).
        clip: rating range.
        device: torch device.
        init_std: standard deviation of the initial factors.

    Returns:
        Best parameters, per-epoch history, best epoch.
    """
    mu = float(np.mean(train.ratings)) if len(train) else 0.0
    k = embedding_size
    p = (torch.randn(n_users, k, generator=generator) * init_std).to(device)
    q = (torch.randn(n_items, k, generator=generator) * init_std).to(device)
    bu = torch.zeros(n_users, device=device)
    bi = torch.zeros(n_items, device=device)
    # lazy Adam: a step costs the batch's rows, not the tables (dense Adam made an epoch grow with users x batches)
    adam = RowAdam({"p": p, "q": q, "bu": bu, "bi": bi}, lr=settings.learning_rate)

    def forward(u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ru, ri = adam.gather("p", u), adam.gather("q", i)
        pu, qi = adam.rows("p", ru), adam.rows("q", ri)
        bu_u, bi_i = adam.rows("bu", adam.gather("bu", u)), adam.rows("bi", adam.gather("bi", i))
        pred = mu + bu_u + bi_i + (pu * qi).sum(1)
        penalty = settings.reg * ((pu**2).sum(1) + (qi**2).sum(1)).mean()
        penalty = penalty + settings.bias_reg * (bu_u**2 + bi_i**2).mean()
        return pred, penalty

    def snapshot() -> MFParams:
        with torch.no_grad():
            return MFParams(mu, _np(p), _np(q), _np(bu), _np(bi))

    return _fit_loop(forward, [], snapshot, train, valid, settings, generator=generator, clip=clip, device=device,
                     what="global MF", optimiser=adam, stop_level=logging.INFO)  # fmt: skip


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def finetune_mf(
    base: MFParams,
    train: Ratings,
    valid: Ratings,
    *,
    strategy: str,
    rank: int,
    settings: TrainSettings,
    generator: torch.Generator,
    clip: tuple[float, float],
    shrink: float = 0.0,
    device: str = "cpu",
) -> tuple[MFParams, list[dict], int]:
    """Fine-tune a copy of ``base`` on one segment's rows; ``base`` is not modified.

    Strategies:

    - ``bias+lowrank-delta``: the global parameters stay frozen; learned are a segment offset, user and
      item bias deltas and a rank-``rank`` delta ``A B`` on the item factors, all L2-penalised towards 0:
      ``r = mu + c + (b_u + d_u) + (b_i + d_i) + p_u . (q_i + a_i B)``.
    - ``full-l2``: every parameter is trainable, with an L2 pull ``reg * ||theta - theta_global||^2`` on the
      rows a batch touches, so the copy stays close to the global model.

    Both materialise to plain :class:`MFParams`, so a segment model predicts like a global one.

    Args:
        base: the global model's parameters.
        train: the segment's training rows.
        valid: the segment's early-stopping rows (epoch 0 = the global model itself).
        strategy: one of :data:`FINETUNE_STRATEGIES`.
        rank: rank of the item-factor delta (``bias+lowrank-delta``).
        settings: optimiser settings (``reg`` is the pull / delta penalty).
        generator: seeded generator.
        clip: rating range.
        shrink: ``full-l2`` only: the global model's own L2 on the factors, kept so a small segment does
            not pull them apart.
        device: torch device.

    Returns:
        Best parameters (the global ones if no epoch beat them on ``valid``), history, best epoch.
    """
    if strategy not in FINETUNE_STRATEGIES:
        raise ValueError(f"unknown fine-tuning strategy {strategy!r}; expected one of {list(FINETUNE_STRATEGIES)}")
    g_p = torch.as_tensor(base.user_factors, device=device)
    g_q = torch.as_tensor(base.item_factors, device=device)
    g_bu = torch.as_tensor(base.user_bias, device=device)
    g_bi = torch.as_tensor(base.item_bias, device=device)
    mu = base.mu
    reg = settings.reg

    if strategy == "bias+lowrank-delta":
        k = g_q.shape[1]
        c = torch.nn.Parameter(torch.zeros((), device=device))
        du = torch.nn.Parameter(torch.zeros_like(g_bu))
        di = torch.nn.Parameter(torch.zeros_like(g_bi))
        a = torch.nn.Parameter(torch.zeros(g_q.shape[0], rank, device=device))
        b = torch.nn.Parameter((torch.randn(rank, k, generator=generator) * 0.1).to(device))
        params = [c, du, di, a, b]

        def forward(u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            du_u, di_i, a_i = du[u], di[i], a[i]
            q_i = g_q[i] + a_i @ b
            pred = mu + c + g_bu[u] + du_u + g_bi[i] + di_i + (g_p[u] * q_i).sum(1)
            penalty = reg * ((du_u**2) + (di_i**2) + (a_i**2).sum(1)).mean() + reg * (b**2).sum() / max(len(train), 1)
            return pred, penalty

        def snapshot() -> MFParams:
            with torch.no_grad():
                cc = float(c)
                return MFParams(mu + cc, base.user_factors, _np(g_q + a @ b), _np(g_bu + du), _np(g_bi + di))

    else:  # full-l2
        p = torch.nn.Parameter(g_p.clone())
        q = torch.nn.Parameter(g_q.clone())
        bu = torch.nn.Parameter(g_bu.clone())
        bi = torch.nn.Parameter(g_bi.clone())
        params = [p, q, bu, bi]

        def forward(u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pu, qi, bu_u, bi_i = p[u], q[i], bu[u], bi[i]
            pred = mu + bu_u + bi_i + (pu * qi).sum(1)
            pull = (
                ((pu - g_p[u]) ** 2).sum(1)
                + ((qi - g_q[i]) ** 2).sum(1)
                + (bu_u - g_bu[u]) ** 2
                + (bi_i - g_bi[i]) ** 2
            )
            # keep the global model's own shrinkage as well, so the copy does not overfit a small segment
            penalty_shrink = shrink * ((pu**2).sum(1) + (qi**2).sum(1)).mean()
            return pred, reg * pull.mean() + penalty_shrink

        def snapshot() -> MFParams:
            with torch.no_grad():
                return MFParams(mu, _np(p), _np(q), _np(bu), _np(bi))

    return _fit_loop(forward, params, snapshot, train, valid, settings, generator=generator, clip=clip,
                     device=device, what=f"fine-tune {strategy}")  # fmt: skip
