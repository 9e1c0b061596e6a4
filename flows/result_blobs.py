"""The task cache's serializer: a stage's result pickled straight into a data file beside the record.

Prefect's own ``pickle`` serializer returns the whole pickle base64-encoded, and the record that holds it is then
rendered as one JSON string and encoded to bytes: about four copies of the pickle in memory at once, 1.35 times
its size each. At 1M users the represent stage's result (the user vectors and the behaviour profiles, about 2 GB
pickled) briefly took 8-10 GB more while it was persisted. :class:`BlobSerializer` streams the pickle (protocol 5:
arrays go to the file from their own buffers) into ``<cache_dir>/prefect-results/blobs/<uuid>.pkl`` and gives Prefect
a pointer of a few bytes to keep in the record; loading streams it back. ``segflow clean --cache`` counts and removes
a record with its data file (:mod:`segmentation.cache`), and :func:`drop_lost_record` turns a record whose data file
is gone into a cache miss (the stage is computed again) instead of a failed load.
"""

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
from prefect.serializers import Serializer
from pydantic import Field

from segmentation.cache import BLOB_SERIALIZER, record_blob

__all__ = ["BlobSerializer", "drop_lost_record"]

logger = logging.getLogger(__name__)


# a subclass of Serializer, not of Serializer[Any]: pydantic would register that parametrised class with Prefect too
class BlobSerializer(Serializer):
    """Pickles a result into a file of its own in ``folder``; the record keeps ``{"blob": name, "bytes": size}``."""

    type: str = Field(default=BLOB_SERIALIZER, frozen=True)
    # a default: the Prefect API keeps only a serializer's type in the task run's state it sends back, and the
    # client validates that state (the record in the result storage keeps the folder, and loading reads it there)
    folder: str = ""

    def dumps(self, obj: Any) -> bytes:
        if not self.folder:
            raise ValueError("BlobSerializer needs the folder its data files go to")
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.pkl"
        partial = folder / f".{name}.partial"
        with open(partial, "wb") as f:
            cloudpickle.dump(obj, f, protocol=5)
        os.replace(partial, folder / name)  # whole or absent: a reader never sees half a file
        return json.dumps({"blob": name, "bytes": (folder / name).stat().st_size}).encode()

    def loads(self, blob: bytes) -> Any:
        if not self.folder:
            raise ValueError("a segflow-blob result without its folder: read it from its record in the result storage")
        with open(Path(self.folder) / json.loads(blob)["blob"], "rb") as f:
            return cloudpickle.load(f)


def drop_lost_record(record: Path) -> bool:
    """Remove ``record`` if the data file it points to is gone (removed by hand, or the cache folder moved), so that
    Prefect finds no cached result and runs the stage; True if it did."""
    blob = record_blob(record)
    if blob is None or blob.is_file():
        return False
    record.unlink(missing_ok=True)
    logger.warning("cache: %s pointed to %s, which is gone; the stage is computed again", record.name, blob)
    return True
