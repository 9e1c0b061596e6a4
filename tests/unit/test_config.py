import logging

import pytest
from pydantic import ValidationError

from segmentation._errors import ConfigError
from segmentation.config import (
    AutoRecConfig,
    BlendConfig,
    EncoderRegressorConfig,
    FineTuneConfig,
    MFConfig,
    PipelineConfig,
    PredictorConfig,
    SVDppConfig,
    dump_config_toml,
    load_config,
)


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = PipelineConfig()
    (tmp_path / "c.toml").write_text(dump_config_toml(cfg))
    assert load_config(tmp_path / "c.toml") == cfg


def test_overrides_parse_types():
    cfg = load_config(None, ["cluster.min_cluster_size=20", "encoder.batch_size=8", "report.title=My run",
                             "ranker.rankers=['most-popular']"])  # fmt: skip
    assert cfg.cluster.min_cluster_size == 20 and cfg.encoder.batch_size == 8
    assert cfg.report.title == "My run" and cfg.ranker.rankers == ["most-popular"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cluster]\nmin_cluster_sise = 3\n", "cluster.min_cluster_sise: unknown key"),
        ("[encoder]\nbatch_size = 0\n", "encoder.batch_size"),
        ("seed = -1\n", "seed"),
        ("[data]\nsource = 'files'\n", "needs both data.ratings and data.items"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_is_refused_with_the_key(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_bad_override_form():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["seed"])


def test_docs_config_reference_is_current():
    from pathlib import Path

    from segmentation.config import config_reference_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"
    assert doc.read_text().strip() == config_reference_markdown().strip(), (
        "run: segflow config --reference > docs/CONFIG.md"
    )


def test_overrides_parse_typed_values_lists_and_nested_keys():
    cfg = load_config(None, ["seed=7", "predictor.mf.learning_rate=0.05", "predictor.refit=false",
                             "predictor.per_segment.enabled=false", "predictor.blend.components=['mf', 'item-knn']",
                             "predictor.per_segment.strategies=[]", "data.rating_scale=[1, 5]", "data.columns.rating=''",
                             "predictor.model='mf'", "report.title=two words", "evaluate.relevance_threshold=4"])  # fmt: skip
    assert cfg.seed == 7 and cfg.predictor.mf.learning_rate == 0.05 and cfg.predictor.refit is False
    assert cfg.predictor.per_segment.enabled is False and cfg.predictor.per_segment.strategies == []
    assert cfg.predictor.blend.components == ["mf", "item-knn"] and cfg.data.rating_scale == (1.0, 5.0)
    assert cfg.data.columns.rating == "" and cfg.predictor.model == "mf" and cfg.report.title == "two words"
    assert cfg.evaluate.relevance_threshold == 4.0 and isinstance(cfg.evaluate.relevance_threshold, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("predictor.mf.epochs=many", r"predictor.mf.epochs: Input should be a valid integer.*\(given: 'many'\)"),
        ("predictor.blend.components=['mf', 'svd']", r"predictor.blend.components.1: Input should be 'mf'"),
        ("predictor.per_segment.gate_level=2", r"predictor.per_segment.gate_level: Input should be less than 1"),
        ("predictor.refit=maybe", r"predictor.refit: Input should be a valid boolean"),
        ("predictor.epochz=3", r"predictor.epochz: unknown key"),
        ("predictor.mf.epochz=3", r"predictor.mf.epochz: unknown key"),
        ("predictor.mf=3", r"predictor.mf: Input should be a valid dictionary"),
        ("seed=1|seed.x=1", r"'seed' is a value, not a section"),
        ("cluster..min_samples=3", r"the key has an empty part"),
        ("=3", r"the key has an empty part"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override.split("|"))


# PredictorConfig().model_dump() of segflow 0.1, before the predictor settings were nested by component.
FLAT_DEFAULTS_0_1 = {
    "model": "blend", "blend_components": ["svdpp", "autorec", "item-knn", "user-knn"], "blend_reg": 1.0, "refit": True,
    "embedding_size": 64, "epochs": 100, "learning_rate": 0.01, "reg": 0.1, "bias_reg": 0.01, "batch_size": 4096,
    "patience": 5, "device": "auto", "threads": 1, "svdpp_learning_rate": 0.005, "svdpp_time_bins": 20,
    "svdpp_user_day_bias": True, "side_features": True, "autorec_hidden": 500, "autorec_reg": 1.0,
    "autorec_learning_rate": 0.005, "autorec_batch_size": 256, "knn_neighbors": 40, "knn_shrinkage": 100.0,
    "max_dense_cells": 250000000, "encoder_model": "all-MiniLM-L6-v2", "encoder_epochs": 2,
    "encoder_learning_rate": 5e-05, "encoder_head_learning_rate": 0.003, "encoder_batch_size": 64,
    "encoder_max_seq_length": 128, "encoder_max_train_rows": None, "finetune": True,
    "finetune_strategies": ["bias+lowrank-delta", "full-l2", "blend-weights", "blend-recalibrate"],
    "segment_blend_reg": 200.0, "finetune_epochs": 10, "finetune_learning_rate": 0.002, "finetune_reg": 0.1,
    "finetune_rank": 4, "gate_fraction": 0.5, "gate_level": 0.95, "gate_correction": "bonferroni",
    "gate_bootstrap": 500, "min_segment_valid": 40,
}  # fmt: skip


def test_the_defaults_are_those_of_segflow_0_1():
    """Every old key has a new home (extra keys are refused) and the defaults fit the same models, but for the dense
    cap: 250M cells of one table read as that table's float64 MiB (1908), a budget that now counts temporaries."""
    assert PredictorConfig.model_validate(FLAT_DEFAULTS_0_1) == PredictorConfig(dense_budget_mib=1908)
    assert EncoderRegressorConfig.model_validate(FLAT_DEFAULTS_0_1) == EncoderRegressorConfig()


def test_flat_predictor_keys_of_0_1_still_load_with_a_warning_naming_the_new_keys(tmp_path, caplog):
    (tmp_path / "old.toml").write_text(
        "[predictor]\nmodel = 'mf'\nepochs = 30\nreg = 0.05\nsvdpp_time_bins = 0\nfinetune = false\n"
        "gate_level = 0.9\nblend_components = ['mf']\nencoder_epochs = 3\n"
    )
    with caplog.at_level(logging.WARNING, logger="segmentation.config"):
        cfg = load_config(tmp_path / "old.toml").predictor
    p = PredictorConfig
    assert cfg == p(model="mf", mf=MFConfig(epochs=30, reg=0.05), svdpp=SVDppConfig(epochs=30, reg=0.05, time_bins=0),
                    autorec=AutoRecConfig(epochs=30), per_segment=FineTuneConfig(enabled=False, gate_level=0.9),
                    blend=BlendConfig(components=["mf"]))  # fmt: skip
    text = caplog.text
    assert str(tmp_path / "old.toml") in text
    assert "predictor.epochs -> predictor.mf.epochs, predictor.svdpp.epochs, predictor.autorec.epochs" in text
    assert "predictor.finetune -> predictor.per_segment.enabled" in text and "predictor.gate_level -> " in text
    assert "predictor.encoder_epochs ignored" in text and "EncoderRegressorConfig" in text


def test_flat_keys_in_set_map_to_the_new_keys_and_a_new_key_overrides_an_old_file(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="segmentation.config"):
        cfg = load_config(None, ["predictor.patience=2", "predictor.finetune=false", "predictor.knn_neighbors=7"])
    assert (cfg.predictor.mf.patience, cfg.predictor.svdpp.patience, cfg.predictor.autorec.patience) == (2, 2, 2)
    assert cfg.predictor.per_segment.enabled is False and cfg.predictor.knn.neighbors == 7
    assert "'predictor.knn_neighbors=7': predictor.knn_neighbors is deprecated" in caplog.text
    assert "use predictor.knn.neighbors" in caplog.text
    (tmp_path / "old.toml").write_text("[predictor]\nepochs = 30\nfinetune = false\n")
    cfg = load_config(tmp_path / "old.toml", ["predictor.svdpp.epochs=8", "predictor.per_segment.gate_level=0.8"])
    assert (cfg.predictor.mf.epochs, cfg.predictor.svdpp.epochs, cfg.predictor.autorec.epochs) == (30, 8, 30)
    assert cfg.predictor.per_segment == FineTuneConfig(enabled=False, gate_level=0.8)
    # the old form of a Prefect deployment's parameters (a flat dict) is renamed as well
    assert PipelineConfig.model_validate({"predictor": {"epochs": 30}}).predictor.svdpp.epochs == 30


def test_a_flat_key_beside_its_new_key_is_refused(tmp_path):
    (tmp_path / "both.toml").write_text("[predictor]\nepochs = 30\n[predictor.mf]\nepochs = 7\n")
    with pytest.raises(ConfigError, match=r"(?s)both.toml.*predictor.epochs \(deprecated, now predictor.mf.epochs\) and "
                                          r"predictor.mf.epochs are both given"):  # fmt: skip
        load_config(tmp_path / "both.toml")
    # a section given as a model counts only the fields set on it
    mixed = PredictorConfig(epochs=5, mf=MFConfig(learning_rate=0.2))
    assert (mixed.mf.epochs, mixed.mf.learning_rate, mixed.svdpp.epochs) == (5, 0.2, 5)
    with pytest.raises(ValidationError, match="keep only predictor.mf.epochs"):
        PredictorConfig(epochs=5, mf=MFConfig(epochs=3))
    with pytest.raises(ValidationError, match="keep only predictor.per_segment.gate_level"):
        PredictorConfig.model_validate({"gate_level": 0.9, "per_segment": {"gate_level": 0.8}})


def test_a_rule_switched_off_stays_off_through_the_saved_file(tmp_path):
    """Settings whose default is a value and that None switches off (the outlier rules, the sampling caps):
    ``--set key=`` turns them off, and the run folder's config.toml (TOML has no null) reloads them off, not on."""
    off = ["cluster.min_cohesion=", "cluster.outlier_distance=", "cluster.outlier_membership=",
           "predictor.cold_start.gate_max_users=", "evaluate.ranking_max_users="]  # fmt: skip
    cfg = load_config(None, off)
    assert (cfg.cluster.min_cohesion, cfg.cluster.outlier_distance, cfg.cluster.outlier_membership,
            cfg.predictor.cold_start.gate_max_users, cfg.evaluate.ranking_max_users) == (None,) * 5  # fmt: skip
    assert PipelineConfig().cluster.min_cohesion is not None, "the test needs a rule that is on by default"
    (tmp_path / "c.toml").write_text(dump_config_toml(cfg))
    assert load_config(tmp_path / "c.toml") == cfg
    (tmp_path / "d.toml").write_text(dump_config_toml(PipelineConfig()))
    assert load_config(tmp_path / "d.toml") == PipelineConfig()
