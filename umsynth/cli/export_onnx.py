"""``umsynth export-onnx``: the generator of a checkpoint as an ONNX file, checked with onnxruntime."""
from __future__ import annotations

from umsynth.cli._actions import add_from_checkpoint
from umsynth.synth import export_onnx


def register(subparsers) -> None:
    """Add the ``export-onnx`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "export-onnx", help="export the generator to ONNX",
        description="Export the generator (input 'cond', outputs 'ct' and 'seg_logits'; batch, height and "
                    "width dynamic) and compare onnxruntime's output with PyTorch's on the CPU (needs "
                    "onnxruntime; --no-check skips the comparison).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="training checkpoint (RUN/checkpoints/last.pt) or run folder")
    p.add_argument("file", metavar="FILE", nargs="?", help="the .onnx file to write (or --out FILE)")
    p.add_argument("--out", metavar="FILE", help="the .onnx file to write")
    add_from_checkpoint(p, "with a run folder, which checkpoint")
    p.add_argument("--height", type=int, default=256, help="height of the check input (default 256)")
    p.add_argument("--width", type=int, default=256, help="width of the check input (default 256)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed difference (default 1e-4)")
    p.add_argument("--no-check", action="store_true", help="do not run the onnxruntime comparison")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``umsynth export-onnx``."""
    from umsynth.cli.synthesize import checkpoint_path

    if args.file is not None and args.out is not None and args.file != args.out:
        raise ValueError(f"two output files given: {args.file} and --out {args.out}")
    out = args.out or args.file
    if out is None:
        raise ValueError("give the .onnx file to write: export-onnx CHECKPOINT FILE, or --out FILE")
    if not args.no_check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError("onnxruntime is not installed: pip install onnxruntime, or pass --no-check") from None
    info = export_onnx(checkpoint_path(args), out, height=args.height, width=args.width, opset=args.opset,
                       check=not args.no_check, atol=args.atol)
    diff = f", max |ONNX - PyTorch| = {info['max_abs_diff']:.2e}" if "max_abs_diff" in info else ""
    print(f"umsynth export-onnx: wrote {info['path']}{diff}")
    return 0
