"""Loading checkpoints of either family (ours or the official ones) with clear diagnostics.

`torch.load(..., weights_only=True)` reads only tensors and plain containers: a checkpoint that
carries pickled code is refused, never executed. Zip (PyTorch >= 1.6) and legacy (the 2019
FOMM checkpoints) serialisations both load.
"""
from __future__ import annotations

import glob
import os
import pickle
import re
import zipfile
from typing import Callable

import torch
from torch import nn

from modules.config import ConfigError, config_path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and says why."""


# Networks the references' checkpoints hold only sometimes: FOMM's discriminator (not in exported
# models), TPSMM's background predictor (saved from bg_start on) and AVD network (its own stage).
OPTIONAL_NETWORKS = ('discriminator', 'bg_predictor', 'avd_network')


ZIP_MAGIC = b'PK\x03\x04'      # torch.save since PyTorch 1.6
PICKLE_MAGIC = b'\x80'          # the legacy format (the 2019 FOMM checkpoints) starts with a pickle


def describe_unreadable(path: str) -> str:
    """Why a file that torch.load could not read is no checkpoint, as one sentence: what the file
    looks like says more than torch's message (a KeyError on a text file, a zip error cut off)."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return (f'a zip-format PyTorch checkpoint whose end is missing ({size:,} bytes): the file is truncated; '
                    f'download or copy it again')
        return 'a zip archive that is not a PyTorch checkpoint, or a damaged one'
    if head.startswith(PICKLE_MAGIC):
        return (f'a legacy-format PyTorch checkpoint that breaks off ({size:,} bytes): the file is truncated or '
                f'damaged; download or copy it again')
    if not head:
        return 'an empty file'
    text = head.lstrip().lower()
    if text.startswith((b'<!doctype html', b'<html')):
        return ('an HTML page, not a checkpoint: the download link returned a web page (file hosts do this for '
                'large files); download the file itself')
    try:
        shown = head[:60].decode('utf-8').strip().splitlines()[0]
        return f'a text file, not a checkpoint (it starts with {shown!r})'
    except (UnicodeDecodeError, IndexError):
        return 'not a PyTorch checkpoint (neither the zip nor the legacy format)'


def refusal(torch_message: str) -> str:
    """Why a checkpoint carrying pickled code is refused and what is safe instead. PyTorch's own
    text ends with advice to load with weights_only=False, which would run that code: not shown."""
    found = re.search(r'GLOBAL ([\w.]+)', torch_message)
    what = f' ({found.group(1)})' if found else ''
    return (f'refused: the file carries pickled Python objects other than tensors{what}, and loading them could run '
            'code. Only plain state dicts are loaded: take the checkpoint from its authors\' page (README, "Get a '
            'checkpoint"), or, for a file you made yourself, save the networks\' tensors alone: '
            'torch.save({name: network.state_dict(), ...}, path)')


def read_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        with open(path, 'rb') as f:
            structured = f.read(4).startswith((ZIP_MAGIC, PICKLE_MAGIC))
        if structured and ('Unsupported global' in str(e) or 'GLOBAL' in str(e)):
            raise CheckpointError(f'{path}: {refusal(str(e))}') from None
        raise CheckpointError(f'{path}: {describe_unreadable(path)}') from None
    except Exception:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f'{path}: {describe_unreadable(path)}') from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path}: expected a dict of state dicts, found {type(ckpt).__name__}')
    return ckpt


def _strip_prefix(state: dict) -> dict:
    """Checkpoints saved from (Distributed)DataParallel prefix every key with 'module.'."""
    if state and all(k.startswith('module.') for k in state):
        return {k[len('module.'):]: v for k, v in state.items()}
    return state


def state_dict_mismatch(model: nn.Module, state: dict) -> list[str]:
    """Human-readable differences between a module's state dict and a checkpoint's."""
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}'
              for k, v in own.items() if k in state and hasattr(state[k], 'shape') and state[k].shape != v.shape]
    for label, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', shapes)):
        if items:
            shown = ', '.join(items[:5]) + (f' (+{len(items) - 5} more)' if len(items) > 5 else '')
            problems.append(f'{len(items)} {label}: {shown}')
    return problems


def checkpoint_family(ckpt: dict) -> str | None:
    if 'inpainting_network' in ckpt or 'dense_motion_network' in ckpt:
        return 'tps'
    if 'generator' in ckpt:
        return 'fomm'
    return None


def describe_size(ckpt: dict) -> str:
    """What the checkpoint's shapes say about the config that made it."""
    try:
        if checkpoint_family(ckpt) == 'fomm':
            kp = _strip_prefix(ckpt['kp_detector'])
            jac = 'with' if 'jacobian.weight' in kp else 'without'
            # the first down block of the hourglass outputs 2 * block_expansion channels
            expansion = kp['predictor.encoder.down_blocks.0.conv.weight'].shape[0] // 2
            return f"FOMM, num_kp={kp['kp.weight'].shape[0]}, {jac} jacobians, kp block_expansion={expansion}"
        if checkpoint_family(ckpt) == 'tps':
            kp = _strip_prefix(ckpt['kp_detector'])
            # a checkpoint exported for animation may leave out the training-only bg_predictor
            # (and the AVD network), so say what it carries, not what its config had
            parts = [name for name in ('bg_predictor', 'avd_network') if name in ckpt]
            return (f"TPSMM, num_tps={kp['fg_encoder.fc.weight'].shape[0] // 10}, "
                    f"with {' and '.join(parts) if parts else 'neither bg_predictor nor avd_network'}")
    except (KeyError, AttributeError):
        pass
    return 'unknown layout'


