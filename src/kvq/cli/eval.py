"""``kvq eval WEIGHTS --sets A B …``: one checkpoint on one or several labelled sets.

Per set: SRCC, PLCC, KRCC, RMSE (PLCC/RMSE after the named mapping), a per-video predictions
CSV and a scatter PNG; all metrics in one JSON. ``--groups FILE`` (CSV ``path,group``, e.g. a
``kvq synth`` corpus' ``labels/<split>_groups.csv``) adds the mean SRCC inside each group of the
same content. ``--splits N`` adds the small-set protocol:
mean and std over the test parts of N seeded random 80/20 splits. ``--list`` prints the
registered sets. The output folder is created only once a set has been scored, so a run in
which no set could be scored leaves nothing behind.
"""

from __future__ import annotations

import argparse

from kvq.cli.common import (
    CLIError,
    check_writable_folder,
    checked_device,
    non_negative_int,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate weights on labelled sets (SRCC/PLCC/KRCC/RMSE, CSV, JSON, PNG)"
    )
    # weights and --sets are checked in run(), so that --list works without them.
    p.add_argument(
        "weights", nargs="?", help="KVQ safetensors (or the authors' checkpoint with --arch)"
    )
    p.add_argument(
        "--sets",
        nargs="+",
        help="registered names (kvq eval --list) or label files (.txt/.csv); required",
    )
    p.add_argument("--list", action="store_true", help="print the registered sets and exit")
    p.add_argument("--data-root", default=".", help="folder holding the sets' videos")
    p.add_argument("--labels-root", help="folder of the label files (default: --data-root)")
    p.add_argument("--video-root", help="videos of label-file sets (default: --data-root)")
    p.add_argument(
        "--mapping",
        choices=("linear", "logistic"),
        default="linear",
        help="mapping before PLCC/RMSE (FAST-VQA/KVQ protocol: linear)",
    )
    p.add_argument(
        "--groups",
        help="CSV path,group of same-content videos: also report the mean SRCC inside groups",
    )
    p.add_argument("--splits", type=int, default=0, help="also report N random-split means")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --splits random splits")
    p.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of each random split held out"
    )
    p.add_argument(
        "--output-dir",
        "--output",
        dest="output",
        metavar="DIR",
        default="kvq_eval",
        help="folder for CSV, JSON and PNG files (created once a set has been scored)",
    )
    p.add_argument("--arch", default="kvq-t", help="architecture for weights without a config")
    p.add_argument("--size", type=int, help="square input size (default: the weights' own)")
    p.add_argument("--view", help="spatial view (resize, center_crop, fragments, …)")
    p.add_argument("--num-clips", type=int, help="clips averaged per video")
    p.add_argument("--batch-size", type=positive_int, default=4, help="videos per model batch")
    p.add_argument(
        "--workers",
        "--num-workers",
        dest="num_workers",
        type=non_negative_int,
        default=2,
        help="decoding processes",
    )
    p.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="evaluate weights that leave parts of the model at initialisation",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from kvq.data.labels import LabelFileError, read_groups
    from kvq.data.registry import DatasetError
    from kvq.eval.metrics import MetricError, map_predictions
    from kvq.eval.scatter import scatter_png
    from kvq.models import WeightsError
    from kvq.runtime import amp_dtype
    from kvq.train.data import load_labelled
    from kvq.train.evaluate import predict

    if args.list:
        print_registered_sets()
        return 0
    if args.weights is None or not args.sets:
        raise CLIError("WEIGHTS and --sets are required (or --list; see kvq eval --help)")
    device = checked_device(args.device)  # before the weights are loaded
    try:
        groups = read_groups(args.groups) if args.groups else None
    except LabelFileError as err:
        raise CLIError(err) from None
    check_writable_folder(args.output, "--output-dir")  # creates nothing
    try:
        model, spec = load_for_eval(args)
    except (WeightsError, ValueError) as err:
        raise CLIError(err) from None
    model.to(device)
    out = Path(args.output)
    results = {"weights": str(args.weights), "mapping": args.mapping, "sets": {}}
    print(f"{'set':<24}{'n':>7}{'SRCC':>9}{'PLCC':>9}{'KRCC':>9}{'RMSE':>10}")
    status = 0
    for name in args.sets:
        try:
            part = load_labelled(name, args.data_root, args.labels_root, args.video_root)
            preds = predict(
                model,
                part,
                spec,
                device,
                args.batch_size,
                args.num_workers,
                amp_dtype("auto", device),
                progress=True,
            )
            for path, reason in preds.skipped:  # before the metrics: they may fail for these
                print(f"skipped {path}: {reason}", file=sys.stderr)
            metrics = preds.metrics(args.mapping)
            splits = args.splits and preds.split_metrics(
                args.splits, args.test_fraction, args.split_seed, args.mapping
            )
            within = preds.within_group_metrics(groups) if groups is not None else None
        except (DatasetError, MetricError) as err:
            print(f"kvq eval: {name}: {err}", file=sys.stderr)
            status = 1
            continue
        entry = {**metrics.as_dict(), "skipped": [p for p, _ in preds.skipped]}
        if splits:
            entry["random_splits"] = splits
        if within is not None:
            entry["within_group"] = within.as_dict()
        results["sets"][part.name] = entry
        out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no folder
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in part.name)
        preds.to_csv(out / f"{stem}_predictions.csv")
        fitted = map_predictions(preds.scores, preds.mos, args.mapping)
        title = f"{part.name}: SRCC {metrics.srcc:.3f} PLCC {metrics.plcc:.3f} ({args.mapping})"
        scatter_png(preds.scores, preds.mos, out / f"{stem}_scatter.png", title, fitted)
        print(
            f"{part.name:<24}{metrics.n:>7}{metrics.srcc:>9.4f}{metrics.plcc:>9.4f}"
            f"{metrics.krcc:>9.4f}{metrics.rmse:>10.4f}"
        )
        if splits:
            mean, std = splits["mean"], splits["std"]
            print(
                f"  {args.splits} splits: SRCC {mean['srcc']:.4f}±{std['srcc']:.4f} "
                f"PLCC {mean['plcc']:.4f}±{std['plcc']:.4f}"
            )
        if within is not None:
            print(f"  within {within.groups} groups: SRCC {within.srcc:.4f}")
    if not results["sets"]:
        print(f"kvq eval: no set could be scored; nothing written to {out}", file=sys.stderr)
        return status
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    print(f"PLCC/RMSE after {args.mapping} mapping; files in {out}")
    return status


