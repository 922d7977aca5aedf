"""Plan and build a corpus.

Layout of ``OUT_DIR``::

    videos/<id>.mp4          distorted clips (H.264, yuv420p)
    stills/<id>.png          the middle frame of each clip (LPVQ-style image protocol)
    items/<id>.json          one record per clip: plan + measurements (written last: resumable)
    labels/<split>.txt       FAST-VQA labels of the clips (path, duration, fps, MOS)
    labels/<split>_local.txt LPVQ 7×7 labels of the clips (time-averaged)
    labels/<split>_stills.txt LPVQ 7×7 labels of the stills
    labels/<split>_groups.csv the ladder (group) of every clip: path,group
    manifest.json            config, sources and their split, the label mapping, every record

The whole plan is drawn up front from one seeded generator, so it does not depend on the number
of workers or on which items were already built; every random choice is stored in the plan.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from kvq.eval.metrics import MIN_SAMPLES
from kvq.fileio import atomic_write
from kvq.synth.config import SynthConfig
from kvq.synth.distortions import Bokeh, encode_h264, make_distortion
from kvq.synth.errors import SynthError
from kvq.synth.masks import MaskSpec
from kvq.synth.measure import cell_ssim, grid_mean, ssim_map, ssim_to_vmaf_scale, to_mos, vmaf
from kvq.synth.motion import CameraPath, Overlay
from kvq.synth.sources import Source, View, find_sources, pristine_clip, source_length

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class Applied:
    """One distortion of a plan: factor name, its parameters, severity and region."""

    factor: str
    severity: float
    params: dict[str, Any]
    mask: MaskSpec


@dataclass(frozen=True)
class ItemPlan:
    id: str
    split: str
    source: Source
    view: View
    distortions: tuple[Applied, ...]
    group: str  # clips of one group differ only in severity (see SynthConfig.ladder)


def split_sources(
    sources: list[Source], config: SynthConfig, rng: np.random.Generator
) -> dict[str, list[Source]]:
    """Assign whole sources to splits (no source in two splits), every split non-empty."""
    names = [name for name, _ in config.splits]
    if len(sources) < len(names):
        raise SynthError(
            f"need at least {len(names)} sources for splits {names}, got {len(sources)}"
        )
    order = [sources[i] for i in rng.permutation(len(sources))]
    counts = [max(1, round(frac * len(sources))) for _, frac in config.splits]
    counts[0] = len(sources) - sum(counts[1:])  # the first (train) split takes the rounding
    if counts[0] < 1:
        raise SynthError(f"too few sources ({len(sources)}) for split fractions {config.splits}")
    bounds = np.cumsum([0, *counts])
    return {name: order[bounds[k] : bounds[k + 1]] for k, name in enumerate(names)}


def plan_corpus(sources: list[Source], config: SynthConfig) -> list[ItemPlan]:
    """Every item of the corpus, deterministic for ``config`` (seed included) and ``sources``."""
    rng = np.random.default_rng(config.seed)
    by_split = split_sources(sources, config, rng)
    lengths = {s.name: source_length(s) for s in sources if s.kind == "video"}
    plans = []
    groups = split_ladders(config)
    for (split, _), count in zip(config.splits, groups, strict=True):
        group = by_split[split]
        for k in range(count):
            source = group[k % len(group)]
            base = _plan_item(f"{len(plans):05d}", split, source, lengths, config, rng)
            plans.extend(_ladder(base, len(plans), config, rng))
    return plans


def split_ladders(config: SynthConfig) -> list[int]:
    """Whole ladders per split: each split's share of ``num_videos``, and every split after the
    first (validation, test) at least :data:`MIN_SAMPLES` clips, which its metrics need: the
    ladders its share lacks come from those the shares round away, then from the first
    (training) split, as long as that keeps one; otherwise a warning names the small splits."""
    counts = [round(frac * config.num_videos) for _, frac in config.splits]
    counts[0] = config.num_videos - sum(counts[1:])
    groups = [count // config.ladder for count in counts]
    if min(groups) < 1:
        raise SynthError(
            f"{config.num_videos} videos in ladders of {config.ladder} leave a split of "
            f"{config.splits} without a ladder: use more videos or a shorter ladder"
        )
    least = -(-MIN_SAMPLES // config.ladder)  # ladders that hold MIN_SAMPLES clips
    raised = [groups[0], *(max(g, least) for g in groups[1:])]
    spare = config.num_videos // config.ladder - sum(groups)  # ladders the shares round away
    raised[0] -= max(0, sum(raised) - sum(groups) - spare)  # the rest from the training split
    if raised[0] >= 1:
        return raised
    small = [name for (name, _), g in zip(config.splits[1:], groups[1:]) if g < least]
    log.warning(
        "split(s) %s get fewer than %d clips: too few for their metrics; use more videos",
        ", ".join(small),
        MIN_SAMPLES,
    )
    return groups


def _ladder(
    base: ItemPlan, first_id: int, config: SynthConfig, rng: np.random.Generator
) -> list[ItemPlan]:
    """``config.ladder`` copies of ``base`` whose severities grow from rung to rung: rung ``k``
    of ``L`` draws its severity in ``0.1 + 0.9·[k/L, (k+1)/L)`` (every factor of the group
    the same); rung 0 is pristine with probability ``config.pristine_prob``."""
    if config.ladder == 1:
        return [base]
    pristine_first = rng.random() < config.pristine_prob
    rungs = []
    for k in range(config.ladder):
        severity = round(0.1 + 0.9 * (k + float(rng.random())) / config.ladder, 3)
        applied = tuple(dataclasses.replace(a, severity=severity) for a in base.distortions)
        if k == 0 and pristine_first:
            applied = ()
        rungs.append(
            dataclasses.replace(base, id=f"{first_id + k:05d}", distortions=applied, group=base.id)
        )
    return rungs


def _plan_item(
    item_id: str,
    split: str,
    source: Source,
    lengths: dict[str, int],
    config: SynthConfig,
    rng: np.random.Generator,
) -> ItemPlan:
    if source.kind == "image":
        view = View(camera=CameraPath.sample(rng))
    else:
        view = View(start_frame=int(rng.integers(max(1, lengths[source.name]))))
    if rng.random() < config.overlay_prob:
        view = View(view.camera, view.start_frame, Overlay.sample(rng))
    applied: list[Applied] = []
    # A ladder always distorts its base plan (its first rung may be made pristine instead).
    if config.ladder > 1 or rng.random() >= config.pristine_prob:
        count = int(rng.integers(1, config.max_distortions + 1))
        factors = rng.choice(len(config.factors), size=count, replace=False)
        for f in sorted(factors):
            name = config.factors[f]
            if name == Bokeh.name:
                mask = MaskSpec.sample(rng, "background")  # bokeh is background blur
            elif rng.random() < config.whole_frame_prob:
                mask = MaskSpec()
            else:
                mask = MaskSpec.sample(rng)
            distortion = make_distortion(name).sample(rng)
            severity = round(float(rng.uniform(0.1, 1.0)), 3)
            applied.append(Applied(name, severity, distortion.params(), mask))
    return ItemPlan(item_id, split, source, view, tuple(applied), group=item_id)


def render_item(plan: ItemPlan, config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """(reference, distorted) clips of one plan, each (T, H, W, 3) uint8, before storage coding.

    The reference is the pristine clip put through the geometric part of each distortion
    (:meth:`Distortion.registration`; the pristine clip itself when there is none): the labels
    measure the distorted clip against it.
    """
    h, w = config.height, config.width
    pristine = pristine_clip(plan.source, plan.view, config.num_frames, h, w, config.fps)
    reference = distorted = pristine
    for step in plan.distortions:
        distortion = make_distortion(step.factor, step.params)
        mask = step.mask.render(h, w)
        distorted = distortion(distorted, step.severity, mask)
        reference = distortion.registered(reference, step.severity, mask)
    return reference, distorted


def build_item(plan: ItemPlan, config: SynthConfig, out_dir: Path) -> dict[str, Any]:
    """Render, store and measure one item; returns (and writes, last) its record."""
    record_path = out_dir / "items" / f"{plan.id}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    reference, distorted = render_item(plan, config)
    video = out_dir / "videos" / f"{plan.id}.mp4"
    atomic_write(
        video,
        lambda tmp: encode_h264(distorted, tmp, config.fps, config.storage_crf, config.x264_preset),
    )
    stored = _decode(video)
    global_vmaf = vmaf(video, reference, config.fps, config.vmaf_subsample)
    local_ssim = cell_ssim(stored, reference, config.ssim_frames)
    middle = len(stored) // 2
    still_ssim = grid_mean(ssim_map(stored[middle], reference[middle]))
    still = out_dir / "stills" / f"{plan.id}.png"
    atomic_write(still, lambda tmp: _save_png(stored[middle], tmp))
    record = {
        "id": plan.id,
        "split": plan.split,
        "video": f"videos/{plan.id}.mp4",
        "still": f"stills/{plan.id}.png",
        "source": plan.source.name,
        "group": plan.group,
        "view": asdict(plan.view),
        "distortions": [asdict(a) for a in plan.distortions],
        "vmaf": round(global_vmaf, 4),
        "mos": round(float(to_mos(global_vmaf)), 4),
        "cell_ssim": np.round(local_ssim, 5).tolist(),
        "local_mos": np.round(to_mos(ssim_to_vmaf_scale(local_ssim)), 3).tolist(),
        "still_local_mos": np.round(to_mos(ssim_to_vmaf_scale(still_ssim)), 3).tolist(),
    }
    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return record


def _decode(path: Path) -> np.ndarray:
    from kvq.video import iter_frames

    return np.stack(list(iter_frames(path)))


def _save_png(frame: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path, format="PNG")


@dataclass(frozen=True)
class CorpusSummary:
    out_dir: Path
    num_items: int
    num_built: int  # items built by this run (the rest existed already)
    per_split: dict[str, int]


def build_corpus(
    out_dir: str | Path,
    source_dirs: list[str | Path],
    config: SynthConfig,
    workers: int = 1,
    progress: bool = True,
) -> CorpusSummary:
    """Build (or finish building) the corpus of ``config`` from ``source_dirs`` in ``out_dir``."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    sources = find_sources(source_dirs)
    plans = plan_corpus(sources, config)
    pending = [p for p in plans if not (out_dir / "items" / f"{p.id}.json").exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=len(plans), initial=len(plans) - len(pending), unit="clip", disable=not progress
    )
    if workers > 1 and len(pending) > 1:
        jobs = [(p, config, out_dir) for p in pending]
        for _ in map_in_processes(_build_job, jobs, workers):
            bar.update()
    else:
        for plan in pending:
            build_item(plan, config, out_dir)
            bar.update()
    bar.close()
    records = [json.loads((out_dir / "items" / f"{p.id}.json").read_text()) for p in plans]
    write_labels(out_dir, records, config)
    write_manifest(out_dir, config, sources, plans, records)
    per_split = {name: sum(r["split"] == name for r in records) for name, _ in config.splits}
    return CorpusSummary(out_dir, len(plans), len(pending), per_split)


