import pytest

from segmentation._errors import ConfigError
from segmentation.config import PipelineConfig, dump_config_toml, load_config


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
    assert doc.read_text().strip() == config_reference_markdown().strip(), "run: segflow config --reference > docs/CONFIG.md"
