"""Degenerate but readable data: every run completes or exits 2 with a message, never a traceback.

The regression tests of single bugs come first; the property-based test over generated odd datasets is last.
"""

import numpy as np
import pytest

from embeddings.encoder import Embeddings
from segmentation._errors import DataError
from segmentation.cluster import NOISE, Clusterer
from segmentation.config import ClusterConfig, ReduceConfig


def test_clusterer_without_any_segment_labels_everyone_an_outlier():
    """HDBSCAN finding no cluster (identical points) used to end in IndexError on the empty label mapping."""
    clusterer = Clusterer(15).fit(np.zeros((100, 5), np.float32))
    assert clusterer.n_segments_ == 0
    assert (clusterer.labels_ == NOISE).all() and clusterer.soft_.shape == (100, 0)
    with pytest.warns(UserWarning, match="does not have any defined clusters"):
        labels, strength = clusterer.predict(np.zeros((3, 5)))
    assert labels.tolist() == [NOISE] * 3 and strength.tolist() == [0.0] * 3


@pytest.mark.umap
def test_segment_stage_explains_users_that_cannot_be_told_apart():
    """The run's segmentation with no segment is bad data (every user the same), not a crash."""
    from segmentation import stages

    users = Embeddings(np.array([f"u{i}" for i in range(120)], dtype=object), np.full((120, 16), 0.25, np.float32), "m")
    with pytest.raises(DataError, match="all 120 users have the same user vector"):
        stages.segment(users, ReduceConfig(), ClusterConfig(), seed=0)
