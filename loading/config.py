"""Reading config files: the one place where a YAML config becomes a `Config`.

Official config files work unchanged: the model family follows from
`model_params.common_params` (`num_kp` -> FOMM, `num_tps` -> TPSMM), and each section's keys
are checked against the typed constructor that consumes it (modules/config.py), so a misspelt key
is reported with the file, the section and the closest valid name instead of failing deep inside a
network.
"""
from __future__ import annotations

import os

import yaml

from modules.config import Config, ConfigError
from modules.registry import family_of_config  # validates the model section it knows how to build


def load_config(path: str) -> Config:
    """Parse a YAML config and check its model section. Raises ConfigError with one clear line."""
    if not os.path.isfile(path):
        raise ConfigError(f'{path}: config file not found')
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        detail = str(e).replace('\n', ' ')
        raise ConfigError(f'{path}: not a readable YAML config ({detail})') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: expected a YAML mapping with model_params, dataset_params, ...; got {type(data).__name__}')
    config = Config(data)
    config.path = path
    family_of_config(config)
    return config
