"""Networks of both families and the registry that builds them from a config dict.

    models = modules.build_models(config)      # {'kp_detector': ..., 'generator': ..., ...}

Keys are the official checkpoint keys, so `models[k].load_state_dict(checkpoint[k])` works for
checkpoints of the original repositories. This package knows tensors and config dicts only: reading
config files and checkpoints is `loading/`'s job.
"""
from __future__ import annotations

from .config import Config, ConfigError
from .registry import FAMILIES, Family, build_models, family_of_config

__all__ = ['build_models', 'family_of_config', 'FAMILIES', 'Family', 'ConfigError', 'Config']