def map_in_processes(job: Callable[[J], R], args: list[J], workers: int) -> Iterator[R]:
    """``job(a)`` for every ``a`` of ``args`` in ``workers`` processes, yielded as they finish.

    The workers are spawned, not forked: a fork of a process whose FFmpeg or OpenMP threads are
    running can crash in the child (a segfault in the video decoder); a script that calls this
    therefore needs the usual ``if __name__ == "__main__":`` guard. A worker that dies raises
    :class:`SynthError` where :class:`multiprocessing.Pool` would wait for it forever; a
    failure or an interrupt cancels the jobs not yet queued and waits for the running ones.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_single_thread
    )
    try:
        for done in as_completed([pool.submit(job, a) for a in args]):
            yield done.result()
    except BrokenProcessPool as err:
        raise SynthError(
            "a worker process died while building the corpus (killed, out of memory or "
            "crashed); the clips finished so far are kept: run the same command again to "
            "build the rest (from a Python script, workers start only under an "
            "`if __name__ == '__main__':` guard)"
        ) from err
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _single_thread() -> None:
    # workers parallelise over clips; nested BLAS/torch threads would only fight for the cores
    import torch

    torch.set_num_threads(1)


def _build_job(job: tuple[ItemPlan, SynthConfig, Path]) -> str:
    build_item(*job)
    return job[0].id


def write_labels(out_dir: Path, records: list[dict[str, Any]], config: SynthConfig) -> None:
    """FAST-VQA and LPVQ label files per split (records in item order)."""
    from kvq.data.labels import VideoLabel, write_groups, write_lpvq_labels, write_video_labels

    labels = out_dir / "labels"
    labels.mkdir(exist_ok=True)
    for split, _ in config.splits:
        chosen = [r for r in records if r["split"] == split]
        write_video_labels(
            labels / f"{split}.txt",
            [VideoLabel(r["video"], r["mos"], config.duration, config.fps) for r in chosen],
        )
        write_lpvq_labels(
            labels / f"{split}_local.txt", {r["video"]: np.array(r["local_mos"]) for r in chosen}
        )
        write_lpvq_labels(
            labels / f"{split}_stills.txt",
            {r["still"]: np.array(r["still_local_mos"]) for r in chosen},
        )
        write_groups(labels / f"{split}_groups.csv", {r["video"]: r["group"] for r in chosen})


def write_manifest(
    out_dir: Path,
    config: SynthConfig,
    sources: list[Source],
    plans: list[ItemPlan],
    records: list[dict[str, Any]],
) -> None:
    from kvq.synth import measure

    split_of = {p.source.name: p.split for p in plans}
    manifest = {
        "config": asdict(config),
        "sources": [{**asdict(s), "split": split_of.get(s.name)} for s in sources],
        "label_mapping": {
            "global": "VMAF (model vmaf_v0.6.1neg) of the stored clip vs its pristine frames",
            "local": "SSIM (luma, Gaussian σ=1.5) averaged per 7×7 cell, then "
            f"v = {measure.SSIM_DB_SLOPE}·(−10·log10(1−SSIM)) + {measure.SSIM_DB_OFFSET}",
            "to_mos": f"1 + 4·clip((v − {measure.VMAF_FLOOR}) / "
            f"({measure.VMAF_CEIL} − {measure.VMAF_FLOOR}), 0, 1)",
        },
        "items": records,
    }
    atomic_write(
        out_dir / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1))
    )
