"""save and load: round trips on every backend, and bad files fail cleanly."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xaffine
from xaffine import Affine, load, save
from xaffine._backends import dtype_name, to_numpy

SUFFIXES = [".npz", pytest.param(".safetensors", id="safetensors")]
REPO = Path(xaffine.__file__).resolve().parents[1]


def _values(layer):
    """The layer's parameters on the host, bfloat16 widened to float32 (exact)."""
    xp = layer.xp
    out = {}
    for name, a in layer.state_dict().items():
        if dtype_name(a.dtype) == "bfloat16":
            a = xp.astype(a, xp.float32)
        out[name] = to_numpy(a)
    return out


def _assert_same(loaded, layer):
    assert repr(loaded) == repr(layer)
    expected = _values(layer)
    actual = _values(loaded)
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name])


@pytest.mark.gpu_smoke
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(backend, tmp_path, suffix):
    layer = Affine(5, 3, xp=backend.xp, device=backend.device, seed=0)
    path = tmp_path / f"layer{suffix}"
    save(path, layer)
    _assert_same(load(path, xp=backend.xp, device=backend.device), layer)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_no_bias_round_trip(tmp_path, suffix):
    path = tmp_path / f"layer{suffix}"
    save(path, Affine(2, 2, xp="numpy", bias=False, seed=0))
    assert load(path, xp="numpy").bias is None


@pytest.mark.parametrize(
    ("suffix", "dtype"),
    [(".npz", d) for d in ("float16", "float64", "complex64", "complex128")]
    + [(".safetensors", d) for d in ("float16", "float64", "complex64")],
)
def test_dtype_round_trip(tmp_path, suffix, dtype):
    layer = Affine(4, 3, xp="numpy", dtype=dtype, seed=0)
    path = tmp_path / f"layer{suffix}"
    save(path, layer)
    _assert_same(load(path, xp="numpy"), layer)


def test_empty_layer_round_trip(tmp_path):
    path = tmp_path / "layer.safetensors"
    save(path, Affine(0, 3, xp="numpy", seed=0))
    assert load(path, xp="numpy").weight.shape == (3, 0)


# -- bfloat16 (item 8): .safetensors has BF16; NumPy, and so .npz, has none ------------


def test_bfloat16_round_trip(backend, tmp_path):
    if not backend.has("bfloat16"):
        pytest.skip(f"{backend.name} has no bfloat16")
    layer = Affine(5, 3, xp=backend.xp, device=backend.device, dtype="bfloat16", seed=0)
    path = tmp_path / "layer.safetensors"
    save(path, layer)
    loaded = load(path, xp=backend.xp, device=backend.device)
    assert dtype_name(loaded.dtype) == "bfloat16"
    _assert_same(loaded, layer)


def test_bfloat16_npz_is_refused_before_writing(tmp_path):
    pytest.importorskip("torch", reason="a bfloat16 layer needs torch here")
    path = tmp_path / "layer.npz"
    with pytest.raises(TypeError, match=r"layer\.npz: .*bfloat16.*\.safetensors"):
        save(path, Affine(2, 2, xp="torch", dtype="bfloat16"))
    assert os.listdir(tmp_path) == []


def test_bfloat16_file_on_a_backend_without_bfloat16(tmp_path):
    path = tmp_path / "layer.safetensors"
    _write_safetensors(path, {"weight": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [0, 4]}}, bytes(4))
    with pytest.raises(
        TypeError, match=r"layer\.safetensors: `dtype` is bfloat16, but NumPy has no bfloat16: .*dtype='float32'"
    ):
        load(path, xp="numpy")
    # What the message says to do: float32 holds bfloat16 exactly.
    layer = load(path, xp="numpy", dtype="float32")
    assert layer.dtype == np.float32
    np.testing.assert_array_equal(layer.weight, np.zeros((1, 2), np.float32))


