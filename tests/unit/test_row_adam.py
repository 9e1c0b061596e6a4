"""Lazy Adam over table rows (:class:`RowAdam`) and the per-batch implicit sums of SVD++: the same numbers as the
library's versions (``torch.optim.SparseAdam``, a full sparse product), at a cost that grows with the batch."""

import numpy as np
import scipy.sparse as sp
import torch

from segmentation._predict_components import FitData, SVDpp, SVDppSettings, _CsrRows
from segmentation._predict_mf import Ratings, RowAdam


def test_row_adam_matches_torch_sparse_adam() -> None:
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(50, 4, generator=gen)
    mine = start.clone()
    theirs = torch.nn.Parameter(start.clone())
    adam = RowAdam({"t": mine}, lr=0.05)
    reference = torch.optim.SparseAdam([theirs], lr=0.05)
    target = torch.randn(50, 4, generator=gen)
    for _ in range(6):
        idx = torch.randint(0, 20, (16,), generator=gen)  # rows 20-49 are never read
        rows = adam.rows("t", adam.gather("t", idx))
        ((rows - target[idx]) ** 2).sum().backward()
        adam.step()
        reference.zero_grad()
        ((torch.nn.functional.embedding(idx, theirs, sparse=True) - target[idx]) ** 2).sum().backward()
        reference.step()
    torch.testing.assert_close(mine, theirs.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(mine[:20], start[:20])
    assert torch.equal(mine[20:], start[20:])  # a row no batch read is left as it was, moments included


def test_csr_rows_sum_equals_the_sparse_product() -> None:
    rng = np.random.default_rng(1)
    matrix = sp.random(30, 12, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    table = torch.randn(12, 5)
    users = torch.tensor([4, 4, 0, 29, 17, 4])
    items, weights, offsets, distinct, inverse = _CsrRows(matrix).rows(users)
    sums = torch.nn.functional.embedding_bag(items, table, offsets, mode="sum", per_sample_weights=weights)[inverse]
    expected = torch.as_tensor(matrix[users.numpy()].toarray()) @ table
    torch.testing.assert_close(sums, expected, rtol=1e-5, atol=1e-6)
    assert distinct.tolist() == [0, 4, 17, 29]


def test_svdpp_training_leaves_rows_of_unseen_users_and_items_alone() -> None:
    # training reads and writes only the rows its batches gather: users and items with no training row keep their
    # initial factors and zero biases, and the model still learns from the rest
    rng = np.random.default_rng(2)
    n_users, n_items = 40, 30
    users = rng.integers(0, 30, 600)  # users 30-39 and items 25-29 have no training row
    items = rng.integers(0, 25, 600)
    ratings = np.clip(3 + (users % 3) - (items % 2) + rng.normal(0, 0.3, 600), 1, 5)
    train = Ratings(users[:500], items[:500], ratings[:500])
    valid = Ratings(users[500:], items[500:], ratings[500:])
    data = FitData(train, valid, n_users, n_items, (1.0, 5.0))
    settings = SVDppSettings(embedding_size=4, epochs=15, learning_rate=0.05, batch_size=64, side_features=False)
    model = SVDpp(settings).fit(data, torch.Generator().manual_seed(0))
    init = torch.randn(n_users, 4, generator=torch.Generator().manual_seed(0)) * settings.init_std
    np.testing.assert_array_equal(model.tensors_["user_vec"][30:], init[30:].numpy())
    assert not np.allclose(model.tensors_["user_vec"][:30], init[:30].numpy())
    assert np.all(model.tensors_["user_bias"][30:] == 0) and np.all(model.tensors_["item_bias"][25:] == 0)
    mean_only = np.sqrt(np.mean((valid.ratings - train.ratings.mean()) ** 2))
    assert model.history_[model.best_epoch_ - 1]["valid_rmse"] < 0.7 * mean_only
