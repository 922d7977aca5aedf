"""``kvq score``: score videos and images, write results and maps.

kvq score clip.mp4                                  # bundled default weights, prints a table
kvq score videos/ '*.mov' @list.txt --out results.jsonl --maps maps/
torchrun --nproc-per-node 4 -m kvq.cli.main score videos/ --out results.csv
"""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score videos/images (files, folders, globs, @list files)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="files, folders (recursive), globs or @list.txt")
    p.add_argument("--weights", default=None, help="weights name or file (default: bundled)")
    p.add_argument("--arch", default="kvq-t", help="architecture for foreign .pth checkpoints")
    p.add_argument("--out", default=None, help="results file: .jsonl, .csv or .json (resumable)")
    p.add_argument(
        "--maps",
        default=None,
        metavar="DIR",
        help="write a PNG sheet per input (videos/sub/a.mp4 → DIR/sub/a.mp4.maps.png)",
    )
    p.add_argument("--maps-video", action="store_true", help="with --maps: also an overlay MP4")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no table on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import torch

    from kvq.scoring import DEFAULT_WEIGHTS, load
    from kvq.scoring.batch import ResultsFileError, find_inputs, run_scoring
    from kvq.scoring.maps import (
        MapsError,
        check_map_files,
        map_files,
        render_sheet,
        write_overlay_video,
    )
    from kvq.train.distributed import init_from_env, leave_process_group

    # Argument errors first, before joining torchrun's group: every rank sees the same arguments
    # and exits on its own, with no group to leave.
    found = find_inputs(args.inputs)
    inputs = list(found)
    if not inputs:
        print("kvq score: no inputs found", file=sys.stderr)
        return 2
    maps = map_files(found, args.maps, args.maps_video) if args.maps else {}
    try:
        check_map_files(maps)
    except MapsError as err:
        print(f"kvq score: {err}", file=sys.stderr)
        return 2
    if args.out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("kvq score: --out is required under torchrun", file=sys.stderr)
        return 2
    gpu = torch.cuda.is_available() and args.device != "cpu"
    env = init_from_env("cuda" if gpu else "cpu")  # joins torchrun's group, if there is one
    distributed, rank = env.world_size > 1, env.rank
    device = f"cuda:{env.local_rank}" if distributed and gpu else args.device
    predictor = load(args.weights or DEFAULT_WEIGHTS, device=device, arch=args.arch)
    workers = args.workers
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if len(inputs) > 1 else 0
    out, scratch = args.out, None
    if out is None:
        scratch = tempfile.TemporaryDirectory()
        out = Path(scratch.name) / "results.jsonl"

    def on_result(result) -> None:
        if maps and result.error is None:  # the sheet, then with --maps-video the MP4
            for write, target in zip((render_sheet, write_overlay_video), maps[result.path]):
                write(result, target)

    try:
        rows = run_scoring(predictor, inputs, out, args.batch_size, workers, on_result)
    except ResultsFileError as err:  # every rank raises it alike, before scoring anything
        print(f"kvq score: {err}", file=sys.stderr)
        rows = None
    if distributed:
        leave_process_group()
    if rows is None:
        return 2
    if rank != 0:
        return 0
    if not args.quiet:
        _print_table(rows, predictor.scale)
    if scratch is not None:
        scratch.cleanup()
    failed = sum(1 for r in rows if r.get("error"))
    if failed:
        print(f"kvq score: {failed} of {len(rows)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _print_table(rows: list[dict], scale: str) -> None:
    width = max([len(r["path"]) for r in rows] + [4])
    print(f"{'path':<{width}}  {'score':>8}  {'raw':>8}  note")
    for r in rows:
        if r.get("error"):
            print(f"{r['path']:<{width}}  {'-':>8}  {'-':>8}  error: {r['error']}")
        else:
            print(f"{r['path']:<{width}}  {float(r['score']):>8.4f}  {float(r['raw_score']):>8.4f}")
    print(f"(score scale: {scale})")
