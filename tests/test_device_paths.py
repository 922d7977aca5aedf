"""The model's input is made where the model is: scoring, evaluation and training, no GPU needed.

A GPU mistake (a clip left on the CPU, normalised before it is moved, or in the wrong dtype)
shows up here through two stand-ins:

- :class:`Elsewhere` is a model on the meta device (a device without data, like a GPU is
  "another device" to the CPU): its forward checks that the input is on its device and in its
  dtype, then answers with a real tiny model's outputs computed on the CPU, so the code around
  the model runs as it would with a real one;
- a real tiny model in float64 (on the CPU) fails on an input left in float32, and
  :func:`checked` makes every call of it check its input first.

:class:`Transfers` records what crosses from the CPU to another device: only uint8 clips
should (a float32 clip is four times the bytes).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import kvq
from kvq.data.datasets import collate_clips
from kvq.data.labels import VideoLabel, write_video_labels
from kvq.runtime import DeviceError, resolve_device
from kvq.scoring.predictor import Predictor
from kvq.train import config_from_dict
from kvq.train.data import LabelledSet
from kvq.train.evaluate import predict
from kvq.train.trainer import Trainer
from kvq.video import ClipSpec, normalize_clip, to_model_input
from video_factory import make_video

META = torch.device("meta")
SPEC = ClipSpec(num_segments=2, frames_per_segment=2, stride=2, size=(32, 32))
TINY = {"embed_dim": 16, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 2, 4], "head_dropout": 0.0}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return kvq.build_model("kvq-xs", **TINY).eval()


class Elsewhere(nn.Module):
    """A model on ``device`` in ``dtype`` (where its one parameter is) whose forward asserts
    that its input is there too, then returns ``inner``'s outputs for a zero clip of the same
    shape on the CPU. ``inputs`` records (device, dtype, shape) of every call."""

    def __init__(self, inner: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))
        self._inner = [inner]  # not a submodule: it stays on the CPU when this one moves
        self.inputs: list[tuple[torch.device, torch.dtype, tuple[int, ...]]] = []

    def forward(self, x: torch.Tensor):
        self.inputs.append((x.device, x.dtype, tuple(x.shape)))
        where = (self.anchor.device, self.anchor.dtype)
        assert (x.device, x.dtype) == where, f"input on {x.device} in {x.dtype}, model {where}"
        return self._inner[0](torch.zeros(x.shape))


def checked(model: nn.Module) -> list[tuple[torch.device, torch.dtype]]:
    """Make every call of ``model`` assert that its tensor inputs are on the device and in the
    dtype of its parameters; returns the list of (device, dtype) it saw."""
    seen = []

    def check(module, args, kwargs):
        param = next(module.parameters())
        for t in (*args, *kwargs.values()):
            if isinstance(t, torch.Tensor):
                seen.append((t.device, t.dtype))
                assert (t.device, t.dtype) == (param.device, param.dtype), (
                    f"input on {t.device} in {t.dtype}, model on {param.device} in {param.dtype}"
                )

    model.register_forward_pre_hook(check, with_kwargs=True)
    return seen


class Transfers(TorchFunctionMode):
    """Records ``(dtype, numel)`` of every tensor that ``Tensor.to`` moves to another device."""

    def __init__(self) -> None:
        super().__init__()
        self.moved: list[tuple[torch.dtype, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.Tensor.to and isinstance(out, torch.Tensor):
            if out.device != args[0].device:
                self.moved.append((args[0].dtype, args[0].numel()))
        return out


def clip(n: int = 1, seed: int = 0) -> torch.Tensor:
    """``n`` random uint8 clips of :data:`SPEC`, ``(n, T, H, W, 3)``."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, SPEC.clip_len, 32, 32, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four tiny labelled videos (train.txt) in one folder."""
    root = tmp_path_factory.mktemp("device_corpus")
    labels = []
    for i in range(4):
        make_video(root / f"v{i}.mp4", frames=8, size=(32, 32), pattern="noise")
        labels.append(VideoLabel(f"v{i}.mp4", 1.0 + i))
    write_video_labels(root / "train.txt", labels)
    return root, labels


def test_model_input_moves_the_uint8_clip_then_normalises_on_the_models_device():
    frames = clip(2)
    elsewhere = Elsewhere(tiny_model(), META, torch.bfloat16)
    with Transfers() as transfers:
        x = to_model_input(frames, elsewhere)
    assert (x.device, x.dtype, tuple(x.shape)) == (META, torch.bfloat16, (2, 3, 4, 32, 32))
    assert transfers.moved == [(torch.uint8, frames.numel())]
    # On the CPU: the same values as normalize_clip, in the model's dtype.
    x = to_model_input(frames.numpy(), tiny_model().double())
    assert x.dtype == torch.float64
    torch.testing.assert_close(x.float(), normalize_clip(frames))


