"""Rating predictors on tiny planted data: recovery, the validation gate, persistence, fallbacks, determinism."""

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from embeddings.encoder import Embeddings
from segmentation._errors import ConfigError, DataError, NotFittedError, SchemaError
from segmentation.config import FineTuneConfig, MFConfig, PredictorConfig
from segmentation.data import Split
from segmentation.predict import (
    GlobalPredictor,
    SegmentedPredictor,
    fit_global_predictor,
    fit_segment_predictors,
    paired_bootstrap_ci,
    rmse,
)

N_USERS, N_ITEMS, RANK = 200, 100, 3

# Small, quick settings: ~4k training ratings, a few hundred Adam steps.
CONFIG = PredictorConfig(model="mf", refit=False, device="cpu",
                         mf=MFConfig(embedding_size=8, epochs=80, learning_rate=0.03, reg=0.02, bias_reg=0.0, batch_size=256,
                                     patience=8),
                         per_segment=FineTuneConfig(epochs=10, learning_rate=0.01, min_segment_valid=20))  # fmt: skip


def _with(config: PredictorConfig, **changes: Any) -> PredictorConfig:
    """``config`` with fields replaced, a section's by a dict of its changed fields (validated, unlike model_copy)."""
    data = config.model_dump()
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return PredictorConfig.model_validate(data)


# A small blend of every component kind, refitted on train + valid.
BLEND = _with(CONFIG, model="blend", refit=True, blend={"components": ["mf", "svdpp", "autorec", "item-knn", "user-knn"]},
              mf={"batch_size": 1024, "learning_rate": 0.05, "epochs": 30, "patience": 3},
              svdpp={"embedding_size": 8, "epochs": 30, "learning_rate": 0.05, "reg": 0.02, "bias_reg": 0.0,
                     "batch_size": 1024, "patience": 3, "time_bins": 4},
              autorec={"hidden": 32, "batch_size": 16, "learning_rate": 0.01, "epochs": 30, "patience": 3},
              knn={"neighbors": 10})  # fmt: skip


def _frame(users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "rating": ratings.astype(np.float64),
            "timestamp": np.arange(len(users), dtype=np.int64),
        }
    )


def _split(frame: pl.DataFrame, seed: int) -> Split:
    n = frame.height
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return Split(train=frame[np.sort(perm[:a])], valid=frame[np.sort(perm[a:b])], test=frame[np.sort(perm[b:])],
                 method="planted")  # fmt: skip


