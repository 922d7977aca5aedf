"""Training: the paper's recipe with the Local Perception Constraint (docs/design.md).

See *Local Perception Constraint* and *Training* there.
"""

from kvq.train.config import ConfigError, TrainConfig, config_from_dict, load_config
from kvq.train.losses import KVQLoss, LossConfig
from kvq.train.trainer import Trainer, TrainError, TrainResult, train

__all__ = [
    "ConfigError",
    "KVQLoss",
    "LossConfig",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "Trainer",
    "config_from_dict",
    "load_config",
    "train",
]
