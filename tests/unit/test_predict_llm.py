"""The encoder regressor on a tiny synthetic split: it learns, it is seeded, it saves, it falls back, it refuses."""

import numpy as np
import polars as pl
import pytest

from segmentation._errors import ConfigError, DataError, NotFittedError, SchemaError
from segmentation.config import EncoderRegressorConfig
from segmentation.data import ITEMS, Split
from segmentation.predict import EncoderRegressor, fit_encoder_predictor, rmse

GENRES = ["Horror", "Comedy", "Western", "Musical"]
N_USERS, N_ITEMS = 24, 24

# Small and quick: ~250 training rows, short texts, a few dozen steps of the real MiniLM on the CPU.
CONFIG = EncoderRegressorConfig(device="cpu", threads=1, epochs=4, batch_size=32, max_seq_length=48, learning_rate=1e-4,
                                head_learning_rate=3e-3)  # fmt: skip


def _items() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(N_ITEMS)],
            "title": [f"{GENRES[i % 4]} film number {i}" for i in range(N_ITEMS)],
            "year": [1990 + i % 7 for i in range(N_ITEMS)],
            "categories": [[GENRES[i % 4]] for i in range(N_ITEMS)],
            "text": [""] * N_ITEMS,
        },
        schema=ITEMS,
    )


def _split(seed: int = 0) -> Split:
    """Each user loves one genre (5 stars) and dislikes the rest (1-2 stars): biases alone cannot tell."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, size=14, replace=False):
            liked = i % 4 == u % 4
            rows.append((f"u{u}", f"i{i}", 5.0 if liked else float(rng.choice([1.0, 2.0])), 1000 + len(rows)))
    frame = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    part = rng.permutation(frame.height)
    n_valid, n_test = frame.height // 6, frame.height // 6
    return Split(train=frame[part[n_valid + n_test :]], valid=frame[part[:n_valid]],
                 test=frame[part[n_valid : n_valid + n_test]], method="synthetic")  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> tuple[EncoderRegressor, Split]:
    split = _split()
    return fit_encoder_predictor(split, _items(), CONFIG, seed=3), split


def test_learns_beyond_the_global_mean_and_the_biases(fitted):
    model, split = fitted
    y = split.valid["rating"].to_numpy()
    mean_rmse = rmse(y, np.full(len(y), split.train["rating"].mean()))
    assert model.valid_rmse_["model"] < mean_rmse
    assert model.valid_rmse_["model"] < model.valid_rmse_["biases"] - 0.05
    assert model.best_step_ > 0
    test_y = split.test["rating"].to_numpy()
    pred = model.predict(split.test)
    assert rmse(test_y, pred) < rmse(test_y, np.full(len(test_y), split.train["rating"].mean()))
    assert pred.min() >= 1.0 and pred.max() <= 5.0
    summary = model.summary()
    assert summary["model"] == "encoder-regressor" and summary["history"][0]["step"] == 0


def test_same_seed_same_predictions():
    split = _split()
    cfg = CONFIG.model_copy(update={"epochs": 1})
    a = fit_encoder_predictor(split, _items(), cfg, seed=7, max_train_rows=96)
    b = fit_encoder_predictor(split, _items(), cfg, seed=7, max_train_rows=96)
    assert a.n_train_rows_ == 96
    np.testing.assert_array_equal(a.predict(split.test), b.predict(split.test))


def test_save_load_round_trip(fitted, tmp_path):
    model, split = fitted
    model.save(tmp_path / "m", include_encoder=False)
    loaded = EncoderRegressor.load(tmp_path / "m")
    np.testing.assert_array_equal(model.predict(split.test), loaded.predict(split.test))
    assert loaded.valid_rmse_ == model.valid_rmse_ and loaded.best_step_ == model.best_step_
    assert not any(p.suffix in (".pkl", ".pickle", ".pt") for p in (tmp_path / "m").iterdir())


def test_loads_a_model_saved_with_the_flat_predictor_config_of_segflow_0_1(fitted, tmp_path):
    import json

    model, split = fitted
    model.save(tmp_path / "m", include_encoder=False)
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    # what segflow 0.1 wrote: the whole flat PredictorConfig, the regressor's settings prefixed encoder_
    manifest["config"] = {"model": "blend", "epochs": 100, "refit": CONFIG.refit, "device": "cpu", "threads": 1,
                          "encoder_model": CONFIG.model, "encoder_epochs": 4, "encoder_learning_rate": 1e-4,
                          "encoder_head_learning_rate": 3e-3, "encoder_batch_size": 32, "encoder_max_seq_length": 48,
                          "encoder_max_train_rows": None, "finetune": True, "gate_level": 0.95}  # fmt: skip
    path.write_text(json.dumps(manifest))
    loaded = EncoderRegressor.load(tmp_path / "m")
    assert loaded.config == CONFIG
    np.testing.assert_array_equal(model.predict(split.test), loaded.predict(split.test))


def test_unknown_users_and_items_fall_back_to_the_biases(fitted):
    model, split = fitted
    known_user, known_item = split.train["user_id"][0], split.train["item_id"][0]
    frame = pl.DataFrame({"user_id": [known_user, "nobody", "nobody"], "item_id": ["nothing", known_item, "nothing"]})
    pred = model.predict(frame)
    u = model.user_vocab_.lookup([known_user])[0]
    i = model.item_vocab_.lookup([known_item])[0]
    lo, hi = model.rating_range_
    np.testing.assert_allclose(pred, np.clip([model.mu_ + model.user_bias_[u], model.mu_ + model.item_bias_[i],
                                              model.mu_], lo, hi))  # fmt: skip


def test_bad_inputs_raise_clear_errors(fitted, tmp_path):
    model, split = fitted
    with pytest.raises(NotFittedError):
        EncoderRegressor(CONFIG).predict(split.test)
    with pytest.raises(SchemaError, match="item_id"):
        model.predict(pl.DataFrame({"user_id": ["u1"]}))
    empty = Split(train=split.train.head(0), valid=split.valid, test=split.test, method="x")
    with pytest.raises(DataError, match="no rows"):
        EncoderRegressor(CONFIG).fit(empty, _items())
    no_valid = Split(train=split.train, valid=split.valid.head(0), test=split.test, method="x")
    with pytest.raises(DataError, match="validation"):
        EncoderRegressor(CONFIG).fit(no_valid, _items())
    with pytest.raises(ConfigError, match="max_train_rows"):
        EncoderRegressor(CONFIG).fit(split, _items(), max_train_rows=0)
    with pytest.raises(DataError, match="description"):
        EncoderRegressor(CONFIG).fit(split, _items().select("item_id"))
    with pytest.raises(DataError, match="not a saved segflow predictor"):
        EncoderRegressor.load(tmp_path)
    with pytest.raises(ValueError):
        EncoderRegressorConfig(batch_size=1)