# 0x7FC0 and 0xFFC1 are quiet NaNs of either sign, 0x7F81 a signalling NaN; 0x3FC0 is 1.5.
_BF16_NAN_WEIGHT = np.array([[0x7FC0, 0xFFC1], [0x7F81, 0x3FC0]], np.uint16)
_BF16_NAN_BIAS = np.array([0xFFC1, 0x3FC0], np.uint16)


def _bfloat16_from_bits(library, bits):
    if library == "torch":
        torch = pytest.importorskip("torch", reason="a torch bfloat16 layer needs torch")
        return torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)
    jax = pytest.importorskip("jax", reason="a JAX bfloat16 layer needs jax")
    return jax.lax.bitcast_convert_type(jax.numpy.asarray(bits), jax.numpy.bfloat16)


def _bfloat16_bits(library, a):
    if library == "torch":
        import torch

        return a.view(torch.int16).numpy().view(np.uint16)
    import jax

    return np.asarray(jax.lax.bitcast_convert_type(a, jax.numpy.uint16))


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_bfloat16_nan_bits_survive_safetensors_round_trip(tmp_path, library):
    weight = _bfloat16_from_bits(library, _BF16_NAN_WEIGHT)
    bias = _bfloat16_from_bits(library, _BF16_NAN_BIAS)
    layer = Affine.from_state_dict({"weight": weight, "bias": bias}, xp=library)
    path = tmp_path / "layer.safetensors"
    save(path, layer)
    loaded = load(path, xp=library)
    assert dtype_name(loaded.dtype) == "bfloat16"
    assert loaded.weight.dtype == weight.dtype
    np.testing.assert_array_equal(_bfloat16_bits(library, loaded.weight), _BF16_NAN_WEIGHT)
    np.testing.assert_array_equal(_bfloat16_bits(library, loaded.bias), _BF16_NAN_BIAS)


def test_bfloat16_matches_the_safetensors_package(tmp_path):
    torch = pytest.importorskip("torch", reason="the oracle is safetensors.torch")
    st_torch = pytest.importorskip("safetensors.torch", reason="the oracle is the safetensors package")
    weight = torch.tensor([[1.0, -2.5, 3.140625], [1e-3, 65280.0, -0.0]], dtype=torch.bfloat16)
    bias = torch.tensor([0.5, -1.0], dtype=torch.bfloat16)
    theirs = tmp_path / "theirs.safetensors"
    st_torch.save_file({"weight": weight, "bias": bias}, theirs)
    layer = load(theirs, xp="torch")
    assert torch.equal(layer.weight, weight)
    assert torch.equal(layer.bias, bias)
    ours = tmp_path / "ours.safetensors"
    save(ours, layer)
    back = st_torch.load_file(ours)
    assert torch.equal(back["weight"], weight)
    assert torch.equal(back["bias"], bias)


