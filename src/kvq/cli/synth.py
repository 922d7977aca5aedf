"""``kvq synth``: build a region-labelled synthetic quality corpus (see docs/synth.md)."""

from __future__ import annotations

import argparse

from kvq.cli.common import CLIError, check_writable_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="build distorted clips + stills with measured global and 7×7 labels",
        description="Turn pristine images/videos into distorted clips with VMAF-based global "
        "labels and SSIM-based 7×7 region labels. Re-running resumes an interrupted build.",
    )
    p.add_argument("out_dir", help="dataset folder to create or complete")
    p.add_argument(
        "--sources",
        nargs="+",
        default=["data/sources"],
        help="folders of pristine images/videos (default: data/sources, "
        "filled by scripts/collect_sources.sh)",
    )
    p.add_argument("--small", action="store_true", help="test-sized preset (seconds)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the corpus plan (same seed, same corpus)"
    )
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--num-videos", type=int, default=None, help="override the preset's count")
    p.add_argument(
        "--ladder",
        type=int,
        default=None,
        help="clips per severity ladder (default: the preset's, 4; 1: independent clips)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from kvq.synth import SynthConfig, SynthError, build_corpus

    overrides = {"seed": args.seed}
    if args.num_videos is not None:
        overrides["num_videos"] = args.num_videos
    if args.ladder is not None:
        overrides["ladder"] = args.ladder
    check_writable_folder(args.out_dir, "output folder")
    try:
        preset = SynthConfig.small if args.small else SynthConfig.default
        config = preset(**overrides)
        start = time.perf_counter()
        summary = build_corpus(
            args.out_dir,
            args.sources,
            config,
            workers=max(1, args.workers),
            progress=not args.no_progress,
        )
    except SynthError as err:
        raise CLIError(err) from None
    elapsed = time.perf_counter() - start
    splits = ", ".join(f"{k} {v}" for k, v in summary.per_split.items())
    print(
        f"{summary.num_items} clips in {summary.out_dir} ({splits}); built {summary.num_built} "
        f"in {elapsed:.1f} s"
    )
    return 0
