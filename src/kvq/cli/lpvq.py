"""``kvq lpvq eval``: the LPVQ zero-shot local-perception protocol for one or more weights.

Images + an LPVQ label file + weights → inter/intra-sample SRCC/PLCC in the supplement's Tab. 9
layout (one row per weights), a per-image table and a figure per image. See docs/lpvq.md.
"""

from __future__ import annotations

import argparse

from kvq.cli.common import CLIError, checked_device


def _size(text: str) -> int | str:
    """``--size``: a square side in pixels, or ``native`` (the weights' own input size)."""
    if text == "native":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected pixels or 'native', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {value}")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lpvq", help="LPVQ local-perception evaluation (7×7 patch MOS)")
    actions = p.add_subparsers(dest="lpvq_action", metavar="ACTION")
    p.set_defaults(func=lambda args: _usage(p))
    e = actions.add_parser(
        "eval",
        help="inter/intra-sample SRCC/PLCC of weights' 7×7 local quality against LPVQ labels",
        description="Each image is scored as a static clip; Q is averaged over time, pooled to "
        "7×7 and compared with the 49 labelled cells (docs/lpvq.md, supplement Tab. 9).",
    )
    e.add_argument("--images", required=True, help="folder the label file's image names are in")
    e.add_argument("--labels", required=True, help="LPVQ label file (name (r,c):score, …)")
    e.add_argument(
        "--weights",
        nargs="+",
        required=True,
        help="one or more weights (safetensors, or foreign .pth with --arch)",
    )
    e.add_argument("--names", nargs="+", help="row names, one per weights (e.g. IWA CWA FWA)")
    e.add_argument(
        "--output-dir",
        "--out",
        dest="out",
        metavar="DIR",
        default="kvq_lpvq",
        help="folder for tables, JSON and figures",
    )
    e.add_argument("--frames", type=int, default=16, help="frames of the static clip (paper: 16)")
    e.add_argument(
        "--size",
        type=_size,
        help="square input side of the resize view (default 448 as in the paper), or 'native' "
        "for the weights' own size",
    )
    e.add_argument(
        "--view",
        choices=("resize", "fragments"),
        default="resize",
        help="resize: the picture stretched to --size (the paper); fragments: one native-"
        "resolution fragment per label cell, for weights trained on fragments",
    )
    e.add_argument("--arch", default="kvq-t", help="architecture for weights without a config")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    e.add_argument("--no-figures", action="store_true", help="skip the per-image PNG figures")
    e.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from kvq.data.labels import LabelFileError
    from kvq.eval.metrics import MetricError
    from kvq.lpvq import LpvqEvalError
    from kvq.models import WeightsError

    device = checked_device(args.device)  # before labels and weights are read
    try:
        return _evaluate(args, device)
    except (LpvqEvalError, LabelFileError, WeightsError, MetricError) as err:
        raise CLIError(err) from None


def _evaluate(args: argparse.Namespace, device) -> int:
    import sys
    from pathlib import Path

    from kvq.data.labels import read_lpvq_labels
    from kvq.lpvq import (
        PAPER_SIZE,
        LpvqEvalError,
        LpvqProtocol,
        evaluate,
        load_variants,
        markdown_table,
        write_figures,
        write_reports,
    )

    if not Path(args.labels).is_file():
        raise LpvqEvalError(f"{args.labels}: no such label file")
    labels = read_lpvq_labels(args.labels)
    if args.view == "fragments":
        if args.size not in (None, "native"):
            raise LpvqEvalError("--size applies to the resize view; fragments keep native pixels")
        size = None
    else:
        size = PAPER_SIZE if args.size is None else None if args.size == "native" else args.size
    protocol = LpvqProtocol(frames=args.frames, size=size, view=args.view)
    variants = load_variants(args.weights, args.names, protocol, device, args.arch)
    for v in variants:
        h, w = v.spec.output_size
        print(f"{v.name}: {v.weights} ({v.attention}), {v.spec.image_frames}×{h}×{w} static clips")
    run = evaluate(variants, args.images, labels, protocol, progress=sys.stderr.isatty())
    for s in run.skipped:
        print(f"skipped {s.name}: {s.reason}", file=sys.stderr)
    print(f"used {len(run.labels)} of {run.num_labelled} labelled images "
          f"({len(run.skipped)} skipped)")  # fmt: skip
    print(markdown_table(run))
    out = Path(args.out)
    paths = write_reports(run, out)
    if not args.no_figures:
        figures = write_figures(run, args.images, out / "figures")
        print(f"{len(figures)} figures in {out / 'figures'}")
    print("tables: " + ", ".join(str(p) for p in paths.values()))
    return 0