def test_files_match_the_safetensors_package(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy", reason="the oracle is the safetensors package")
    layer = Affine(4, 3, xp="numpy", dtype="complex64", seed=0)
    ours = tmp_path / "ours.safetensors"
    save(ours, layer)
    back = st_numpy.load_file(ours)
    np.testing.assert_array_equal(back["weight"], layer.weight)
    np.testing.assert_array_equal(back["bias"], layer.bias)
    theirs = tmp_path / "theirs.safetensors"
    st_numpy.save_file({"weight": np.ones((2, 3), np.float64)}, theirs, metadata={"format": "np"})
    np.testing.assert_array_equal(load(theirs, xp="numpy").weight, np.ones((2, 3)))


# -- item 1: a failed save leaves the old file intact and no temporary file -----------

_FILL_DISK = """
import os, resource, signal, sys
import xaffine
path = sys.argv[1]
xaffine.save(path, xaffine.Affine(2, 2, xp="numpy", seed=0))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    xaffine.save(path, xaffine.Affine(64, 64, xp="numpy", seed=1))
except OSError as exc:
    print("OSError", exc.errno)
else:
    print("saved")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_over_file_size_limit_keeps_old_file(tmp_path, suffix):
    # In a child process: the limit would also stop this process's own writes.
    path = tmp_path / f"model{suffix}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FILL_DISK), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OSError", str(errno.EFBIG)]
    assert os.listdir(tmp_path) == [path.name]
    _assert_same(load(path, xp="numpy"), Affine(2, 2, xp="numpy", seed=0))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_fsync_keeps_old_file(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"model{suffix}"
    old = Affine(2, 2, xp="numpy", seed=0)
    save(path, old)

    def fsync(fd):
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="simulated I/O error"):
        save(path, Affine(64, 64, xp="numpy", seed=1))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [path.name]
    _assert_same(load(path, xp="numpy"), old)


def test_failed_writer_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = Affine(2, 2, xp="numpy", seed=0)
    save(path, old)

    def savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "simulated full disk")

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(OSError, match="simulated full disk"):
        save(path, Affine(64, 64, xp="numpy", seed=1))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [path.name]
    _assert_same(load(path, xp="numpy"), old)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_keeps_file_mode(tmp_path, suffix):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = tmp_path / f"model{suffix}"
    save(path, Affine(2, 2, xp="numpy"))
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    path.chmod(0o600)
    save(path, Affine(2, 2, xp="numpy"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_through_symlink_writes_the_target(tmp_path):
    target = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    layer = Affine(2, 2, xp="numpy", seed=3)
    save(link, layer)
    assert link.is_symlink()
    _assert_same(load(target, xp="numpy"), layer)


def test_save_into_missing_directory_names_the_path(tmp_path):
    path = tmp_path / "absent" / "model.npz"
    with pytest.raises(FileNotFoundError, match=r"absent.model\.npz"):
        save(path, Affine(2, 2, xp="numpy"))


# -- item 2: load reads headers first and refuses before reading data ----------------


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _npy_header(shape, dtype):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _peak_during(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_extra_member_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "bomb.npz"
    size = 2**26
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in (("weight", np.zeros((2, 2), np.float32)), ("bias", np.zeros(2, np.float32))):
            archive.writestr(f"{key}.npy", _npy_header(value.shape, value.dtype) + value.tobytes())
        with archive.open("zeros.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((size,), np.uint8))
            chunk = bytes(2**20)
            for _ in range(size // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < size // 100

    def attempt():
        with pytest.raises(ValueError, match=r"bomb\.npz: unexpected key 'zeros'"):
            load(path, xp="numpy")

    assert _peak_during(attempt) < size // 8


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_huge_declared_shape_is_refused(tmp_path, compression):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("weight.npy", _npy_header((10**6, 10**7), np.float32) + bytes(16))
    assert path.stat().st_size < 1000

    def attempt():
        with pytest.raises(ValueError, match=r"huge\.npz: 'weight' declares shape \(1000000, 10000000\)"):
            load(path, xp="numpy")

    assert _peak_during(attempt) < 2**20


def test_lying_archive_directory_reads_only_real_data(tmp_path):
    # The directory claims the 40 MB the header declares; the member holds 16 bytes.
    path = tmp_path / "liar.npz"
    header = _npy_header((1000, 10000), np.float32)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weight.npy", header + bytes(16))
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", len(header) + 4 * 10**7)
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(path).getinfo("weight.npy").file_size == len(header) + 4 * 10**7

    def attempt():
        with pytest.raises(ValueError, match=r"liar\.npz: not a readable \.npz file .*'weight'"):
            load(path, xp="numpy")

    assert _peak_during(attempt) < 2**22


def test_member_shorter_than_declared_is_refused(tmp_path):
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weight.npy", _npy_header((4, 4), np.float32) + bytes(8))
    with pytest.raises(ValueError, match=r"short\.npz: 'weight' declares shape \(4, 4\) of float32"):
        load(path, xp="numpy")


def test_bad_npy_header_names_file_and_key(tmp_path):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weight.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n")
    with pytest.raises(ValueError, match=r"bad\.npz: 'weight' has no valid \.npy header"):
        load(path, xp="numpy")


def _write_safetensors(path, header, data=b"", length=None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


def test_safetensors_header_size_is_bounded(tmp_path):
    path = tmp_path / "huge.safetensors"
    _write_safetensors(path, {}, length=2**62)
    with pytest.raises(ValueError, match=r"huge\.safetensors: .*header of 4611686018427387904 bytes"):
        load(path, xp="numpy")


def test_safetensors_huge_declared_shape_is_refused(tmp_path):
    path = tmp_path / "huge.safetensors"
    header = {"weight": {"dtype": "F32", "shape": [10**6, 10**7], "data_offsets": [0, 4 * 10**13]}}
    _write_safetensors(path, header, bytes(16))

    def attempt():
        with pytest.raises(
            ValueError,
            match=r"huge\.safetensors: .*'weight' ends at byte 40000000000000 of the data, which has 16 bytes",
        ):
            load(path, xp="numpy")

    assert _peak_during(attempt) < 2**20


@pytest.mark.parametrize(
    ("header", "pattern"),
    [
        ({"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}, r"'weight' declares shape \(2, 2\)"),
        ({"weight": {"dtype": "F32", "shape": [2, 2]}}, r"'weight' is not a tensor entry"),
        ({"weight": {"dtype": "F32", "shape": [2, True], "data_offsets": [0, 16]}}, r"'weight' is not a tensor entry"),
        ({"bias": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, r"no 'weight'"),
        (
            {
                "weight": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
                "bias": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            r"data offsets",
        ),
        ([1, 2], r"header is not a JSON object"),
    ],
    ids=["size", "no-offsets", "bool-shape", "no-weight", "overlap", "not-object"],
)
def test_bad_safetensors_header(tmp_path, header, pattern):
    path = tmp_path / "bad.safetensors"
    _write_safetensors(path, header, bytes(16))
    with pytest.raises(ValueError, match=rf"bad\.safetensors: .*{pattern}"):
        load(path, xp="numpy")


@pytest.mark.parametrize(
    ("arrays", "error", "pattern"),
    [
        ({"bias": np.zeros(3, np.float32)}, ValueError, r"no 'weight'.*'weight' and optionally 'bias'"),
        ({"weight": np.zeros((3, 2), np.float32), "other": np.zeros(1)}, ValueError, r"unexpected key 'other'"),
        ({"weight": np.zeros(3, np.float32)}, ValueError, r"'weight' must be 2-D"),
        (
            {"weight": np.zeros((3, 2), np.float32), "bias": np.zeros(4, np.float32)},
            ValueError,
            r"'bias' must have shape",
        ),
        ({"weight": np.zeros((3, 2), np.int32)}, TypeError, r"'weight' has dtype int32, which a layer cannot hold"),
        ({"weight": np.zeros((3, 2), np.float32), "bias": np.zeros(3)}, TypeError, r"'bias' has dtype float64"),
    ],
    ids=["missing-weight", "unexpected-key", "weight-1d", "bias-shape", "int-dtype", "mixed-dtype"],
)
def test_bad_contents_name_the_file(tmp_path, arrays, error, pattern):
    path = tmp_path / "bad.npz"
    _write_npz(path, **arrays)
    with pytest.raises(error, match=rf"bad\.npz: .*{pattern}"):
        load(path, xp="numpy")


# -- item 3: each failure reported as what it is --------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"layer{suffix}"
    save(path, Affine(50, 40, xp="numpy", seed=0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"layer{suffix}: not a readable {suffix} file"):
        load(path, xp="numpy")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_text_file_is_not_an_archive(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("weight = [[1, 2], [3, 4]]\n" * 4)
    with pytest.raises(ValueError, match=rf"notes{suffix}: not a readable {suffix} file") as info:
        load(path, xp="numpy")
    assert "pickle" not in str(info.value)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_directory_is_an_os_error(tmp_path, suffix):
    path = tmp_path / f"folder{suffix}"
    path.mkdir()
    with pytest.raises(IsADirectoryError, match=rf"folder{suffix}"):
        load(path, xp="numpy")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_unreadable_file_is_a_permission_error(tmp_path, monkeypatch, suffix):
    # chmod cannot stop root from reading; refuse the open itself instead.
    path = tmp_path / f"locked{suffix}"
    save(path, Affine(2, 2, xp="numpy"))
    real_open = os.open

    def locked_open(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", locked_open)
    with pytest.raises(PermissionError, match=rf"locked{suffix}"):
        load(path, xp="numpy")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root (and Windows) ignore chmod 000")
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_chmod_000_is_a_permission_error(tmp_path, suffix):
    path = tmp_path / f"locked{suffix}"
    save(path, Affine(2, 2, xp="numpy"))
    path.chmod(0)
    with pytest.raises(PermissionError, match=rf"locked{suffix}"):
        load(path, xp="numpy")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors"):
        load(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        load(tmp_path / "absent.npz")


def test_complex128_safetensors_is_refused_before_writing(tmp_path):
    path = tmp_path / "layer.safetensors"
    with pytest.raises(TypeError, match=r"layer\.safetensors: the \.safetensors format has no complex128"):
        save(path, Affine(2, 2, xp="numpy", dtype="complex128"))
    assert os.listdir(tmp_path) == []


def test_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"`path` must end in \.npz or \.safetensors; got .*layer\.pt"):
        save(tmp_path / "layer.pt", Affine(2, 2, xp="numpy"))


# -- item 4: native byte order; only a layer's dtypes ---------------------------------


def test_big_endian_npz_loads_native(tmp_path):
    path = tmp_path / "big.npz"
    weight = np.arange(6, dtype=">f4").reshape(3, 2)
    _write_npz(path, weight=weight, bias=np.ones(3, ">f4"))
    layer = load(path, xp="numpy")
    assert layer.dtype == np.dtype(np.float32)
    assert layer.dtype.isnative
    np.testing.assert_array_equal(layer.weight, weight)
    y = layer(np.ones((1, 2), np.float32))
    assert layer.backward(np.ones_like(y)).dtype == np.float32


def test_fortran_order_npz_loads(tmp_path):
    path = tmp_path / "fortran.npz"
    weight = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))
    _write_npz(path, weight=weight)
    np.testing.assert_array_equal(load(path, xp="numpy").weight, weight)


@pytest.mark.parametrize(
    ("dtype", "shown"),
    [(np.longdouble, str(np.dtype(np.longdouble))), (np.int64, "int64"), (object, "object"), (np.bool_, "bool")],
    ids=["longdouble", "int64", "object", "bool"],
)
def test_unsupported_npz_dtype_is_refused(tmp_path, dtype, shown):
    if np.dtype(dtype) == np.dtype(np.float64):
        pytest.skip("longdouble is float64 on this platform")
    path = tmp_path / "odd.npz"
    arrays = {"weight": np.zeros((2, 2), dtype)}
    if dtype is object:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weight.npy", _npy_header((2, 2), object) + b"pickled?")
    else:
        _write_npz(path, **arrays)
    with pytest.raises(TypeError, match=rf"odd\.npz: 'weight' has dtype {shown}, which a layer cannot hold"):
        load(path, xp="numpy")


@pytest.mark.parametrize("code", ["I32", "F8_E4M3", "BOOL"])
def test_unsupported_safetensors_dtype_is_refused(tmp_path, code):
    path = tmp_path / "odd.safetensors"
    _write_safetensors(path, {"weight": {"dtype": code, "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16))
    with pytest.raises(TypeError, match=rf"odd\.safetensors: 'weight' has dtype {code}, which a layer cannot hold"):
        load(path, xp="numpy")


def test_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    _write_npz(path, weight=np.array([object()], dtype=object))
    with pytest.raises(TypeError, match=r"evil\.npz: 'weight' has dtype object"):
        load(path, xp="numpy")


# -- round two: only regular files are read or replaced -------------------------------


def _char_device(path):
    """A private character device node (the numbers of /dev/null), or a skip where mknod is not allowed."""
    if not hasattr(os, "mknod"):
        pytest.skip("os.mknod is POSIX-only")
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:  # needs root (CAP_MKNOD), and a file system that allows device nodes
        pytest.skip(f"cannot make a character device here: {exc}")


def _fifo(path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("os.mkfifo is POSIX-only")
    os.mkfifo(path)


_SPECIAL = {"fifo": (_fifo, stat.S_ISFIFO), "char-device": (_char_device, stat.S_ISCHR)}


def _in_thread(fn, seconds=20):
    """Run fn in a daemon thread; what it raised, or a failure if it still runs after `seconds` (it hung)."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome


def _special(make: Any, tmp_path: Path, through_link: bool, suffix: str) -> tuple[Path, Path]:
    """A node made by `make` in `tmp_path`, and the path to it: itself, or a link to it."""
    node = tmp_path / f"node{suffix}"
    make(node)
    if not through_link:
        return node, node
    path = tmp_path / f"link{suffix}"
    path.symlink_to(node)
    return node, path


def _every_special_path(test: Any) -> Any:
    """Each kind of special file, reached directly or through a link, with each suffix."""
    for mark in (
        pytest.mark.parametrize("suffix", SUFFIXES),
        pytest.mark.parametrize("through_link", [False, True], ids=["direct", "symlink"]),
        pytest.mark.parametrize("kind", list(_SPECIAL)),
        pytest.mark.skipif(sys.platform == "win32", reason="device nodes and FIFOs are POSIX"),
    ):
        test = mark(test)
    return test


@_every_special_path
def test_save_never_replaces_what_is_not_a_regular_file(tmp_path, kind, through_link, suffix):
    make, is_kind = _SPECIAL[kind]
    node, path = _special(make, tmp_path, through_link, suffix)
    outcome = _in_thread(lambda: save(path, Affine(2, 2, xp="numpy")))
    error = outcome.get("error")
    assert isinstance(error, OSError), outcome
    assert path.name in str(error)
    assert "regular file" in str(error)
    assert is_kind(node.lstat().st_mode)  # still the node it was
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({node.name, path.name})


@_every_special_path
def test_load_never_reads_what_is_not_a_regular_file(tmp_path, kind, through_link, suffix):
    make, is_kind = _SPECIAL[kind]
    node, path = _special(make, tmp_path, through_link, suffix)
    outcome = _in_thread(lambda: load(path, xp="numpy"))
    error = outcome.get("error")
    assert isinstance(error, OSError), outcome
    assert isinstance(error, ValueError)  # a bad `path` too, as io.UnsupportedOperation is
    assert path.name in str(error)
    assert "regular file" in str(error)
    assert is_kind(node.lstat().st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_of_a_link_to_dev_zero_reads_nothing(tmp_path, suffix):
    link = tmp_path / f"zero{suffix}"
    link.symlink_to("/dev/zero")
    peak = _peak_during(lambda: _in_thread(lambda: load(link, xp="numpy"), seconds=10))
    with pytest.raises(OSError, match=r"character device \(a link to '/dev/zero'\)"):
        load(link, xp="numpy")
    assert peak < 1 << 20


def test_a_regular_file_through_links_still_loads_and_saves(tmp_path):
    real = tmp_path / "real.npz"
    save(real, Affine(2, 2, xp="numpy", seed=0))
    (tmp_path / "hop.npz").symlink_to(real)
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "hop.npz")
    layer = Affine(2, 2, xp="numpy", seed=5)
    save(link, layer)
    _assert_same(load(link, xp="numpy"), layer)
    assert link.is_symlink()


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: None, "NoneType None"),
        (lambda: np.asmatrix(np.ones((2, 2))), "numpy.matrix"),
        (lambda: {"weight": np.ones((2, 2))}, "dict"),
    ],
    ids=["None", "matrix", "state-dict"],
)
def test_save_takes_a_layer(tmp_path, make, shown):
    layer = make()
    path = tmp_path / "layer.npz"
    with pytest.raises(TypeError, match=rf"`layer` must be an xaffine.Affine; got {re.escape(shown)}"):
        save(path, layer)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("through_link", [False, True], ids=["direct", "symlink"])
