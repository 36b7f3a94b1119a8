"""``xaffine export LAYER.npz OUT.onnx [--backward]``: a saved layer as an ONNX model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``export`` command to `subparsers` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        "export",
        help="write a saved layer as an ONNX model",
        description="Write the layer saved in LAYER (.npz or .safetensors) as an ONNX model of its "
        "forward pass, with a symbolic batch axis N; see xaffine.onnx.export.",
    )
    parser.add_argument("layer", metavar="LAYER.npz", help="a layer saved with xaffine.save")
    parser.add_argument("out", metavar="OUT.onnx", help="the model file to write (replaced atomically)")
    parser.add_argument(
        "--backward",
        action="store_true",
        help="also write the backward model (grad_x, grad_weight, grad_bias from grad) as OUT.backward.onnx",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``export``; 0 on success, 1 (with the reason on stderr) on failure."""
    import xaffine
    from xaffine.onnx import export

    try:
        layer = xaffine.load(args.layer, xp="numpy")
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