def planted_low_rank(seed: int = 0, density: float = 0.3) -> Split:
    """Ratings ``3.5 + b_u + b_i + p_u . q_i + noise`` (rank 3, noise sd 0.3), a ``density`` share observed."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.7, (N_USERS, RANK))
    q = rng.normal(0, 0.7, (N_ITEMS, RANK))
    bu, bi = rng.normal(0, 0.3, N_USERS), rng.normal(0, 0.3, N_ITEMS)
    users, items = np.nonzero(rng.random((N_USERS, N_ITEMS)) < density)
    r = 3.5 + bu[users] + bi[items] + np.einsum("nk,nk->n", p[users], q[items]) + rng.normal(0, 0.3, len(users))
    return _split(_frame(users, items, np.clip(r, 1, 5)), seed)


def planted_segments(seed: int = 0) -> tuple[Split, pl.DataFrame]:
    """Three segments, each with its own item effects (+-1): rank 3, more than a rank-1 global model can hold."""
    rng = np.random.default_rng(seed)
    segment = np.arange(N_USERS) % 3
    effect = rng.choice([-1.0, 1.0], (3, N_ITEMS))
    users, items = np.nonzero(rng.random((N_USERS, N_ITEMS)) < 0.4)
    r = 3.0 + effect[segment[users], items] + rng.normal(0, 0.3, len(users))
    assignments = pl.DataFrame(
        {"user_id": [f"u{u}" for u in range(N_USERS)], "segment_id": segment.astype(np.int32)},
        schema={"user_id": pl.String, "segment_id": pl.Int32},
    )
    return _split(_frame(users, items, np.clip(r, 1, 5)), seed), assignments


def biases_only_rmse(split: Split, reg: float = 5.0) -> float:
    """Test RMSE of ``mu + b_u + b_i`` fitted by a few rounds of damped alternating means."""
    tr = split.train
    mu = tr["rating"].mean()
    bu: dict[str, float] = {}
    bi: dict[str, float] = {}
    for _ in range(5):
        res = tr.with_columns((pl.col("rating") - mu - pl.col("user_id").replace_strict(bu, default=0.0)).alias("r"))
        g = res.group_by("item_id").agg(pl.col("r").sum(), pl.len())
        bi = dict(zip(g["item_id"], (g["r"] / (g["len"] + reg)).to_list()))
        res = tr.with_columns((pl.col("rating") - mu - pl.col("item_id").replace_strict(bi, default=0.0)).alias("r"))
        g = res.group_by("user_id").agg(pl.col("r").sum(), pl.len())
        bu = dict(zip(g["user_id"], (g["r"] / (g["len"] + reg)).to_list()))
    te = split.test
    pred = mu + np.array([bu.get(u, 0.0) for u in te["user_id"]]) + np.array([bi.get(i, 0.0) for i in te["item_id"]])
    return rmse(te["rating"].to_numpy(), np.clip(pred, 1, 5))


@pytest.fixture(scope="module")
def low_rank() -> tuple[Split, GlobalPredictor]:
    split = planted_low_rank()
    return split, fit_global_predictor(split, CONFIG, seed=0)


@pytest.fixture(scope="module")
def segmented() -> tuple[Split, SegmentedPredictor]:
    split, assignments = planted_segments()
    config = _with(CONFIG, mf={"embedding_size": 1})
    model = fit_global_predictor(split, config, seed=0)
    return split, fit_segment_predictors(model, split, assignments, config, seed=0)


def test_recovers_planted_low_rank_better_than_biases(low_rank: tuple[Split, GlobalPredictor]) -> None:
    split, model = low_rank
    y = split.test["rating"].to_numpy()
    mf = rmse(y, model.predict(split.test))
    baseline = biases_only_rmse(split)
    assert mf < 0.75 * baseline, (mf, baseline)
    assert mf < 0.6  # noise sd is 0.3; biases alone leave the rank-3 signal (~1.0) unexplained
    best = next(h for h in model.history_ if h["epoch"] == model.best_epoch_)
    assert best["valid_rmse"] == min(h["valid_rmse"] for h in model.history_) == model.valid_rmse_["model"]


def test_predictions_are_clipped_float64(low_rank: tuple[Split, GlobalPredictor]) -> None:
    split, model = low_rank
    pred = model.predict(split.test)
    assert pred.dtype == np.float64 and pred.shape == (split.test.height,)
    lo, hi = split.train["rating"].min(), split.train["rating"].max()
    assert pred.min() >= lo and pred.max() <= hi


def test_unknown_users_and_items_fall_back(low_rank: tuple[Split, GlobalPredictor]) -> None:
    split, model = low_rank
    known_u, known_i = split.train["user_id"][0], split.train["item_id"][0]
    frame = pl.DataFrame({"user_id": ["nobody", known_u, "nobody"], "item_id": [known_i, "nothing", "nothing"]})
    pred = model.predict(frame)
    assert np.isfinite(pred).all()
    mu = float(model.params_.mu)  # type: ignore[union-attr]
    assert pred[2] == pytest.approx(np.clip(mu, 1, 5))
    assert pred[0] != pred[2] and pred[1] != pred[2]  # item and user biases still apply
    assert model.predict(frame.head(0)).shape == (0,)


def test_bad_frames_and_unfitted_models_raise() -> None:
    with pytest.raises(NotFittedError):
        GlobalPredictor(CONFIG).predict(pl.DataFrame({"user_id": ["a"], "item_id": ["b"]}))
    with pytest.raises(DataError, match="no rows"):
        empty = planted_low_rank().train.head(0)
        fit_global_predictor(Split(empty, empty, empty, "x"), CONFIG)


def test_schema_is_checked(low_rank: tuple[Split, GlobalPredictor]) -> None:
    _, model = low_rank
    with pytest.raises(SchemaError, match="user_id"):
        model.predict(pl.DataFrame({"user_id": [1], "item_id": ["i1"]}))


def test_same_seed_same_model_other_seed_other_model(low_rank: tuple[Split, GlobalPredictor]) -> None:
    split, model = low_rank
    again = fit_global_predictor(split, CONFIG, seed=0)
    np.testing.assert_array_equal(again.predict(split.test), model.predict(split.test))
    assert again.history_ == model.history_
    other = fit_global_predictor(split, _with(CONFIG, mf={"epochs": 3}), seed=1)
    assert not np.array_equal(other.predict(split.test), model.predict(split.test))


def test_global_save_load_round_trips_exactly(low_rank: tuple[Split, GlobalPredictor], tmp_path: Path) -> None:
    split, model = low_rank
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "weights.safetensors").is_file()
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["mf"]["embedding_size"] == CONFIG.mf.embedding_size and "torch" in manifest["versions"]
    loaded = GlobalPredictor.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(split.test), model.predict(split.test))
    assert loaded.config == model.config and loaded.history_ == model.history_
    assert not list(tmp_path.rglob("*.pkl"))


def test_loads_a_global_model_saved_with_the_flat_config_of_segflow_0_1(low_rank, tmp_path: Path) -> None:
    split, model = low_rank
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    # what segflow 0.1 wrote for CONFIG (abridged): one flat level, shared settings unprefixed
    manifest["config"] = {"model": "mf", "refit": False, "device": "cpu", "threads": 1, "embedding_size": 8, "epochs": 80,
                          "learning_rate": 0.03, "reg": 0.02, "bias_reg": 0.0, "batch_size": 256, "patience": 8,
                          "finetune": True, "finetune_epochs": 10, "finetune_learning_rate": 0.01,
                          "min_segment_valid": 20, "encoder_model": "all-MiniLM-L6-v2", "encoder_epochs": 2}  # fmt: skip
    path.write_text(json.dumps(manifest))
    loaded = GlobalPredictor.load(tmp_path / "m")
    assert loaded.config.mf == CONFIG.mf and loaded.config.per_segment == CONFIG.per_segment
    np.testing.assert_array_equal(loaded.predict(split.test), model.predict(split.test))


def test_load_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest.json"):
        GlobalPredictor.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="expected format"):
        GlobalPredictor.load(tmp_path)


def test_gate_keeps_almost_nothing_when_segments_are_random(low_rank: tuple[Split, GlobalPredictor]) -> None:
    # random partitions have no segment effect: what passes the gate there is luck or a global model that more
    # training would still improve (the gate cannot tell that from a segment effect, which is why the flow reports a
    # random-partition control); over six partitions the gate keeps at most one segment in nine
    split, model = low_rank
    users = split.train["user_id"].unique().sort()
    kept, tried = 0, 0
    for draw in range(3, 9):
        labels = np.random.default_rng(draw).integers(0, 3, len(users)).astype(np.int32)
        assignments = pl.DataFrame({"user_id": users, "segment_id": labels})
        seg = fit_segment_predictors(model, split, assignments, CONFIG, seed=0)
        assert seg.report_.height == 3
        kept, tried = kept + int(seg.report_["kept"].sum()), tried + 3
        if not seg.report_["kept"].any():
            np.testing.assert_array_equal(seg.predict(split.test), model.predict(split.test))
    assert kept <= tried // 9, f"{kept} of {tried} random segments kept"


def test_gate_keeps_segments_that_truly_differ(segmented: tuple[Split, SegmentedPredictor]) -> None:
    split, seg = segmented
    report = seg.report_
    assert report["kept"].all(), report
    assert (report["valid_rmse_segment"] < report["valid_rmse_global"]).all()
    assert set(seg.trials_["strategy"].to_list()) == {"bias+lowrank-delta", "full-l2"}
    y = split.test["rating"].to_numpy()
    p_global, p_seg = seg.global_model.predict(split.test), seg.predict(split.test)
    diff, lo, hi = paired_bootstrap_ci(y, p_global, p_seg, split.test["user_id"].to_numpy(), n_boot=200, seed=0)
    assert diff < -0.1 and hi < 0


def test_never_worse_on_validation(segmented: tuple[Split, SegmentedPredictor]) -> None:
    split, seg = segmented
    y = split.valid["rating"].to_numpy()
    assert rmse(y, seg.predict(split.valid)) <= rmse(y, seg.global_model.predict(split.valid))


def test_segmented_save_load_round_trips_exactly(segmented: tuple[Split, SegmentedPredictor], tmp_path: Path) -> None:
    split, seg = segmented
    seg.save(tmp_path / "seg")
    loaded = SegmentedPredictor.load(tmp_path / "seg")
    frame = pl.concat([split.test.select("user_id", "item_id"),
                       pl.DataFrame({"user_id": ["nobody", "u1"], "item_id": ["i1", "nothing"]})])  # fmt: skip
    np.testing.assert_array_equal(loaded.predict(frame), seg.predict(frame))
    assert loaded.report_.equals(seg.report_)
    assert sorted(loaded.models_) == sorted(seg.models_)


def test_segmented_save_refers_to_the_global_model_instead_of_copying_it(segmented: tuple[Split, SegmentedPredictor],
                                                                          tmp_path: Path) -> None:  # fmt: skip
    """A run stores the global model once (models/global); models/segments refers to it by a relative path."""
    split, seg = segmented
    run = tmp_path / "run"
    seg.global_model.save(run / "models" / "global")
    seg.save(run / "models" / "segments", global_model_dir=run / "models" / "global")
    assert not (run / "models" / "segments" / "global").exists()
    assert json.loads((run / "models" / "segments" / "manifest.json").read_text())["global_model"] == "../global"
    moved = tmp_path / "moved"
    run.rename(moved)  # the reference is relative: the run folder can move
    np.testing.assert_array_equal(SegmentedPredictor.load(moved / "models" / "segments").predict(split.test),
                                  seg.predict(split.test))  # fmt: skip
    # a folder written before the reference existed (its own global/ copy, no "global_model" key) still loads
    old = tmp_path / "old"
    seg.save(old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["global_model"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    np.testing.assert_array_equal(SegmentedPredictor.load(old).predict(split.test), seg.predict(split.test))
    shutil.rmtree(moved / "models" / "global")
    with pytest.raises(DataError, match="the global model it refers to .* is missing"):
        SegmentedPredictor.load(moved / "models" / "segments")


def test_a_run_shares_the_global_model_only_when_the_parameters_are_the_same(low_rank, tmp_path: Path) -> None:
    """publish refers models/segments to models/global only for the same model (equal after a cache round trip)."""
    from segmentation.publish import _same_global_model

    split, model = low_rank
    model.save(tmp_path / "g")
    assert _same_global_model(model, GlobalPredictor.load(tmp_path / "g"))
    assert not _same_global_model(model, fit_global_predictor(split, CONFIG, seed=1))
    assert not _same_global_model(model, None) and not _same_global_model(model, object())


def test_outliers_and_unassigned_users_use_the_global_model(segmented: tuple[Split, SegmentedPredictor]) -> None:
    split, seg = segmented
    frame = split.test.select("user_id", "item_id")
    only_known = seg.assignments_.with_columns(pl.lit(-1, dtype=pl.Int32).alias("segment_id"))
    none_kept = fit_segment_predictors(seg.global_model, split, only_known, CONFIG, seed=0)
    assert none_kept.report_.height == 0 and not none_kept.models_
    np.testing.assert_array_equal(none_kept.predict(frame), seg.global_model.predict(frame))


def test_paired_bootstrap_ci() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(3, 1, 2000)
    groups = np.repeat(np.arange(200), 10)
    a = y + rng.normal(0, 1.0, y.size)
    assert paired_bootstrap_ci(y, a, a, groups, n_boot=100) == (0.0, 0.0, 0.0)
    b = y + rng.normal(0, 0.5, y.size)
    diff, lo, hi = paired_bootstrap_ci(y, a, b, groups, n_boot=300, seed=1)
    assert lo <= diff <= hi < 0
    assert paired_bootstrap_ci(y, a, b, groups, n_boot=300, seed=1) == (diff, lo, hi)


def _item_embeddings(split: Split, dim: int = 16) -> Embeddings:
    ids = np.array(sorted(set(split.train_full["item_id"].to_list())), dtype=object)
    vectors = np.random.default_rng(0).normal(size=(len(ids), dim)).astype(np.float32)
    return Embeddings(ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), "random")


@pytest.fixture(scope="module")
def blend() -> tuple[Split, GlobalPredictor]:
    split = planted_low_rank()
    return split, fit_global_predictor(split, BLEND, item_embeddings=_item_embeddings(split), seed=0)


def test_blend_beats_biases_and_reports_every_component(blend: tuple[Split, GlobalPredictor]) -> None:
    split, model = blend
    assert model.component_names == ["mf", "svdpp", "autorec", "item-knn", "user-knn"]
    assert model.weights_ is not None and model.weights_.shape == (6,)
    assert set(model.valid_rmse_) == {*model.component_names, "model"}
    assert model.valid_rmse_["model"] <= min(v for k, v in model.valid_rmse_.items() if k != "model") + 0.01
    y = split.test["rating"].to_numpy()
    assert rmse(y, model.predict(split.test)) < 0.8 * biases_only_rmse(split)
    # refit: users seen only in the validation rows are known now
    assert len(model.user_vocab_) == split.train_full["user_id"].n_unique()  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["svdpp", "autorec", "item-knn"])
def test_components_are_deterministic(name: str) -> None:
    split = planted_low_rank()
    section = {"item-knn": "knn"}.get(name, name)
    config = _with(BLEND, model=name, refit=False, **({} if section == "knn" else {section: {"epochs": 3}}))
    first, second = (
        fit_global_predictor(split, config, item_embeddings=_item_embeddings(split), seed=5) for _ in range(2)
    )
    np.testing.assert_array_equal(first.predict(split.test), second.predict(split.test))
    assert first.history_ == second.history_


def test_blend_round_trips(blend: tuple[Split, GlobalPredictor], tmp_path: Path) -> None:
    split, model = blend
    frame = pl.concat([split.test.select("user_id", "item_id", "timestamp"),
                       pl.DataFrame({"user_id": ["nobody", "u1"], "item_id": ["i1", "nothing"], "timestamp": [0, 10**10]})])  # fmt: skip
    model.save(tmp_path / "blend")
    loaded = GlobalPredictor.load(tmp_path / "blend")
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_array_equal(loaded.predict(frame.drop("timestamp")), model.predict(frame.drop("timestamp")))
    assert loaded.summary()["components"] == model.component_names


def test_blend_segments_fine_tune_their_mf_component(tmp_path: Path) -> None:
    split, assignments = planted_segments()
    config = _with(BLEND, blend={"components": ["mf"]}, refit=False,
                   mf={"embedding_size": 1, "batch_size": 256, "learning_rate": 0.03})  # fmt: skip
    model = fit_global_predictor(split, config, seed=0)
    seg = fit_segment_predictors(model, split, assignments, config, seed=0)
    assert set(seg.trials_["strategy"].to_list()) == {
        "bias+lowrank-delta",
        "full-l2",
        "blend-weights",
        "blend-recalibrate",
    }
    assert seg.report_["kept"].all(), seg.report_
    assert set(seg.report_["strategy"].to_list()) <= {"bias+lowrank-delta", "full-l2"}
    y = split.valid["rating"].to_numpy()
    assert rmse(y, seg.predict(split.valid)) < rmse(y, model.predict(split.valid)) - 0.1
    seg.save(tmp_path / "seg")
    np.testing.assert_array_equal(
        SegmentedPredictor.load(tmp_path / "seg").predict(split.test), seg.predict(split.test)
    )


def test_blend_gate_keeps_nothing_when_segments_are_random(blend: tuple[Split, GlobalPredictor]) -> None:
    split, model = blend
    users = split.train_full["user_id"].unique().sort()
    labels = np.random.default_rng(3).integers(0, 3, len(users)).astype(np.int32)
    seg = fit_segment_predictors(model, split, pl.DataFrame({"user_id": users, "segment_id": labels}), BLEND, seed=0)
    assert not seg.report_["kept"].any(), seg.report_


def test_dense_components_over_the_budget_are_left_out_or_refused(caplog) -> None:
    split = planted_low_rank()  # 200 users x 100 items: kNN about 80 MiB each, AutoRec about 193 MiB (estimates)
    config = _with(BLEND, blend={"components": ["mf", "item-knn", "user-knn", "autorec"]}, dense_budget_mib=100,
                   refit=False, mf={"epochs": 2}, autorec={"epochs": 2})  # fmt: skip
    with caplog.at_level("INFO", logger="segmentation._predict_global"):
        model = fit_global_predictor(split, config, seed=0)
    assert model.component_names == ["mf", "item-knn", "user-knn"]
    assert "over predictor.dense_budget_mib = 100, left out: autorec" in caplog.text
    assert "autorec about 193 MiB" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="segmentation._predict_global"):
        fit_global_predictor(split, _with(config, dense_budget_mib=200), seed=0)
    assert "within predictor.dense_budget_mib = 200; components as configured" in caplog.text
    refused = r"autorec about 193 MiB while fitting, over predictor.dense_budget_mib = 100"
    with pytest.raises(ConfigError, match=refused):
        fit_global_predictor(split, _with(config, model="autorec"), seed=0)


def test_a_blend_over_the_svdpp_cap_fits_mf_instead_and_says_so(caplog) -> None:
    split = planted_low_rank()
    n = split.train.height
    config = _with(BLEND, blend={"components": ["svdpp", "item-knn"], "svdpp_max_ratings": n - 1}, refit=False,
                   mf={"epochs": 2}, svdpp={"epochs": 2})  # fmt: skip
    with caplog.at_level("INFO", logger="segmentation._predict_global"):
        model = fit_global_predictor(split, config, seed=0)
    assert model.component_names == ["mf", "item-knn"]
    assert model.params_ is not None  # the new-user priors reuse this MF instead of fitting another
    assert f"over predictor.blend.svdpp_max_ratings = {n - 1:,}: components ['mf', 'item-knn']" in caplog.text
    both = _with(config, blend={"components": ["mf", "svdpp"], "svdpp_max_ratings": n - 1})
    assert fit_global_predictor(split, both, seed=0).component_names == ["mf"]
    at_cap = _with(config, blend={"components": ["svdpp", "item-knn"], "svdpp_max_ratings": n})
    assert fit_global_predictor(split, at_cap, seed=0).component_names == ["svdpp", "item-knn"]
    single = _with(config, model="svdpp")  # a single model stays as chosen
    assert fit_global_predictor(split, single, seed=0).component_names == ["svdpp"]


def test_blend_with_few_validation_rows_averages_its_components() -> None:
    split = planted_low_rank()
    tiny = Split(split.train, split.valid.head(12), split.test, "tiny")
    config = _with(BLEND, blend={"components": ["mf", "item-knn"]}, refit=False, mf={"epochs": 2})
    model = fit_global_predictor(tiny, config, seed=0)
    np.testing.assert_array_equal(model.weights_, [0.0, 0.5, 0.5])  # type: ignore[arg-type]
    assert np.isfinite(model.predict(split.test)).all()


def test_gate_level_is_bonferroni_corrected_for_the_segments_tried():
    from segmentation._predict_segments import gate_level

    cfg = PredictorConfig(per_segment=FineTuneConfig(gate_level=0.95))
    assert gate_level(cfg, 1) == 0.95 and gate_level(cfg, 0) == 0.95
    assert gate_level(cfg, 5) == pytest.approx(0.99)
    assert gate_level(_with(cfg, per_segment={"gate_correction": "none"}), 5) == 0.95


def test_test_ratings_never_reach_fitting(tmp_path):
    """Scrambling the test split's ratings leaves the fitted model bit-identical: only train and valid are read."""
    split = planted_low_rank(seed=5)
    rng = np.random.default_rng(1)
    scrambled = Split(split.train, split.valid,
                      split.test.with_columns(pl.Series("rating", rng.permutation(split.test["rating"].to_numpy()[::-1]))),
                      split.method)  # fmt: skip
    assert not scrambled.test["rating"].equals(split.test["rating"])
    blend = _with(CONFIG, model="blend", blend={"components": ["mf", "item-knn"]})
    for i, s in enumerate((split, scrambled)):
        fit_global_predictor(s, blend, seed=0).save(tmp_path / f"m{i}")
    assert (tmp_path / "m0" / "weights.safetensors").read_bytes() == (
        tmp_path / "m1" / "weights.safetensors"
    ).read_bytes()
    m0, m1 = (json.loads((tmp_path / f"m{i}" / "manifest.json").read_text()) for i in (0, 1))
    assert m0["weights"] == m1["weights"] and m0["valid_rmse"] == m1["valid_rmse"]