def test_save_does_not_replace_a_read_only_file(tmp_path, suffix, through_link):
    path = tmp_path / f"kept{suffix}"
    old = Affine(2, 2, xp="numpy", seed=0)
    save(path, old)
    path.chmod(0o444)
    given = path
    if through_link:
        given = tmp_path / f"link{suffix}"
        given.symlink_to(path)
    with pytest.raises(PermissionError, match=rf"link{suffix}|kept{suffix}") as info:
        save(given, Affine(2, 2, xp="numpy", seed=1))
    assert "read-only" in str(info.value)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    _assert_same(load(path, xp="numpy"), old)
    assert len(list(tmp_path.iterdir())) == 1 + through_link
    path.chmod(0o644)
    save(given, Affine(2, 2, xp="numpy", seed=1))  # writable again: replaced
    _assert_same(load(path, xp="numpy"), Affine(2, 2, xp="numpy", seed=1))


@pytest.mark.parametrize("shape", [[0, 2**62], [0, 2**40], [2**40, 0], [2**31, 0]])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_crafted_feature_counts_are_refused_naming_file_and_key(tmp_path, shape, suffix):
    path = tmp_path / f"crafted{suffix}"
    if suffix == ".npz":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weight.npy", _npy_header(tuple(shape), "<f4"))
    else:
        _write_safetensors(path, {"weight": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}, b"")
    with pytest.raises(ValueError, match=rf"crafted{suffix}: 'weight' declares shape .*from 0 to 2147483647"):
        load(path, xp="numpy")