def matching_configs(ckpt: dict, config_dir: str | None = None) -> list[str]:
    """Bundled configs whose networks have exactly the checkpoint's parameter shapes (built on the
    meta device: no memory, no compute)."""
    from modules import build_models

    from .config import load_config
    config_dir = config_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config')
    fits = []
    for path in sorted(glob.glob(os.path.join(config_dir, '**', '*.yaml'), recursive=True)):
        try:
            with torch.device('meta'):
                models = build_models(load_config(path))
        except Exception:
            continue
        keys = [k for k in models if k in ckpt]
        if keys and all(not state_dict_mismatch(models[k], _strip_prefix(ckpt[k])) for k in keys):
            fits.append(os.path.relpath(path))
    return fits


def missing_networks(missing: list[str], ckpt: dict, config: dict | None, path: str) -> str:
    """Why a checkpoint whose networks all fit still cannot serve, and what to do."""
    if missing == ['avd_network']:
        where = config_path(config) if config is not None else 'CONFIG'
        return ("it holds no AVD network (TPSMM's second stage, trained after the rest), which --mode avd needs: "
                f"train one with `python run.py --config {where} --mode train_avd --checkpoint {path}`, or animate "
                "with --mode relative or --mode standard")
    names = ', '.join(repr(k) for k in missing)
    return (f"no {names} network in the checkpoint, which this config needs (it has: "
            f"{', '.join(sorted(k for k in ckpt if not k.startswith(('optimizer', 'scheduler'))))})")


def load_models(path: str, models: dict[str, nn.Module], config: dict | None = None,
                required: tuple[str, ...] | None = None, checkpoint: dict | None = None,
                assign: bool = False) -> dict:
    """Load `models[key]` from checkpoint `path` for every key it has, strictly.

    `required` names the networks that must be present (default: all of `models` except the
    `OPTIONAL_NETWORKS`). On any mismatch raises CheckpointError listing missing and
    unexpected keys and shape mismatches per network and, where it can tell, which bundled
    config fits the checkpoint. Returns the raw checkpoint (epoch, optimizer states, ...).
    `checkpoint`: the file's contents when the caller has read it already (`path` names it).
    `assign`: the networks take the checkpoint's tensors instead of copying into their own (for
    networks built on the meta device; see `networks_from_checkpoint`).
    """
    ckpt = read_checkpoint(path) if checkpoint is None else checkpoint
    if required is None:
        required = tuple(k for k in models if k not in OPTIONAL_NETWORKS)
    problems = []
    family = checkpoint_family(ckpt)
    ours = 'tps' if 'inpainting_network' in models else 'fomm'
    names = {'tps': 'TPSMM', 'fomm': 'FOMM'}
    if family and family != ours:
        fits = matching_configs(ckpt)
        raise CheckpointError(f'{path} is a {names[family]} checkpoint ({describe_size(ckpt)}) but the config '
                              f'{config_path(config) if config is not None else ""} builds {names[ours]} networks.'
                              + (f' Configs that fit it: {", ".join(fits)}.' if fits else ''))
    for key, model in models.items():
        if key in ckpt:
            for p in state_dict_mismatch(model, _strip_prefix(ckpt[key])):
                problems.append(f'{key}: {p}')
    missing = [key for key in required if key not in ckpt]
    if missing and not problems:
        # Every network it has fits: it lacks one, which is no mismatch of configs.
        raise CheckpointError(f'{path}: {missing_networks(missing, ckpt, config, path)}')
    problems += [f"no '{key}' network in the checkpoint (it has: {', '.join(sorted(ckpt)) or 'nothing'})"
                 for key in missing]
    if problems:
        where = f' with config {config_path(config)}' if config is not None else ''
        hint = f' The checkpoint is {describe_size(ckpt)}.' if family else ''
        fits = matching_configs(ckpt) if family else []
        if fits:
            hint += f' Configs that fit this checkpoint: {", ".join(fits)}.'
        elif family:
            hint += ' No bundled config fits it exactly.'
        raise CheckpointError(f'{path} does not fit{where}:\n  - ' + '\n  - '.join(problems) + ('\n ' + hint if hint else ''))
    for key, model in models.items():
        if key in ckpt:
            model.load_state_dict(_strip_prefix(ckpt[key]), strict=True, assign=assign)
    return ckpt


def _on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def networks_from_checkpoint(config: dict, path: str, required: Callable[[dict], tuple[str, ...]] | None = None,
                             skip: tuple[str, ...] = ('discriminator',)) -> tuple[dict[str, nn.Module], dict]:
    """(the config's networks with the checkpoint's weights, the checkpoint), for inference.

    The networks are built on the meta device and take the checkpoint's tensors, so nothing is
    initialised at random only to be overwritten (FOMM vox-256: 0.6 s of a 1 s load). A network
    the checkpoint lacks (an optional one) or one with state the checkpoint does not carry is
    built the usual way. `required(models)` names the networks the checkpoint must hold (default
    as `load_models`); networks named in `skip` are not built. Errors as `load_models`."""
    from modules import build_models
    with torch.device('meta'):
        models = build_models(config, without=skip)
    ckpt = load_models(path, models, config, required(models) if required else None, assign=True)
    for key, model in models.items():
        if key in ckpt:
            model.float()          # the checkpoint's dtype came with its tensors; networks stay float32
    unfilled = [k for k, m in models.items() if _on_meta(m)]
    if unfilled:
        fresh = build_models(config, without=skip)
        for key in unfilled:
            models[key] = fresh[key]
            if key in ckpt:
                models[key].load_state_dict(_strip_prefix(ckpt[key]), strict=True)
    return models, ckpt


__all__ = ['CheckpointError', 'ConfigError', 'read_checkpoint', 'load_models', 'networks_from_checkpoint',
           'matching_configs', 'state_dict_mismatch']
