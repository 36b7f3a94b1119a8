"""``xaffine export LAYER.npz OUT.onnx [--backward]``: a saved layer as an ONNX model."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``export`` command to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        "export",
        help="write a saved layer as an ONNX model",
        description="Write the layer saved in LAYER (.npz or .safetensors) as an ONNX model of its "
        "forward pass, with a symbolic batch axis N; see xaffine.onnx.export. OUT (and OUT.backward.onnx) "
        "must not be LAYER itself (compared by file identity, links included).",
    )
    parser.add_argument("layer", metavar="LAYER.npz", help="a layer saved with xaffine.save")
    parser.add_argument("out", metavar="OUT.onnx", help="the model file to write (replaced atomically)")
    parser.add_argument(
        "--backward",
        action="store_true",
        help="also write the backward model (grad_x, grad_weight, grad_bias from grad) as OUT.backward.onnx",
    )
    parser.set_defaults(run=run)


def _same_file(a: str, b: str) -> bool:
    """Whether `a` and `b` are one file (hard links and symbolic links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def run(args: argparse.Namespace) -> int:
    """Run ``export``; 0 on success, 1 (with the reason on stderr) on failure, 2 for an output
    that is the input."""
    import xaffine
    from xaffine.onnx import backward_path, export

    outputs = [args.out] + ([backward_path(args.out)] if args.backward else [])
    for out in outputs:
        if _same_file(args.layer, out):
            print(
                f"xaffine export: error: the output {out!r} is the input {args.layer!r}; writing it would "
                "destroy the layer: choose another OUT",
                file=sys.stderr,
            )
            return 2
    try:
        try:
            layer = xaffine.load(args.layer, xp="numpy")
        except TypeError as exc:  # a dtype NumPy lacks (bfloat16), or none a layer holds
            hint = (
                "ONNX models are exported in float16, float32 or float64; to export a float32 copy, save one "
                f"first: xaffine.save('copy.safetensors', xaffine.load({args.layer!r}, xp='numpy', dtype='float32'))"
            )
            msg = f"{exc}. {hint}"
            raise TypeError(msg) from exc
        written = export(layer, args.out, backward=args.backward)
    except ImportError as exc:
        print(f"xaffine export: needs ndonnx and onnx: pip install 'xaffine[onnx]' ({exc})", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:
        print(f"xaffine export: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
