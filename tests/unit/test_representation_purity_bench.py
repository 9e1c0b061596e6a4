"""benchmarks/representation_purity.py: the neighbour share it reports, and its refusal of held-out worlds."""

import numpy as np
import pytest

from benchmarks.representation_purity import CANDIDATES, main, name, purity
from segmentation.config import RepresentConfig


def test_purity_counts_each_users_nearest_others_in_their_own_segment():
    # two tight groups on two axes and one planted user placed inside the other group
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0]) + rng.normal(scale=0.01, size=(6, 2))
    b = np.array([0.0, 1.0]) + rng.normal(scale=0.01, size=(6, 2))
    x = np.vstack([a, b])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.array([0] * 6 + [1] * 5 + [0])  # the last user of group b is planted in segment 0
    mean, share = purity(x, truth, k=5)
    assert share[:6].tolist() == [1.0] * 6  # their 5 others are the rest of group a
    assert share[-1] == 0.0  # its neighbours are all segment 1
    assert np.allclose(share[6:11], 4 / 5)  # four of their five others share their segment
    assert mean == pytest.approx(float(np.mean(share)))
    noise = truth.copy()
    noise[-1] = -1  # a noise user counts for nobody's mean but stays a neighbour
    assert purity(x, noise, k=5)[0] == pytest.approx(float(np.mean(share[:11])))


def test_the_default_is_among_the_screened_candidates_and_held_out_worlds_are_refused():
    default = RepresentConfig()
    screened = [name(m, w) for m, w in CANDIDATES]
    assert name(default.method, default.weights) in screened
    four = "item-mean+category-hist+liked-category-hist+category-rating"
    assert name(default.method, default.weights) == four + "@category-rating=0.5"  # the default, at its weight
    assert name("item-mean+liked-category-hist", default.weights) == screened[0]  # the default before, first
    with pytest.raises(SystemExit):
        main(["--worlds", "nested"])
