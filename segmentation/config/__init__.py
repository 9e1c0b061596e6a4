"""One pydantic model describes a whole segflow run.

:class:`PipelineConfig` is the Prefect flow's parameter (the UI renders it as a
form), loads from TOML with :func:`load_config`, and takes dotted overrides from
the CLI (``encoder.batch_size=32``). Each stage has its own frozen section.

One module per group of sections: ``data`` (files and columns), ``embedding`` (encoder, user representation,
index), ``segments`` (reduce, cluster), ``predictor`` (the rating predictor, nested by component), ``ranker``,
``run`` (evaluation, report, orchestration, output, cache and :class:`PipelineConfig`), and ``files`` (loading,
``--set`` overrides, dumping, hashing, the reference table). Everything public is re-exported here.
"""

from segmentation._config_legacy import migrate_predictor_keys
from segmentation.config.data import ColumnMapping, DataConfig
from segmentation.config.embedding import EncoderConfig, IndexConfig, RepresentConfig
from segmentation.config.files import (
    apply_overrides,
    config_hash,
    config_reference_markdown,
    dump_config_toml,
    load_config,
)
from segmentation.config.predictor import (
    AutoRecConfig,
    BlendConfig,
    ColdStartConfig,
    ComponentName,
    EncoderRegressorConfig,
    FineTuneConfig,
    FineTuneStrategy,
    KNNConfig,
    MFConfig,
    PredictorConfig,
    SVDppConfig,
)
from segmentation.config.ranker import RankerConfig
from segmentation.config.run import (
    CacheConfig,
    EvalConfig,
    OrchestrationConfig,
    OutputConfig,
    PipelineConfig,
    ReportConfig,
)
from segmentation.config.segments import ClusterConfig, ReduceConfig

__all__ = [
    "AutoRecConfig",
    "BlendConfig",
    "CacheConfig",
    "ClusterConfig",
    "ColumnMapping",
    "ComponentName",
    "DataConfig",
    "EncoderConfig",
    "EncoderRegressorConfig",
    "EvalConfig",
    "ColdStartConfig",
    "FineTuneConfig",
    "FineTuneStrategy",
    "IndexConfig",
    "KNNConfig",
    "MFConfig",
    "OrchestrationConfig",
    "OutputConfig",
    "PipelineConfig",
    "PredictorConfig",
    "RankerConfig",
    "ReduceConfig",
    "ReportConfig",
    "RepresentConfig",
    "SVDppConfig",
    "apply_overrides",
    "config_hash",
    "config_reference_markdown",
    "dump_config_toml",
    "load_config",
    "migrate_predictor_keys",
]
