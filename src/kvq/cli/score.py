"""``kvq score``: score videos and images, write results and maps.

kvq score clip.mp4                                  # bundled default weights, prints a table
kvq score videos/ '*.mov' @list.txt --out results.jsonl --maps maps/
torchrun --nproc-per-node 4 -m kvq.cli.main score videos/ --out results.csv

Exit status: 0 every input scored, 1 some inputs failed (their rows hold the error), 2 the run
could not proceed (arguments, weights, --out, --maps, device, --out being written by another
run; nothing is scored), 130 stopped by Ctrl-C (the rows written so far are kept: run the same
command again to go on).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kvq.cli.common import (
    EXIT_FAILED_INPUTS,
    EXIT_OK,
    CLIError,
    check_interrupt,
    check_writable_file,
    check_writable_folder,
    checked_device,
    non_negative_int,
    positive_int,
    printable,
)

log = logging.getLogger("kvq.cli.score")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score videos/images (files, folders, globs, @list files)",
        description=__doc__,
    )
    p.add_argument("inputs", nargs="+", help="files, folders (recursive), globs or @list.txt")
    p.add_argument(
        "--weights", default=None, help="weights name or file (default: kvq-lite-synth, bundled)"
    )
    p.add_argument("--arch", default="kvq-t", help="architecture for foreign .pth checkpoints")
    p.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="score with weights that leave parts of the model at initialisation (e.g. a "
        "Kinetics-400 backbone without KVQ heads: its scores mean nothing); prints the load report",
    )
    p.add_argument("--out", default=None, help="results file: .jsonl, .csv or .json (resumable)")
    p.add_argument(
        "--maps",
        default=None,
        metavar="DIR",
        help="write a PNG sheet per input (videos/sub/a.mp4 → DIR/sub/a.mp4.maps.png)",
    )
    p.add_argument("--maps-video", action="store_true", help="with --maps: also an overlay MP4")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=positive_int, default=1, help="inputs per model batch")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="decoding processes (default: auto, up to 4: the cores but one)",
    )
    p.add_argument("--quiet", action="store_true", help="no table on stdout, no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from kvq.runtime import init_from_env, leave_process_group
    from kvq.scoring.batch import ResultsFileError, run_scoring
    from kvq.scoring.maps import render_sheet, write_overlay_video

    # Arguments and weights first, before joining torchrun's group: every rank sees the same
    # ones and exits on its own, with no group to leave, and nothing is scored.
    inputs, maps = _check_arguments(args)
    predictor = _load_predictor(args)
    # Options that do nothing, said once the run is known to go ahead (a refusal stays alone).
    if args.maps_video and not args.maps:
        log.warning("--maps-video does nothing without --maps DIR: no overlay video is written")
    if args.quiet and args.out is None:
        log.warning("--quiet without --out: the scores are neither shown nor kept")
    env = init_from_env(predictor.device.type)  # joins torchrun's group, if there is one
    distributed, rank = env.world_size > 1, env.rank
    workers = args.workers
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if len(inputs) > 1 else 0
    out, scratch = args.out, None
    if out is None:
        scratch = tempfile.TemporaryDirectory()
        out = Path(scratch.name) / "results.jsonl"

    # One process prints each row as it is scored; under torchrun rank 0 prints all at the end.
    table = _Table(inputs, predictor.scale) if not args.quiet else None

    def on_result(result) -> None:
        check_interrupt()  # the row of this result is written: a stop loses nothing
        if maps and result.error is None:  # the sheet, then with --maps-video the MP4
            for write, target in zip((render_sheet, write_overlay_video), maps[result.path]):
                write(result, target, predictor.calibration, predictor.spec)
        if table is not None and not distributed:
            table.print_row(result.to_row())

    progress = not args.quiet and rank == 0 and sys.stderr.isatty()
    rows, refusal = None, None
    try:
        rows = run_scoring(
            predictor, inputs, out, args.batch_size, workers, on_result, progress=progress
        )
    except ResultsFileError as err:  # every rank raises it alike, before scoring anything
        refusal = err
    except KeyboardInterrupt:
        kept = f"the results so far are kept in {out}; run the same command again to go on"
        raise KeyboardInterrupt(kept if args.out else "") from None
    if distributed:
        leave_process_group()
    if refusal is not None:
        raise CLIError(refusal) from None
    if rank != 0:
        return EXIT_OK
    if table is not None:
        table.finish(rows, args.out)
    if scratch is not None:
        scratch.cleanup()
    failed = sum(1 for r in rows if r.get("error"))
    if failed:
        print(f"kvq score: {failed} of {len(rows)} input(s) failed", file=sys.stderr)
    return EXIT_FAILED_INPUTS if failed else EXIT_OK


def _check_arguments(args: argparse.Namespace) -> tuple[list[str], dict]:
    """The inputs and the map files of each; :class:`CLIError` for arguments that cannot work
    (no inputs, maps onto an input, an unwritable --out or --maps, an unknown --arch)."""
    from kvq.models import list_models
    from kvq.scoring.batch import InputsError, ResultsFileError, find_inputs, results_kind
    from kvq.scoring.maps import MapsError, check_map_files, map_files

    try:
        found = find_inputs(args.inputs)
        maps = map_files(found, args.maps, args.maps_video) if args.maps else {}
        check_map_files(maps)
        if args.out is not None:
            results_kind(args.out)
    except (InputsError, MapsError, ResultsFileError) as err:
        raise CLIError(err) from None
    if not found:
        raise CLIError("no inputs found")
    if args.out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CLIError("--out is required under torchrun")
    if args.out is not None:
        check_writable_file(args.out, "--out")
    if args.maps:
        check_writable_folder(args.maps, "--maps")
    if args.arch not in list_models():
        raise CLIError(f"unknown --arch {args.arch!r}; available: {', '.join(list_models())}")
    return list(found), maps


def _load_predictor(args: argparse.Namespace):
    """The predictor of --weights on --device (auto or a bare cuda under torchrun: this rank's
    GPU); the device is checked before the weights are loaded."""
    from kvq.models import WeightsError
    from kvq.scoring import DEFAULT_WEIGHTS, load

    device = checked_device(args.device)
    try:  # weights that are not a quality model say so on stderr (a warning of kvq.load)
        weights = args.weights or DEFAULT_WEIGHTS
        return load(weights, device, args.arch, strict=not args.allow_partial_weights)
    except WeightsError as err:
        raise CLIError(err) from None


class _Table:
    """The results table on stdout: a row per input as it is scored (above the progress bar),
    then the rows of an earlier run of the same --out that were not printed, and the scale."""

    def __init__(self, inputs: list[str], scale: str) -> None:
        self.width = max([len(printable(p)) for p in inputs] + [4])
        self.scale = scale
        self.printed: set[str] = set()

    def print_row(self, row: dict) -> None:
        from tqdm import tqdm

        if not self.printed:
            tqdm.write(f"{'path':<{self.width}}  {'score':>8}  {'raw':>8}  note", file=sys.stdout)
        path = printable(row["path"])
        if row.get("error"):
            line = f"{path:<{self.width}}  {'-':>8}  {'-':>8}  error: {printable(row['error'])}"
        else:
            score, raw = float(row["score"]), float(row["raw_score"])
            line = f"{path:<{self.width}}  {score:>8.4f}  {raw:>8.4f}"
        tqdm.write(line, file=sys.stdout)  # above a progress bar, if there is one
        self.printed.add(row["path"])

    def finish(self, rows: list[dict], out: str | None) -> None:
        earlier = [r for r in rows if r["path"] not in self.printed]
        if earlier and self.printed:
            print(f"(scored by an earlier run into {out}:)")
        for row in earlier:
            self.print_row(row)
        print(f"(score scale: {self.scale})")
