"""worker.npz writes .npz files that numpy and zipfile read back exactly."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from trainyard.worker.npz import npz_bytes
from trainyard.worker.training import weights_npz

RNG = np.random.default_rng(7)

ARRAYS = {
    "float64 matrix": RNG.standard_normal((64, 128)),
    "float32 vector": RNG.standard_normal(10).astype(np.float32),
    "big-endian": RNG.standard_normal(5).astype(">f8"),
    "ints": np.arange(12, dtype=np.int32).reshape(3, 4),
    "bools": RNG.random((4, 4)) > 0.5,
    "scalar": np.array(3.5),
    "empty": np.zeros((0, 7)),
    "fortran order": np.asfortranarray(RNG.standard_normal((6, 3))),
    "strided view": RNG.standard_normal((8, 8))[::2, 1::3],
}


def test_numpy_reads_back_every_array_exactly():
    data = npz_bytes({name.replace(" ", "_"): array for name, array in ARRAYS.items()})

    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None  # every member's CRC holds
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        assert loaded.files == [name.replace(" ", "_") for name in ARRAYS]
        for name, array in ARRAYS.items():
            got = loaded[name.replace(" ", "_")]
            assert got.dtype == array.dtype and got.shape == array.shape
            assert np.array_equal(got, array), name


def test_same_arrays_as_numpy_savez():
    weights = [RNG.standard_normal((64, 64)), RNG.standard_normal(64), RNG.standard_normal((64, 10)), np.zeros(10)]
    reference = io.BytesIO()
    np.savez(reference, W1=weights[0], b1=weights[1], W2=weights[2], b2=weights[3])
    reference.seek(0)
    with np.load(reference) as expected, np.load(io.BytesIO(weights_npz(weights))) as got:
        assert got.files == expected.files == ["W1", "b1", "W2", "b2"]
        for name in expected.files:
            assert np.array_equal(got[name], expected[name])


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="pickle"):
        npz_bytes({"bad": np.array([{"a": 1}], dtype=object)})
