"""Where segflow keeps its caches (downloaded data, embeddings, encoders, task results)."""

import os
from pathlib import Path

from segmentation.config import PipelineConfig

__all__ = ["cache_root", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$SEGFLOW_CACHE``, else ``$XDG_CACHE_HOME/segflow``, else ``~/.cache/segflow``."""
    if env := os.environ.get("SEGFLOW_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segflow"


def cache_root(config: PipelineConfig) -> Path:
    """The run's cache folder: ``config.cache_dir``, else :func:`default_cache_dir`."""
    return Path(config.cache_dir) if config.cache_dir else default_cache_dir()
