"""The cluster bootstrap against cases that can be worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator import stats


def test_two_values_enumerated_exactly():
    """Mean of {0, 1} resampled: 0 (1/4), 0.5 (1/2), 1 (1/4); so the 2.5% and 97.5% percentiles are
    exactly 0 and 1, and the resampled frequencies match the enumeration."""
    boot = stats.bootstrap_means([0.0, 1.0], n_resamples=10_000, seed=0)
    freq = {v: float(np.mean(boot == v)) for v in (0.0, 0.5, 1.0)}
    assert sum(freq.values()) == 1.0
    assert freq[0.0] == pytest.approx(0.25, abs=0.02) and freq[0.5] == pytest.approx(0.5, abs=0.02)
    iv = stats.mean_interval([0.0, 1.0])
    assert (iv.estimate, iv.lo, iv.hi, iv.n_images, iv.n_clusters, iv.clustered) == (0.5, 0.0, 1.0, 2, 2, False)
    assert iv.half_width == 0.5 and not iv.excludes_zero


def test_three_values_interval_is_min_max():
    """Mean of 3 draws from {m-1, m, m+1}: P(all m-1) = 1/27 > 2.5%, so the interval is [m-1, m+1]."""
    iv = stats.mean_interval([19.0, 20.0, 21.0])
    assert (iv.lo, iv.estimate, iv.hi) == (19.0, 20.0, 21.0)


def test_equal_values_give_zero_width():
    iv = stats.mean_interval([0.3] * 7, clusters=list("aabbccd"))
    assert iv.lo == iv.hi == iv.estimate == pytest.approx(0.3) and iv.half_width == 0.0
    assert (iv.n_images, iv.n_clusters, iv.clustered) == (7, 4, True) and iv.excludes_zero


def test_cluster_resampling_is_wider_than_iid():
    """Two photos, three crops each, the crops of a photo equal: iid resampling of 6 values is
    narrow; resampling the 2 clusters gives means 0, 0.5, 1 -> [0, 1]."""
    values = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    iid = stats.mean_interval(values)
    clustered = stats.mean_interval(values, clusters=["a", "a", "a", "b", "b", "b"])
    assert (clustered.lo, clustered.hi, clustered.n_clusters) == (0.0, 1.0, 2)
    assert iid.hi - iid.lo < clustered.hi - clustered.lo and iid.n_clusters == 6
    assert 0.0 < iid.lo < iid.hi < 1.0


def test_unequal_cluster_sizes_weigh_by_images():
    """Clusters {a: 0 (one image), b: 1, 1, 1 (three)}: resamples aa, ab, ba, bb -> 0, 3/4, 3/4, 1."""
    boot = stats.bootstrap_means([0.0, 1.0, 1.0, 1.0], clusters=["a", "b", "b", "b"], n_resamples=4000)
    assert set(np.round(boot, 12)) == {0.0, 0.75, 1.0}
    assert float(np.mean(boot == 0.75)) == pytest.approx(0.5, abs=0.03)


def test_pairing_matters():
    """A constant shift per image: the paired delta has zero width, the unpaired one is wide."""
    rng = np.random.default_rng(3)
    base = rng.normal(20.0, 3.0, 40)
    method = base + 0.5
    paired = stats.paired_delta(method, base)
    unpaired = stats.unpaired_delta(method, base)
    assert paired.estimate == pytest.approx(0.5) and paired.hi - paired.lo < 1e-9 and paired.excludes_zero
    assert unpaired.estimate == pytest.approx(0.5) and unpaired.hi - unpaired.lo > 1.0 and not unpaired.excludes_zero


def test_one_cluster_has_no_interval_and_nans_are_dropped():
    iv = stats.mean_interval([1.0, 2.0, 3.0], clusters=["p", "p", "p"])
    assert iv.estimate == 2.0 and math.isnan(iv.lo) and not iv.defined and not iv.excludes_zero
    iv = stats.paired_delta([1.0, np.nan, 3.0], [0.0, 0.0, np.nan])
    assert (iv.n_images, iv.estimate) == (1, 1.0)
    empty = stats.mean_interval([])
    assert empty.n_images == 0 and math.isnan(empty.estimate)


def test_fixed_seed_is_deterministic_and_validates():
    values = np.linspace(0, 1, 9)
    assert stats.mean_interval(values) == stats.mean_interval(values)
    assert stats.mean_interval(values, seed=1) != stats.mean_interval(values, seed=2)
    with pytest.raises(ValueError, match="length"):
        stats.paired_delta([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        stats.mean_interval(values, level=1.5)
