"""Where and how a model runs: the device (:func:`resolve_device`), mixed precision
(:func:`amp_dtype`, :func:`autocast`), the ``torchrun`` process group (:func:`init_from_env`,
:func:`current_env`, :func:`any_rank`, :func:`leave_process_group`) and the worker processes of
data loaders (:class:`WorkerInit`). Everything degrades to a single process when
``torch.distributed`` is not initialised.

Every entry point — :func:`kvq.load` and its :class:`~kvq.scoring.Predictor`, ``kvq score``,
``kvq eval``, ``kvq train`` and ``kvq lpvq eval`` — picks its device here, so a device name means
the same everywhere and one that is not there is always a :class:`DeviceError` with the same
message. The model's input is made by :func:`kvq.video.clip.to_model_input`, which follows
the model to its device and dtype.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(ValueError):
    """A device that cannot run the model here: an unknown name, or one this machine lacks."""


def local_rank() -> int:
    """This process's GPU slot on its machine: ``LOCAL_RANK`` under ``torchrun``, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(device: str | torch.device = "auto", rank: int | None = None) -> torch.device:
    """The device ``device`` names, checked to exist here.

    ``auto`` is this process's GPU when CUDA is available, else the CPU; a bare ``cuda`` is
    this process's GPU, ``cuda:<rank>`` (``rank``: default :func:`local_rank`, so every
    ``torchrun`` process takes its own GPU); ``cuda:N``, ``mps`` and ``cpu`` are taken as they
    are. Raises :class:`DeviceError` for an unknown name, CUDA or MPS that is not available, or
    a GPU index beyond the GPUs present.
    """
    name = str(device)
    wanted = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    try:
        resolved = torch.device(wanted)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device {name!r}; use {DEVICE_NAMES}")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise DeviceError(f"device {name!r} requested but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank() if rank is None else rank)
        if resolved.index >= count:
            shown = name if name == str(resolved) else f"{name} (here {resolved})"
            raise DeviceError(f"device {shown!r} requested but there are {count} GPU(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name!r} requested but MPS is not available")
    return resolved


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``) on
    ``device``: only on GPUs (on CPUs bf16 is emulated and slower than fp32); ``auto`` is bf16
    where the GPU supports it, else fp16. None: no autocast."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on ``device`` when ``dtype`` is given (:func:`amp_dtype`), else nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class WorkerInit:
    """The ``worker_init_fn`` of every kvq ``DataLoader``: one torch thread per worker (a
    worker decodes; the model has the cores), a worker that never outlives the process that
    started it, and one that stays quiet when that process stops while receiving a batch.

    PyTorch's own check for a dead parent runs only between items, and a worker whose parent
    was killed can block for good on a full result queue: one killed ``kvq train`` left a
    worker running for 40 minutes. On Linux the kernel kills the worker with its parent
    (``PR_SET_PDEATHSIG``); elsewhere PyTorch's check is all there is. Create it in the process
    that iterates the loader (it records that process).

    A worker hands each batch's tensors over through a thread that passes file descriptors;
    when Ctrl-C stops the parent in the middle of that hand-over, the thread fails on the
    closed connection and would print a traceback under the parent's one-line message
    (:func:`_quiet_when_the_parent_hangs_up`).
    """

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(1)
        sys.excepthook = _quiet_when_the_parent_hangs_up
        if sys.platform.startswith("linux"):
            _die_with_parent(self.parent)


def _quiet_when_the_parent_hangs_up(kind: type[BaseException], value, traceback) -> None:
    """A worker's ``sys.excepthook``: silent on a connection the parent closed (the parent
    reports its own stop), the default report for anything else. In a worker only the
    descriptor-passing thread of :mod:`multiprocessing` reports through this hook; errors of
    the worker's own work go back to the parent as PyTorch sends them."""
    if issubclass(kind, (EOFError, ConnectionError)):
        return
    sys.__excepthook__(kind, value, traceback)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent exits; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: PyTorch's watchdog only
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(device_type: str) -> DistEnv:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1).

    NCCL on CUDA, gloo on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not is_distributed():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return env


def leave_process_group() -> None:
    """Destroy the default process group after every rank has reached this point.

    Objects that still hold the group (a DistributedDataParallel reducer waiting for the
    garbage collector) are collected first: with PyTorch 2.13 on CPU, a gloo group destroyed
    while a DDP model outlived it aborted 5 of 40 two-rank runs at exit (SIGABRT, "terminate
    called without an active exception"), and none of 60 once the model was collected first.
    The barrier keeps a fast rank from closing its connections while a peer is still in its
    last collective.
    """
    if not is_distributed():
        return
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def current_env() -> DistEnv:
    if not is_distributed():
        return DistEnv()
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (``flag`` itself without a process group), so that
    all ranks take a decision one of them made: every rank must call it."""
    if not is_distributed() or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if _uses_nccl() else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _uses_nccl() -> bool:
    return dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
