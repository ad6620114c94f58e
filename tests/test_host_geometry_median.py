"""The exact median of region depths (``core/output/projection.py``): the histogram-narrowed
selection gives numpy's own order statistics and median bit for bit, whatever the values."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.output.projection import RADIX_MIN_VALUES, _kth_values, _median


def _cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 3 * RADIX_MIN_VALUES + 1
    floor = np.repeat(np.linspace(1.2, 6.0, 480, dtype=np.float32), n // 480 + 1)[:n]
    return {
        "uniform": rng.uniform(0.3, 8.0, n).astype(np.float32),
        "floor rows": rng.permutation(floor),
        "one value": np.full(n, 2.5, np.float32),
        "two values": rng.choice(np.float32([1.0, 1.0000001]), n),
        "one bin": (1.0 + rng.integers(0, 50, n) * np.float32(2**-23)).astype(np.float32),
        "tiny and huge": rng.choice(np.float32([1e-38, 1e-45, 0.0, 3e38, np.inf, 7.0]), n),
        "spread": np.exp(rng.uniform(-80, 80, n)).astype(np.float32),
    }


@pytest.mark.parametrize("trim", [0, 1, 2])
def test_kth_values_equal_partition(trim):
    rng = np.random.default_rng(trim)
    for name, values in _cases(rng).items():
        values = values[: values.size - trim]
        ks = sorted({0, values.size // 2 - 1, values.size // 2, values.size - 1})
        want = np.partition(values, ks)[ks]
        got = _kth_values(values, tuple(ks))
        assert np.array_equal(np.array(got, np.float32), want), name


@pytest.mark.parametrize("size", [1, 2, 7, RADIX_MIN_VALUES - 1, RADIX_MIN_VALUES, 50_001])
def test_median_equals_numpy_float64_median(size):
    rng = np.random.default_rng(size)
    for name, values in _cases(rng).items():
        values = rng.choice(values, size)
        want = float(np.median(values.astype(np.float64)))
        got = _median(values)
        assert got == want or (np.isnan(got) and np.isnan(want)), name


def test_negative_values_are_refused_not_misordered():
    values = np.linspace(-1.0, 1.0, RADIX_MIN_VALUES + 1, dtype=np.float32)
    with pytest.raises(ValueError):
        _kth_values(values, (5,))