def test_predictor_feeds_the_model_on_its_device_and_in_its_dtype():
    predictor = Predictor(tiny_model(), SPEC, device="cpu")
    elsewhere = Elsewhere(predictor.model, META, torch.float32)
    predictor.model, predictor.device = elsewhere, META
    with Transfers() as transfers:
        raw, quality, saliency = predictor.forward(clip(2))
        several = predictor.forward(clip(2).reshape(1, 2, *clip(2).shape[1:]))  # 2 clips each
        result = predictor.score(clip(1)[0])
    assert [i[:2] for i in elsewhere.inputs] == [(META, torch.float32)] * 3
    assert [i[2][0] for i in elsewhere.inputs] == [2, 2, 1]
    assert {dtype for dtype, _ in transfers.moved} == {torch.uint8}, transfers.moved
    assert raw.shape == (2,) and quality.shape == saliency.shape == (2, 2, 1, 1)
    assert several[0].shape == (1,)
    assert result.error is None and np.isfinite(result.score)
    # A model in float64 gets a float64 input, and the same scores as in float32.
    expected = Predictor(tiny_model(), SPEC, device="cpu").forward(clip(2))[0]
    wide = Predictor(tiny_model().double(), SPEC, device="cpu")
    seen = checked(wide.model)
    np.testing.assert_allclose(wide.forward(clip(2))[0], expected, rtol=1e-4, atol=1e-5)
    assert seen == [(torch.device("cpu"), torch.float64)]


def test_evaluation_feeds_the_model_on_its_device_and_in_its_dtype(corpus):
    root, labels = corpus
    part = LabelledSet("tiny", tuple(labels[:3]), root)
    elsewhere = Elsewhere(tiny_model(), META, torch.bfloat16)
    with Transfers() as transfers:
        preds = predict(elsewhere, part, SPEC, META, batch_size=2)
    assert [i[:2] for i in elsewhere.inputs] == [(META, torch.bfloat16)] * 2
    assert {dtype for dtype, _ in transfers.moved} == {torch.uint8}, transfers.moved
    assert len(preds.scores) == 3 and np.isfinite(preds.scores).all()
    # A real model in float64: fed float64, scoring as it does in float32.
    expected = predict(tiny_model(), part, SPEC, torch.device("cpu"), batch_size=2).scores
    wide = tiny_model().double()
    seen = checked(wide)
    scores = predict(wide, part, SPEC, torch.device("cpu"), batch_size=2).scores
    assert seen and set(seen) == {(torch.device("cpu"), torch.float64)}
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_a_training_step_feeds_the_model_in_its_dtype(corpus, tmp_path):
    root, _ = corpus
    config = config_from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "device": "cpu",
            "progress": False,
            "deterministic": False,
            "model": {"arch": "kvq-xs", "overrides": TINY},
            "data": {
                "data_root": str(root),
                "train": str(root / "train.txt"),
                "val_fraction": 0.5,
                "clip": {"num_segments": 2, "frames_per_segment": 2, "stride": 2, "size": [32, 32]},
                "num_workers": 0,
            },
            "optim": {"epochs": 1, "batch_size": 2, "warmup_epochs": 0},
            "loss": {"lpc_weight": 0.05, "lpc_cube": [2, 16, 16]},  # the LPC cubes run too
        }
    )
    trainer = Trainer(config)
    trainer.model.double()  # in place: the optimiser keeps the same parameters
    trainer.ema.module.double()
    seen = checked(trainer.model)
    before = copy.deepcopy(trainer.model.state_dict())
    batch = collate_clips([trainer.train_set[(i, 7)] for i in range(2)])
    assert batch["clip"].dtype == torch.uint8
    terms = trainer._train_step(batch)
    assert seen == [(torch.device("cpu"), torch.float64)]
    assert np.isfinite(terms["total"])
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("quality_head.") for k in changed)


def test_device_names_mean_the_same_everywhere(monkeypatch):
    """``auto`` and a bare ``cuda`` are this process's GPU (``LOCAL_RANK`` under torchrun);
    a device that is not there is one DeviceError, whoever asks."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device(name)
    for name in ("tpu", "cuda:x", ""):
        with pytest.raises(DeviceError, match="unknown device"):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda", rank=0) == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="2 GPU"):
        resolve_device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "3")  # more processes than GPUs
    with pytest.raises(DeviceError, match="2 GPU"):
        resolve_device("auto")
    from kvq.scoring import DeviceError as ScoringDeviceError

    assert ScoringDeviceError is DeviceError  # the scoring API names the same error