def test_the_largest_feature_count_loads(tmp_path):
    path = tmp_path / "wide.safetensors"
    _write_safetensors(path, {"weight": {"dtype": "F32", "shape": [0, 2**31 - 1], "data_offsets": [0, 0]}}, b"")
    assert load(path, xp="numpy").in_features == 2**31 - 1


def test_feature_counts_of_a_new_layer_are_bounded():
    with pytest.raises(ValueError, match=r"`in_features` must be an integer from 0 to 2147483647"):
        Affine(2**40, 0, xp="numpy")
    with pytest.raises(ValueError, match=r"`out_features` must be an integer from 0 to 2147483647"):
        Affine(0, 2**31, xp="numpy")
    with pytest.raises(ValueError, match=r"`in_features` must be an integer from 0 to 2147483647"):
        Affine.from_state_dict({"weight": np.zeros((0, 2**40), np.float32)}, xp="numpy")


def test_a_bad_xaffine_backend_variable_is_named_not_the_file(tmp_path, monkeypatch):
    path = tmp_path / "layer.npz"
    save(path, Affine(2, 2, xp="numpy"))
    monkeypatch.setenv("XAFFINE_BACKEND", "junk")
    for call in (lambda: load(path), lambda: Affine(2, 2)):
        with pytest.raises(ValueError, match=r"XAFFINE_BACKEND='junk' is not a backend: unknown backend") as info:
            call()
        assert "layer.npz" not in str(info.value)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_load_peak_memory_is_close_to_the_parameters(tmp_path, suffix, byte_order):
    """`load` holds one copy of the data: its peak is at most 1.2x the parameters' bytes."""
    if suffix == ".safetensors" and byte_order == ">":
        pytest.skip("reason: .safetensors is little-endian only")
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((2048, 1024)).astype(byte_order + "f4")  # 8 MiB
    bias = rng.standard_normal(2048).astype(byte_order + "f4")
    path = tmp_path / f"layer{suffix}"
    if suffix == ".npz":
        np.savez(path, weight=weight, bias=bias)
    else:
        save(path, Affine.from_state_dict({"weight": weight, "bias": bias}, xp="numpy"))
    tracemalloc.start()
    try:
        loaded = load(path, xp="numpy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / (weight.nbytes + bias.nbytes) <= 1.2
    np.testing.assert_array_equal(to_numpy(loaded.weight), weight)
    np.testing.assert_array_equal(to_numpy(loaded.bias), bias)


@pytest.mark.parametrize(
    "state",
    [
        {"weight": np.zeros(3, np.float32)},
        {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(3, np.float32)},
        {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(2, np.float64)},
    ],
    ids=["1-d weight", "bias shape", "bias dtype"],
)
def test_a_file_and_a_state_dict_get_one_layout_message(tmp_path, state):
    """One check of a layer's layout serves `from_state_dict` and the header of a file: the
    messages are the same, the file's with its name in front."""
    path = tmp_path / "layout.npz"
    np.savez(path, **state)
    with pytest.raises((ValueError, TypeError)) as from_dict:
        Affine.from_state_dict(state, xp="numpy")
    with pytest.raises(type(from_dict.value)) as from_file:
        load(path, xp="numpy")
    assert str(from_file.value) == f"{path}: {from_dict.value}"


@pytest.mark.parametrize("length", [200, 237, 238, 250, 255])
def test_a_long_but_valid_file_name_saves_and_loads(tmp_path, length):
    """Names of up to 255 bytes, which open() takes: the hidden names beside them are cut
    short to fit (they once made 'File name too long' from 238 bytes on)."""
    layer = Affine(3, 2, xp="numpy", seed=0)
    for stem in ("a" * (length - 4), ("é" * length)[: (length - 4) // 2]):
        path = tmp_path / f"{stem}.npz"
        save(path, layer)
        save(path, layer)  # replacing it too
        loaded = load(path, xp="numpy")
        np.testing.assert_array_equal(loaded.weight, layer.weight)
    assert all(not p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and symbolic links are POSIX here")
@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_link_is_named_only_where_the_path_is_one(tmp_path, monkeypatch, kind):
    """A plain relative path to a folder or FIFO is named as given; `(a link to ...)` only
    where the path is a symbolic link."""
    monkeypatch.chdir(tmp_path)
    node = tmp_path / "layer.npz"
    node.mkdir() if kind == "directory" else os.mkfifo(node)
    (tmp_path / "via.npz").symlink_to(node)
    for path, linked in (("layer.npz", False), ("via.npz", True)):
        for run in (lambda p: load(p, xp="numpy"), lambda p: save(p, Affine(2, 2, xp="numpy"))):
            with pytest.raises(OSError, match=r"is a directory|is a FIFO") as caught:
                run(path)
            assert caught.value.filename == path
            assert ("a link to" in str(caught.value)) is linked, str(caught.value)


def test_a_layer_on_torchs_meta_device_is_refused_naming_it(tmp_path):
    """A meta tensor has shapes and no values: save, export and .to() say so, naming the
    parameter, and write nothing (torch's NotImplementedError once came through)."""
    pytest.importorskip("torch", reason="torch's meta device")
    layer = Affine(3, 2, xp="torch", device="meta")
    pattern = r"`(layer`'s )?weight`? is on torch's meta device, which holds shapes and dtypes but no values"
    for suffix in (".npz", ".safetensors"):
        with pytest.raises(ValueError, match=pattern):
            save(tmp_path / f"m{suffix}", layer)
    with pytest.raises(ValueError, match=pattern):
        layer.to("numpy")
    try:
        from xaffine.onnx import export
    except ImportError:
        pass
    else:
        with pytest.raises((ValueError, ImportError), match=pattern + "|ndonnx|onnx"):
            export(layer, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
