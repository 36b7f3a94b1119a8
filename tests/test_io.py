"""save and load: round trips on every backend, and bad files fail cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from xaffine import Affine, load, save
from xaffine._backends import to_numpy

SUFFIXES = [".npz", pytest.param(".safetensors", id="safetensors")]


def _needs(suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="the .safetensors format needs the safetensors package")


@pytest.mark.gpu_smoke
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(backend, tmp_path, suffix):
    _needs(suffix)
    layer = Affine(5, 3, xp=backend.xp, device=backend.device, seed=0)
    path = tmp_path / f"layer{suffix}"
    save(path, layer)
    loaded = load(path, xp=backend.xp, device=backend.device)
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(to_numpy(getattr(loaded, name)), to_numpy(getattr(layer, name)))
    assert repr(loaded) == repr(layer)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_no_bias_round_trip(tmp_path, suffix):
    _needs(suffix)
    path = tmp_path / f"layer{suffix}"
    save(path, Affine(2, 2, xp="numpy", bias=False, seed=0))
    assert load(path, xp="numpy").bias is None


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("arrays", "error", "pattern"),
    [
        ({"bias": np.zeros(3, np.float32)}, ValueError, r"'weight' and optionally 'bias'"),
        ({"weight": np.zeros((3, 2), np.float32), "other": np.zeros(1)}, ValueError, r"got keys \['other', 'weight'\]"),
        ({"weight": np.zeros(3, np.float32)}, ValueError, r"'weight' must be 2-D"),
        (
            {"weight": np.zeros((3, 2), np.float32), "bias": np.zeros(4, np.float32)},
            ValueError,
            r"'bias' must have shape",
        ),
        ({"weight": np.zeros((3, 2), np.int32)}, TypeError, r"'weight' must have a floating-point dtype; got int32"),
        ({"weight": np.zeros((3, 2), np.float32), "bias": np.zeros(3)}, TypeError, r"'bias' has dtype float64"),
    ],
    ids=["missing-weight", "unexpected-key", "weight-1d", "bias-shape", "int-dtype", "mixed-dtype"],
)
def test_bad_contents_name_the_file(tmp_path, arrays, error, pattern):
    path = tmp_path / "bad.npz"
    _write_npz(path, **arrays)
    with pytest.raises(error, match=rf"bad\.npz: .*{pattern}|bad\.npz: {pattern}"):
        load(path, xp="numpy")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file(tmp_path, suffix):
    _needs(suffix)
    path = tmp_path / f"layer{suffix}"
    save(path, Affine(50, 40, xp="numpy", seed=0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"layer{suffix}: not a readable {suffix} file"):
        load(path, xp="numpy")


def test_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    _write_npz(path, weight=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match=r"evil\.npz: not a readable \.npz file.*allow_pickle"):
        load(path, xp="numpy")


def test_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"`path` must end in \.npz or \.safetensors; got .*layer\.pt"):
        save(tmp_path / "layer.pt", Affine(2, 2, xp="numpy"))
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")
