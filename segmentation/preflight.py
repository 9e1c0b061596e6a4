"""Checks that need no fitting, run before any stage starts, and the checked data handed to the load stage.

``segflow run`` and ``segflow serve`` call :func:`check_before_run` before they import or start Prefect, so a
bad file, a wrong setting or too few users is reported in seconds instead of after Prefect's temporary server
has started (20-40 s). The data is read and validated once: ``segflow run`` hands the :class:`Dataset` to the
flow's load stage through :func:`checked_dataset`, which gives it back only while the data files are the ones
that were checked (same path, size, modification time and inode); otherwise the stage reads them again.
The hand-over is in memory, in the one process that runs both: a deployment's run (another process) loads
the data itself and runs :func:`check_dataset` right after.
"""

import logging
import os
import threading
from pathlib import Path

import numpy as np

from segmentation._errors import DataError
from segmentation.config import DataConfig, PipelineConfig
from segmentation.data import Dataset, cache_root, load_dataset

__all__ = ["check_before_run", "check_dataset", "checked_dataset", "data_stamp", "forget_checked", "load_for_run"]

logger = logging.getLogger(__name__)

LARGEST_RATING = float(np.sqrt(np.finfo(np.float32).max))  # 1.84e19: its square still fits the models' float32

_lock = threading.Lock()
_checked: tuple[tuple, Dataset] | None = None  # (data_stamp, dataset) of the last check_before_run, handed over once


def data_stamp(config: DataConfig, cache_dir: Path) -> tuple:
    """What identifies the data ``config`` reads: the settings, and each file's path, size, mtime and inode.

    A file rewritten in place (the nightly export) changes its size or modification time; one replaced by a
    rename changes its inode. Built-in data is identified by its cache folder (its files are checksummed).
    """
    files: list[tuple[str, int, int, int] | tuple[str, None] | None] = []
    if config.source == "files":
        for p in (config.ratings, config.items, config.users):
            if p is None:
                files.append(None)
                continue
            try:
                st = os.stat(p)
                files.append((str(Path(p).resolve()), st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                files.append((str(p), None))
    return (config.model_dump_json(), str(Path(cache_dir).resolve()), tuple(files))


def check_dataset(dataset: Dataset, config: PipelineConfig) -> None:
    """The checks of a loaded dataset that need no fitting: users enough to segment, ratings the models can
    compute with, more than one item.

    The users counted are all users with an interaction; the segmented ones (those with training rows) are at
    most as many, so this refuses only what the segmentation would refuse later anyway.

    Raises:
        DataError: too few users for UMAP or HDBSCAN, ratings above :data:`LARGEST_RATING`, or every interaction
            is with one item.
    """
    from segmentation.cluster import check_enough_users

    check_enough_users(dataset.n_users, config.reduce, config.cluster)
    where = f"ratings file {config.data.ratings}" if config.data.source == "files" else f"data {dataset.name}"
    largest = dataset.interactions["rating"].max()  # a float or None (empty): the column is Float64 by contract
    if isinstance(largest, float) and largest > LARGEST_RATING:
        n = int((dataset.interactions["rating"] > LARGEST_RATING).sum())
        raise DataError(
            f"{where}, column {config.data.columns.rating!r}: {n} ratings are above {LARGEST_RATING:.3g} (the largest "
            f"is {largest:g}), too large for the rating models, which compute in float32 (a square must stay below "
            "its largest number); is a column of ids or amounts mapped as the rating? Check "
            "data.columns.rating, or give implicit feedback with --rating-col ''"
        )
    item = dataset.interactions["item_id"]
    if not (item != item[0]).any():
        raise DataError(
            f"{where}: all {item.len()} interactions are with the one item {item[0]!r}, so every "
            "user chose the same and there is nothing to segment users by or to recommend; give the whole export "
            "(interactions with at least two items)"
        )


def check_before_run(config: PipelineConfig, *, keep: bool = True) -> Dataset:
    """Everything about a run that can be checked without fitting, in seconds, before the flow starts.

    The output folder can take run folders, the encoder model is there, the data files load and pass
    validation (:func:`segmentation.data.load_dataset`, the same call the flow's load stage makes) and
    :func:`check_dataset`. With ``keep``, the loaded dataset is kept for :func:`checked_dataset`.

    Raises:
        DataError, SchemaError, ConfigError: what the flow would have raised, with the same message.
    """
    from embeddings.encoder import resolve_model_path
    from segmentation.runs import check_output_dir

    check_output_dir(config.output_dir)
    resolve_model_path(config.encoder.model)
    cache = cache_root(config)  # the folder the flow passes to the load stage
    stamp = data_stamp(config.data, cache)  # taken before reading: a file changed while it is read is read again
    forget_checked()
    dataset = load_dataset(config.data, cache)
    check_dataset(dataset, config)
    if keep:
        global _checked
        with _lock:
            _checked = (stamp, dataset)
    return dataset


def checked_dataset(config: DataConfig, cache_dir: Path) -> Dataset | None:
    """The dataset :func:`check_before_run` loaded for ``config``, once, if its files have not changed since.

    None when nothing was checked in this process, the settings differ, or a file changed: then read it again.
    """
    global _checked
    with _lock:
        held, _checked = _checked, None
    if held is None:
        return None
    stamp, dataset = held
    if stamp != data_stamp(config, cache_dir):
        logger.info("the data files changed since they were checked (or other settings are used): reading them again")
        return None
    return dataset


def forget_checked() -> None:
    """Drop the dataset kept by :func:`check_before_run` (e.g. when the flow never started)."""
    global _checked
    with _lock:
        _checked = None


def load_for_run(config: DataConfig, cache_dir: Path) -> Dataset:
    """The flow's load stage: load and validate the configured data (or take what ``segflow run`` checked before
    the flow, if the files are unchanged)."""
    dataset = checked_dataset(config, cache_dir)
    if dataset is None:
        return load_dataset(config, cache_dir)
    logger.info("loaded %s: %d interactions, %d users, %d items (checked before the flow started; the files have "
                "not changed since, so they were not read again)", dataset.name, dataset.interactions.height,
                dataset.n_users, dataset.n_items)  # fmt: skip
    return dataset
