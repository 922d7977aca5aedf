"""``kvq train CONFIG.yaml``: train (or resume) a KVQ model; run under ``torchrun`` for DDP."""

from __future__ import annotations

import argparse

from kvq.cli.common import CLIError, check_writable_folder, checked_device


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML config (resumes from OUTPUT_DIR/last.pt)",
        description="Train KVQ with the paper's recipe. Multi-GPU: "
        "torchrun --nproc_per_node N -m kvq.cli.main train CONFIG.yaml",
    )
    p.add_argument("config", help="YAML training config (see configs/)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="override data.data_root; the config's data paths below its own data_root "
        "(labels_root, label files of train/val/test, train_groups, train_local) move to DIR "
        "with it, e.g. data/synth/labels/val.txt → DIR/labels/val.txt (paths given with --set "
        "stay as given)",
    )
    p.add_argument("--labels-root", help="override data.labels_root")
    p.add_argument("--pretrained", help="override model.pretrained (Kinetics-400 .pth or KVQ)")
    p.add_argument("--split-index", type=int, help="override data.split_index (random splits)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (resumable)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field by its dotted name, e.g. --set optim.lr=3e-4 "
        "--set model.overrides.attention=iwa (repeatable; values are YAML)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kvq.data.registry import DatasetError
    from kvq.models import WeightsError
    from kvq.train import ConfigError, TrainError, load_config, train
    from kvq.train.checkpoint import CheckpointError
    from kvq.train.config import merge_dicts, parse_override

    overrides: dict = {"data": {}, "model": {}}
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.data_root:
        overrides["data"]["data_root"] = args.data_root
    if args.labels_root:
        overrides["data"]["labels_root"] = args.labels_root
    if args.pretrained:
        overrides["model"]["pretrained"] = args.pretrained
    if args.split_index is not None:
        overrides["data"]["split_index"] = args.split_index
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    try:
        for text in args.overrides:
            overrides = merge_dicts(overrides, parse_override(text))
        config = load_config(args.config, overrides)
        checked_device(config.device)
        check_writable_folder(config.output_dir, "output_dir")
        # kvq.cli.main sends the trainer's messages to stderr (messages_on_stderr).
        result = train(config, resume=not args.no_resume)
    except CheckpointError as err:
        raise CLIError(f"{err}; start afresh with --no-resume") from None
    except (ConfigError, DatasetError, TrainError, WeightsError) as err:
        raise CLIError(err) from None
    if result.finished:
        print(f"finished after {result.steps} steps; outputs in {result.output_dir}")
    else:
        print(f"stopped after {result.steps} steps; resume with the same command")
    if result.best:
        print(
            f"best validation: epoch {result.best['epoch']}, SRCC {result.best['srcc']:.4f}, "
            f"PLCC {result.best['plcc']:.4f}"
        )
    for name, m in result.tests.items():
        print(
            f"test {name}: SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f} KRCC {m['krcc']:.4f} "
            f"RMSE {m['rmse']:.4f} (n={m['n']}, {m['mapping']} mapping)"
        )
    return 0
