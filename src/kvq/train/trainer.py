"""The training loop (docs/design.md, *Training*): AdamW, warm-up + cosine, EMA, LPC, DDP, resume.

One :class:`Trainer` per process; under ``torchrun`` every process trains its share of each
global batch inside DistributedDataParallel. The output folder receives::

    config.yaml       the resolved config
    last.pt           resumable state (model, optimiser, scheduler, EMA, step, RNG, best)
    best.safetensors  EMA weights with the best validation (SRCC + PLCC)/2
    train_log.csv     step, epoch, lr, loss terms          (TensorBoard too, if installed)
    val_log.csv       validation metrics after each evaluated epoch
    test_metrics.json + test_<set>.csv   the selected model on the test sets
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from kvq.data.datasets import EpochSampler, GroupSampler, VideoQualityDataset, collate_clips
from kvq.data.labels import read_groups, read_lpvq_labels
from kvq.eval.metrics import MetricError
from kvq.fileio import slug
from kvq.lpvq.grid import LPVQ_GRID
from kvq.models import build_model, load, load_pretrained, save_pretrained
from kvq.runtime import (
    WorkerInit,
    amp_dtype,
    autocast,
    init_from_env,
    is_distributed,
    leave_process_group,
    resolve_device,
)
from kvq.train.checkpoint import FORMAT, atomic_save, load_state, rng_state, set_rng_state
from kvq.train.config import TrainConfig
from kvq.train.data import LabelledSet, build_run_data, check_metric_sizes
from kvq.train.ema import ModelEMA
from kvq.train.evaluate import Predictions, predict
from kvq.train.losses import KVQLoss, assemble_cube_scores, cube_quality_map
from kvq.train.stem_cache import StemCacheDataset, build_stem_cache, collate_embeddings
from kvq.video import to_model_input

log = logging.getLogger(__name__)


class TrainError(RuntimeError):
    """Training cannot go on: no readable training video, or a checkpoint from another setup."""


@dataclass
class TrainResult:
    """Where a run ended. ``finished`` is False when it stopped at ``max_steps``."""

    output_dir: Path
    steps: int
    finished: bool
    best: dict | None = None
    tests: dict[str, dict] = field(default_factory=dict)


class TrainForward(nn.Module):
    """The whole training forward in one module call, so that DDP sees every use of every
    parameter: the clip's score and quality map ``Q``, and ``Q̂`` from its cubes (LPC).

    ``x`` is a normalised clip, or with ``cubes`` given, the stem output of a clip and of its
    LPC cubes (training on a stem cache, :mod:`kvq.train.stem_cache`).
    """

    def __init__(self, model: nn.Module, lpc_cube: tuple[int, int, int] | None) -> None:
        super().__init__()
        self.model = model
        self.lpc_cube = lpc_cube

    def forward(
        self, x: Tensor, cubes: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if cubes is not None:
            out = self.model.forward_embedded(x)
            grid = tuple(out.local_quality.shape[1:])
            scores = self.model.local_quality_embedded(cubes).flatten(1).mean(dim=1)
            return out.score, out.local_quality, assemble_cube_scores(scores, x.shape[0], grid)
        out = self.model(x)
        q_hat = None
        if self.lpc_cube is not None:
            grid = tuple(out.local_quality.shape[1:])
            q_hat = cube_quality_map(self.model.local_quality, x, self.lpc_cube, grid)
        return out.score, out.local_quality, q_hat


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def param_groups(
    model: nn.Module,
    lr: float,
    backbone_mult: float,
    weight_decay: float,
    stem_mult: float | None = None,
) -> list:
    """Backbone parameters at ``lr·backbone_mult``, heads and the prior fusion at ``lr``; with
    ``stem_mult``, a pretrained stem (``backbone.stem.``) at ``lr·stem_mult`` (a third group).
    Frozen parameters are left out."""
    backbone, heads, stem = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if stem_mult is not None and name.startswith("backbone.stem."):
            stem.append(param)
        else:
            (backbone if name.startswith("backbone.") else heads).append(param)
    groups = [
        {"params": backbone, "lr": lr * backbone_mult, "weight_decay": weight_decay},
        {"params": heads, "lr": lr, "weight_decay": weight_decay},
    ]
    if stem:
        groups.append({"params": stem, "lr": lr * stem_mult, "weight_decay": weight_decay})
    return groups


# Config sections a resumed run must share with the run that wrote the checkpoint.
_RESUME_KEYS = ("seed", "model", "data", "optim", "loss")


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        # This process's device first (a bare "cuda" is this rank's GPU), then its process group.
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.env = init_from_env(self.device.type)
        if config.deterministic:
            # cuBLAS needs a fixed workspace to be deterministic; set before its first use.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.amp_dtype = amp_dtype(config.precision, self.device)
        self.out = Path(config.output_dir)
        self.data = build_run_data(config.data)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = self._build_model().to(self.device)
        self.ema = ModelEMA(self.model, config.optim.ema_decay)
        optim = config.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(
                self.model,
                optim.lr,
                optim.backbone_lr_mult,
                optim.weight_decay,
                optim.stem_lr_mult,
            )
        )
        self.groups = self._train_groups()
        self.local_labels = self._train_local_labels()
        self.sampler = self._sampler()
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.total_steps = optim.epochs * self.steps_per_epoch
        warmup = round(optim.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup, self.total_steps)
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        lpc_cube = tuple(config.loss.lpc_cube) if config.loss.lpc_weight else None
        self.forward: nn.Module = TrainForward(self.model, lpc_cube)
        if is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = nn.parallel.DistributedDataParallel(self.forward, device_ids=ids)
        self.loss = KVQLoss(config.loss)
        self.train_set = VideoQualityDataset(
            self.data.train.labels,
            self.data.train.video_root,
            config.data.clip,
            train=True,
            cache_dir=config.data.cache_dir,
            substitute_failed=True,
        )
        if config.data.stem_cache_views and is_distributed():
            raise TrainError("training on a stem cache runs in one process (no torchrun)")
        torch.manual_seed(config.seed + 1 + self.env.rank)  # independent dropout per rank
        self.step = 0
        self.best: dict | None = None
        self._reported: set[str] = set()
        self._tb = None

    def _build_model(self) -> nn.Module:
        section = self.config.model
        model = build_model(section.arch, **section.overrides)
        model.set_runtime(grad_checkpointing=section.grad_checkpointing)
        if section.pretrained:
            report = load_pretrained(model, section.pretrained)
            self._log(str(report))
        if section.freeze_stem:
            stem = getattr(model.backbone, "stem", None)
            if stem is None:
                raise TrainError(f"model.freeze_stem: {section.arch} has no pretrained stem")
            stem.freeze()
        return model

    def _train_groups(self) -> np.ndarray | None:
        """Group id of every training video (``data.train_groups``); a video the file does
        not list is a group of its own."""
        if self.config.data.train_groups is None:
            return None
        by_path = read_groups(self.config.data.train_groups)
        ids: dict[str, int] = {}
        groups = [
            ids.setdefault(by_path.get(label.path, f"\0{k}"), len(ids))
            for k, label in enumerate(self.data.train.labels)
        ]
        return np.asarray(groups, dtype=np.int64)

    def _sampler(self) -> EpochSampler:
        """The training order: whole groups per batch where the training set has groups."""
        config, env = self.config, self.env
        batch = config.optim.batch_size
        try:
            if self.groups is None:
                size = len(self.data.train.labels)
                return EpochSampler(size, batch, config.seed, env.rank, env.world_size)
            return GroupSampler(
                self.groups.tolist(),
                batch,
                config.data.group_size,
                config.seed,
                env.rank,
                env.world_size,
            )
        except ValueError as err:  # too few videos for one batch, or a batch that cannot split
            raise TrainError(f"{err} (optim.batch_size)") from None

    def _train_local_labels(self) -> Tensor | None:
        """Region labels ``(N, 7, 7)`` of the training videos (``data.train_local``; NaN for a
        video the file does not list), or None."""
        if self.config.data.train_local is None or not self.config.loss.local_label_weight:
            return None
        by_path = read_lpvq_labels(self.config.data.train_local)
        blank = np.full((LPVQ_GRID, LPVQ_GRID), np.nan)
        grids = [by_path.get(label.path, blank) for label in self.data.train.labels]
        if all(np.isnan(g).all() for g in grids):
            raise TrainError(
                f"{self.config.data.train_local} has region labels for none of the training videos"
            )
        return torch.from_numpy(np.stack(grids)).float()

    def _stem_cache(self) -> StemCacheDataset:
        """Build (or reuse) the stem cache of the training set (``data.stem_cache_views``)."""
        config = self.config
        cube = tuple(config.loss.lpc_cube) if config.loss.lpc_weight else None
        cache = build_stem_cache(
            self.model,
            self.train_set,
            config.data.stem_cache_views,
            cube,
            config.seed,
            self.out / "stem_cache.safetensors",
            config.data.num_workers,
            config.progress and self.env.is_main,
        )
        return StemCacheDataset(cache, [label.mos for label in self.data.train.labels])

    # ------------------------------------------------------------------ bookkeeping
    def _log(self, message: str) -> None:
        if self.env.is_main:
            log.info(message)

    def _append_csv(self, name: str, row: dict) -> None:
        if not self.env.is_main:
            return
        path = self.out / name
        new = not path.exists() or path.stat().st_size == 0
        fields = list(row)
        if not new:  # a resumed run keeps the file's columns (a newer kvq may log more terms)
            with path.open(newline="") as f:
                fields = next(csv.reader(f), fields)
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, float | int):
                    self._tb.add_scalar(f"{Path(name).stem}/{key}", value, row["step"])

    def _truncate_logs(self) -> None:
        """After a resume, drop log rows of steps the checkpoint does not contain."""
        for name in ("train_log.csv", "val_log.csv"):
            path = self.out / name
            if self.env.is_main and path.exists():
                with path.open(newline="") as f:
                    rows = list(csv.DictReader(f))
                if not rows:
                    continue
                kept = [r for r in rows if int(r["step"]) <= self.step]
                with path.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(kept)

    def _open_tensorboard(self) -> None:
        if not self.env.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional; the CSV logs are always written
            return
        self._tb = SummaryWriter(str(self.out / "tensorboard"))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        states = [rng_state()]
        if is_distributed():
            states = [None] * self.env.world_size
            torch.distributed.all_gather_object(states, rng_state())
        if not self.env.is_main:
            return
        atomic_save(
            {
                "format": FORMAT,
                "step": self.step,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "best": self.best,
                "rng": states,
                "config": self.config.to_dict(),
            },
            self.out / "last.pt",
        )

    def restore(self, path: Path) -> None:
        state = load_state(path)
        stored, current = state["config"], self.config.to_dict()
        changed = [k for k in _RESUME_KEYS if stored.get(k) != current[k]]
        if changed:
            raise TrainError(
                f"{path} was written with different {', '.join(changed)} settings; "
                "use another output_dir or the original config"
            )
        if len(state["rng"]) != self.env.world_size:
            raise TrainError(
                f"{path} was written by {len(state['rng'])} processes, this run has "
                f"{self.env.world_size}; resume with the same number of processes"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:  # same config, other tensors: an architecture default changed
            raise TrainError(
                f"{path} holds a model that does not match the one this version of kvq builds "
                f"for the same config ({str(err).splitlines()[-1].strip()}); use another "
                "output_dir"
            ) from None
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.best = int(state["step"]), state["best"]
        set_rng_state(state["rng"][self.env.rank])
        self._log(f"resumed from {path} at step {self.step}")

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = True) -> TrainResult:
        """Train (continuing from ``last.pt`` when ``resume`` and it exists), then test."""
        if resume and (self.out / "last.pt").exists():
            self.restore(self.out / "last.pt")
            self._truncate_logs()
        check_metric_sizes(self.data)  # a too small split is refused before any work
        self.out.mkdir(parents=True, exist_ok=True)
        if self.env.is_main:
            text = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
            (self.out / "config.yaml").write_text(text)
        self._open_tensorboard()
        if self.config.data.stem_cache_views and not isinstance(self.train_set, StemCacheDataset):
            self.train_set = self._stem_cache()
        limit = self.total_steps
        if self.config.max_steps is not None:
            limit = min(limit, self.config.max_steps)
        bar = None
        if self.config.progress and self.env.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="train")
        try:
            while self.step < limit:
                self._train_epoch(limit, bar)
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.close()
        finished = self.step >= self.total_steps
        if finished and self.best is None and self.env.is_main:
            # No epoch could be validated (too many unreadable videos): still leave weights.
            log.warning("no validation metrics: best.safetensors holds the final EMA weights")
            save_pretrained(self.ema.module, self.out / "best.safetensors", self._metadata())
        tests = self.test() if finished else {}
        return TrainResult(self.out, self.step, finished, self.best, tests)

    def _train_epoch(self, limit: int, bar) -> None:
        epoch, start = divmod(self.step, self.steps_per_epoch)
        self.sampler.set_epoch(epoch, start)
        cached = isinstance(self.train_set, StemCacheDataset)
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.sampler.local_batch,
            sampler=self.sampler,
            num_workers=0 if cached else self.config.data.num_workers,
            collate_fn=collate_embeddings if cached else collate_clips,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=WorkerInit(),
            # Worker seeds come from this generator, not from the global RNG that resume restores.
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        for batch in loader:
            terms = self._train_step(batch)
            self.step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{terms['total']:.4f}", epoch=epoch)
            if self.step % self.config.log_every == 0 or self.step == limit:
                lr = self.optimizer.param_groups[1]["lr"]
                self._append_csv(
                    "train_log.csv", {"step": self.step, "epoch": epoch, "lr": lr, **terms}
                )
            saved = False
            if self.step % self.steps_per_epoch == 0:
                if (epoch + 1) % self.config.eval_every == 0 or self.step == self.total_steps:
                    self.validate(epoch)
                self.save_checkpoint()
                saved = True
            elif self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self.save_checkpoint()
                saved = True
            if self.step >= limit:
                if not saved:
                    self.save_checkpoint()
                return

    def _train_step(self, batch: dict) -> dict[str, float]:
        for path, reason in batch["skipped"]:
            if path not in self._reported:
                self._reported.add(path)
                log.warning("[rank %d] skipping %s: %s", self.env.rank, path, reason)
        cubes = None
        if "embedding" in batch:  # a stem cache
            x = batch["embedding"].to(self.device).float()
            if "cubes" in batch:
                cubes = batch["cubes"].to(self.device).float()
        elif batch["clip"] is None:
            raise TrainError(f"no readable training video under {self.data.train.video_root}")
        else:
            x = to_model_input(batch["clip"], self.model)
        mos = batch["mos"].to(self.device)
        groups = None
        if self.groups is not None:
            groups = torch.from_numpy(self.groups[batch["index"].numpy()]).to(self.device)
        self.forward.train()
        with autocast(self.device, self.amp_dtype):
            score, q, q_hat = self.forward(x, cubes)
        local = None
        if self.local_labels is not None:
            local = self.local_labels[batch["index"]].to(self.device)
        terms = self.loss(score, mos, q, q_hat, groups, local)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        if self.config.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update(self.model)
        return terms.as_floats()

    # ------------------------------------------------------------------ evaluation
    def _predict(self, model: nn.Module, part: LabelledSet) -> Predictions:
        preds = predict(
            model,
            part,
            self.config.data.clip,
            self.device,
            self.sampler.local_batch,
            self.config.data.num_workers,
            self.amp_dtype,
        )
        for path, reason in preds.skipped:
            self._log(f"skipping {path}: {reason}")
        return preds

    def validate(self, epoch: int) -> dict:
        """Score the validation set with the EMA weights; keep them if they are the best."""
        preds = self._predict(self.ema.module, self.data.val)
        try:
            metrics = preds.metrics("linear").as_dict()
        except MetricError as err:  # e.g. unreadable videos left too few: skip, keep training
            if self.env.is_main:
                log.warning(
                    "epoch %d: no validation metrics on %s (%s; %d of %d videos unreadable)",
                    epoch,
                    self.data.val.name,
                    err,
                    len(preds.skipped),
                    preds.num_labels,
                )
            return {}
        selection = (metrics["srcc"] + metrics["plcc"]) / 2
        self._append_csv("val_log.csv", {"step": self.step, "epoch": epoch, **metrics})
        self._log(f"epoch {epoch}: val SRCC {metrics['srcc']:.4f} PLCC {metrics['plcc']:.4f}")
        if math.isfinite(selection) and (self.best is None or selection > self.best["selection"]):
            self.best = {"selection": selection, "epoch": epoch, "step": self.step, **metrics}
            self.best["calibration"] = self._calibration(preds)
            if self.env.is_main:
                save_pretrained(self.ema.module, self.out / "best.safetensors", self._metadata())
        return metrics

    def _calibration(self, preds: Predictions) -> dict:
        """Raw score → published score: the least-squares line from the selected model's
        validation predictions to their labels, clipped to the score range."""
        a, b = np.polyfit(preds.scores.astype(np.float64), preds.mos.astype(np.float64), 1)
        low, high = self.config.data.score_range or (
            min(lb.mos for lb in self.data.train.labels),
            max(lb.mos for lb in self.data.train.labels),
        )
        scale = f"{self.config.data.score_scale} {low:g}-{high:g}"
        return {"a": float(a), "b": float(b), "low": low, "high": high, "scale": scale}

    def _metadata(self) -> dict:
        clip = dataclasses.asdict(self.config.data.clip)
        clip["size"] = list(clip["size"])
        return {
            "input": clip,
            "calibration": (self.best or {}).get("calibration"),
            "training": {
                "train_set": self.config.data.train,
                "step": self.step,
                "best": self.best,
                "config": self.config.to_dict(),
            },
        }

    def test(self) -> dict[str, dict]:
        """The selected weights (best validation, else the final EMA) on every test set."""
        model = self.ema.module
        best = self.out / "best.safetensors"
        if is_distributed():
            torch.distributed.barrier()  # rank 0 has finished writing best.safetensors
        if best.exists():  # read back as any user reads it: the one weights route
            model, _ = load(best, device=self.device)
        results = {}
        for part in self.data.tests:
            preds = self._predict(model, part)
            try:
                results[part.name] = preds.metrics("linear").as_dict()
            except MetricError as err:
                if self.env.is_main:
                    log.warning("test set %s: no metrics (%s)", part.name, err)
                continue
            if self.env.is_main:
                preds.to_csv(self.out / f"test_{slug(part.name)}.csv")
        if self.env.is_main and results:
            (self.out / "test_metrics.json").write_text(json.dumps(results, indent=2))
        return results


def train(config: TrainConfig, resume: bool = True) -> TrainResult:
    """Run :class:`Trainer` on ``config`` (inside ``torchrun`` when several processes).

    A process group that training joined from the ``torchrun`` environment is left again when
    training ends; one the caller had set up stays the caller's.
    """
    joins_group = not is_distributed()
    result = Trainer(config).run(resume)
    if joins_group:
        leave_process_group()
    return result