def _record_gap(history: list[dict]) -> int:
    """The most epochs between two successive improvements of the validation RMSE (from epoch 0, before training)."""
    best, last, gap = np.inf, 0, 1
    for h in history:
        if h["valid_rmse"] < best:
            best, gap, last = h["valid_rmse"], max(gap, h["epoch"] - last), h["epoch"]
    return gap


@pytest.mark.parametrize("name", ["mf", "svdpp", "autorec"])
def test_patience_in_training_ratings_stops_sooner_at_the_same_best_epoch(name: str, caplog) -> None:
    """A ratings bound of k epochs' training rows, k the longest wait for a better validation RMSE in the fit without
    a bound, stops k epochs past the best (sooner than patience): the same best epoch, the same refitted model. The
    default bound (2M ratings) does not bind on small data, so that fit is the one without a bound."""
    split = planted_low_rank()
    n = split.train.height
    base = _with(BLEND, model=name, refit=True, **{name: {"epochs": 40, "patience": 6}})

    def fit(cap: int | None | str) -> tuple[GlobalPredictor, str]:
        section = {} if cap == "default" else {"patience_ratings": cap}
        config = _with(base, **{name: {**base.model_dump()[name], **section}})
        caplog.clear()
        with caplog.at_level("INFO"):
            model = fit_global_predictor(split, config, item_embeddings=_item_embeddings(split), seed=0)
        return model, caplog.text

    (off, off_log), (default, _) = fit(None), fit("default")
    best = off.best_epoch_
    assert best >= 1 and len(off.history_) == best + 6  # patience stopped it, 6 epochs past its best
    assert "stopped by patience = 6 epochs" in off_log
    assert default.history_ == off.history_
    np.testing.assert_array_equal(default.predict(split.test), off.predict(split.test))
    k = _record_gap(off.history_)
    assert k < 6
    capped, capped_log = fit(k * n)
    assert capped.best_epoch_ == best and len(capped.history_) == best + k
    assert capped.history_ == off.history_[: best + k]
    assert (f"({k * n:,} training ratings) past the best epoch {best} without a better validation RMSE: stopped by "
            f"patience_ratings = {k * n:,} before patience = 6 epochs") in capped_log  # fmt: skip
    np.testing.assert_array_equal(capped.predict(split.test), off.predict(split.test))  # the same refit