def print_registered_sets() -> None:
    """``kvq eval --list``: every registered set, with its paths under a data root."""
    from kvq.data.registry import get_dataset_spec, list_datasets

    print(f"{'set':<14}{'labels (under --labels-root)':<30}{'videos':<12}{'MOS':<10}about")
    for name in list_datasets():
        spec = get_dataset_spec(name)
        low, high = spec.mos_range
        print(
            f"{spec.name:<14}{spec.label_file:<30}{spec.video_dir + '/':<12}"
            f"{f'{low:g}-{high:g}':<10}{spec.description}"
        )


def load_for_eval(args: argparse.Namespace):
    """The model and the clip spec to score with: the weights' own input settings (from their
    header), overridden by ``--size``, ``--view`` and ``--num-clips``."""
    import dataclasses
    import sys

    from kvq.models import load
    from kvq.models.pretrained import header_section
    from kvq.video import ClipSpec

    # The architecture comes from the header, or from --arch for e.g. the authors' checkpoint.
    model, meta = load(args.weights, args.arch, strict=not args.allow_partial_weights)
    if meta["report"].initialised or not meta["report"].ok:
        print(meta["report"], file=sys.stderr)
    spec = header_section(meta["path"], meta, "input", ClipSpec)
    changes = {
        "size": (args.size, args.size) if args.size else None,
        "view": args.view,
        "num_clips": args.num_clips,
    }
    return model.eval(), dataclasses.replace(spec, **{k: v for k, v in changes.items() if v})
