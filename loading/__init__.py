"""Files to networks: config files (`load_config`) and checkpoints (`read_checkpoint`, `load_models`).

Above `modules/` (the networks, which know no files) and below every job and command.
"""
from .checkpoint import CheckpointError, load_models, read_checkpoint
from .config import load_config

__all__ = ['CheckpointError', 'load_config', 'load_models', 'read_checkpoint']
