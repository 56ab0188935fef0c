"""Reading config files: the one place where a YAML config becomes a `Config`.

Official config files work unchanged: the model family follows from
`model_params.common_params` (`num_kp` -> FOMM, `num_tps` -> TPSMM), and each section's keys
are checked against the typed constructor that consumes it (modules/config.py), so a misspelt key
is reported with the file, the section and the closest valid name instead of failing deep inside a
network.
"""
from __future__ import annotations

import os
import sys

import yaml

from modules.config import Config, ConfigError
from modules.registry import family_of_config  # validates the model section it knows how to build


# The repository's own configs (config/fomm/vox-256.yaml, ...): README's commands name them
# relative to the repository root, and they are found from any folder.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_DIR = os.path.join(REPOSITORY, 'config')
_said: set[str] = set()


def bundled_config(path: str) -> str:
    """`path` itself when it exists; else, for a relative path such as 'config/fomm/vox-256.yaml'
    that is one of the repository's configs, that file (said once per path on stderr)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.normpath(os.path.join(REPOSITORY, path))
    if not (candidate.startswith(BUNDLED_DIR + os.sep) and os.path.isfile(candidate)):
        return path
    if path not in _said:
        _said.add(path)
        print(f'note: {path} is not in the current folder; using the bundled {candidate}', file=sys.stderr)
    return candidate


def load_config(path: str) -> Config:
    """Parse a YAML config and check its model section. Raises ConfigError with one clear line.
    A relative path naming one of the repository's configs works from any folder (`bundled_config`)."""
    path = bundled_config(path)
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
