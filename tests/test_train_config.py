from pathlib import Path

import pytest

from kvq.train.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
    merge_dicts,
    parse_override,
)

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_the_paper_recipe():
    config = TrainConfig()
    assert (config.optim.lr, config.optim.backbone_lr_mult, config.optim.weight_decay) == (
        5e-4,
        0.1,
        0.05,
    )
    assert (config.optim.warmup_epochs, config.optim.epochs, config.optim.batch_size) == (
        2.5,
        30,
        16,
    )
    assert config.optim.ema_decay == 0.999
    assert (config.loss.rank_weight, config.loss.lpc_weight) == (0.5, 0.05)
    assert config.loss.lpc_cube == (2, 32, 32)
    assert config.data.clip.size == (448, 448) and config.data.clip.clip_len == 32


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config_from_dict(config.to_dict()) == config  # round trip through plain values


def test_yaml_values_are_typed_and_merged_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "optim: {lr: 1, weight_decay: 5e-2, epochs: 3}\nloss: {lpc_cube: [2, 28, 28]}\n"
        "data: {test: konvid_1k, clip: {size: [224, 224]}}\n"
    )
    config = load_config(path, {"optim": {"epochs": 5}, "output_dir": "x"})
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.optim.weight_decay == 0.05  # YAML reads 5e-2 as a string
    assert (config.optim.epochs, config.output_dir) == (5, "x")
    assert config.loss.lpc_cube == (2, 28, 28) and config.data.test == ("konvid_1k",)
    assert config.data.clip.size == (224, 224)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"optim": {"learning_rate": 1}}, r"optim: unknown key\(s\) \['learning_rate'\]"),
        ({"optim": {"epochs": "ten"}}, "optim.epochs: expected int"),
        ({"data": {"clip": {"view": "zoom"}}}, "data.clip: ClipSpec.view"),
        ({"precision": "fp8"}, "precision"),
        ({"model": []}, "model: expected a mapping"),
    ],
)
def test_bad_configs_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)


def test_dotted_overrides_reach_any_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  arch: kvq-xs\noptim:\n  lr: 1.0e-3\n  epochs: 4\n")
    overrides = {}
    for text in ("optim.lr=3e-4", "model.overrides.attention=iwa", "data.test=[a.txt, b.txt]"):
        overrides = merge_dicts(overrides, parse_override(text))
    config = load_config(path, overrides)
    assert config.optim.lr == 3e-4 and config.optim.epochs == 4  # siblings kept
    assert config.model.arch == "kvq-xs" and config.model.overrides == {"attention": "iwa"}
    assert config.data.test == ("a.txt", "b.txt")
    for bad in ("optim.lr", "=3", "optim..lr=1", "optim.lr=[1"):
        with pytest.raises(ConfigError, match="override"):
            parse_override(bad)
    with pytest.raises(ConfigError, match="lr"):
        load_config(path, parse_override("optim.lr=fast"))


def test_a_new_data_root_moves_the_label_paths_below_the_old_one(tmp_path):
    shipped = Path(__file__).parents[1] / "configs" / "default_weights.yaml"
    data = load_config(shipped, {"data": {"data_root": "syn"}}).data
    assert (data.data_root, data.train, data.val) == (
        "syn",
        "syn/labels/train.txt",
        "syn/labels/val.txt",
    )
    assert (data.test, data.train_groups) == (
        ("syn/labels/test.txt",),
        "syn/labels/train_groups.csv",
    )
    # The folder of registered sets' label files moves too; set names are not paths.
    lsvq = load_config(shipped.with_name("kvq_t_lsvq.yaml"), {"data": {"data_root": "/d/vqa"}})
    assert lsvq.data.labels_root == "/d/vqa/labels" and lsvq.data.train == "lsvq_train"
    # Paths elsewhere, paths given with the override and a data_root of "." stay.
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n  data_root: ./corpus\n  train: corpus/a.txt\n  val: other/v.txt\n"
        "  test: [corpus/t.txt, corpora/t.txt]\n"
    )
    data = load_config(config, {"data": {"data_root": "/new", "train": "corpus/mine.txt"}}).data
    assert (data.train, data.val) == ("corpus/mine.txt", "other/v.txt")
    assert data.test == ("/new/t.txt", "corpora/t.txt")
    config.write_text("data:\n  data_root: .\n  train: corpus/a.txt\n")
    assert load_config(config, {"data": {"data_root": "/new"}}).data.train == "corpus/a.txt"
    # Without a new data_root nothing moves.
    assert load_config(shipped).data.val == "data/synth/labels/val.txt"


@pytest.mark.parametrize(
    "overrides, says",
    [
        ({"attnetion": "iwa"}, "unknown key(s) ['attnetion']; KVQConfig fields: ['attention'"),
        ({"attention": "xyz"}, "attention must be one of"),
        ({"topk": "many"}, "model.overrides.topk: expected"),
        ({"prior_chunk": 8}, "runtime settings, not architecture"),
    ],
)
def test_model_overrides_are_typed_kvq_config_fields(overrides, says):
    with pytest.raises(ConfigError) as refused:
        config_from_dict({"model": {"arch": "kvq-xs", "overrides": overrides}})
    assert says in str(refused.value)
    good = config_from_dict({"model": {"arch": "kvq-xs", "overrides": {"depths": [2, 2, 2, 2]}}})
    assert good.model.overrides == {"depths": (2, 2, 2, 2)}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_from_scratch_configs_use_a_backbone_rate_that_can_learn(path):
    # Measured (scripts/learnability_probe.py): a randomly initialised backbone learns nothing
    # at 3e-4 or more, and learns at 1e-4 or less.
    config = load_config(path)
    if config.model.pretrained is None:
        assert config.optim.lr * config.optim.backbone_lr_mult <= 1e-4, path.name
