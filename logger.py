"""Training logging, visualisation and checkpoint saving for FOMM and TPSMM.

Two classes:

* `Visualizer` turns a batch (`source`, `driving`) and a generator output dict into one uint8
  image grid: one row per sample, one column per kind of picture (images with their keypoints,
  the warped source, the prediction, the occlusion map, and the per-region motion pieces).
  It recognises both model families by the keys of the output dict.
* `Logger` accumulates per-iteration losses, writes the per-epoch line of `log.txt` in the
  format of the reference implementations, the per-epoch visualisation PNG, TensorBoard scalars
  and images, and checkpoints (written atomically, see `media.files.atomic_path`).

Checkpoint layout (compatible with the released FOMM/TPSMM checkpoints):
``{name: state_dict_or_value, ..., 'epoch': int}`` where every object that has a `state_dict()`
(networks, optimizers, schedulers) is stored as its state dict; networks are first unwrapped
from DataParallel / DistributedDataParallel / torch.compile wrappers, so keys never carry a
'module.' (or '_orig_mod.') prefix.
"""
from __future__ import annotations

import colorsys
import os
import shutil
import traceback
import warnings
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.draw import disk

from media.files import atomic_path

__all__ = ['Visualizer', 'Logger', 'get_colormap', 'unwrap_module']


# --------------------------------------------------------------------------------------------
# Colormaps (matplotlib is not a dependency). A colormap maps x in [0, 1] to an RGB triple.
# --------------------------------------------------------------------------------------------

# Anchor colours of matplotlib's 'gist_rainbow', linearly interpolated between anchors.
_GIST_RAINBOW_ANCHORS = (
    (0.000, (1.00, 0.00, 0.16)),
    (0.030, (1.00, 0.00, 0.00)),
    (0.215, (1.00, 1.00, 0.00)),
    (0.400, (0.00, 1.00, 0.00)),
    (0.586, (0.00, 1.00, 1.00)),
    (0.770, (0.00, 0.00, 1.00)),
    (0.954, (1.00, 0.00, 1.00)),
    (1.000, (1.00, 0.00, 0.75)),
)

# Per-channel anchors (position, value) of matplotlib's 'jet'.
_JET_CHANNELS = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)


def _interp_channels(x: float, channels) -> tuple[float, float, float]:
    return tuple(float(np.interp(x, [p for p, _ in ch], [v for _, v in ch])) for ch in channels)


def _gist_rainbow(x: float) -> tuple[float, float, float]:
    positions = [p for p, _ in _GIST_RAINBOW_ANCHORS]
    return tuple(float(np.interp(x, positions, [c[i] for _, c in _GIST_RAINBOW_ANCHORS]))
                 for i in range(3))


def _hsv(x: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(x, 1.0, 1.0)  # hue 1.0 wraps to red, as in matplotlib


def _rainbow(x: float) -> tuple[float, float, float]:
    # matplotlib's 'rainbow' (a function-defined map): purple -> blue -> green -> yellow -> red.
    return (float(np.clip(abs(2 * x - 0.5), 0, 1)),
            float(np.clip(np.sin(np.pi * x), 0, 1)),
            float(np.clip(np.cos(np.pi * x / 2), 0, 1)))


def _jet(x: float) -> tuple[float, float, float]:
    return _interp_channels(x, _JET_CHANNELS)


_COLORMAPS: dict[str, Callable[[float], tuple[float, float, float]]] = {
    'gist_rainbow': _gist_rainbow,
    'hsv': _hsv,
    'rainbow': _rainbow,
    'jet': _jet,
}


def get_colormap(colormap: str | Callable) -> Callable[[float], np.ndarray]:
    """Return a function x in [0, 1] -> RGB float array of shape (3,).

    `colormap` is one of 'gist_rainbow', 'hsv', 'rainbow', 'jet', any other matplotlib name when
    matplotlib happens to be installed, or a callable (e.g. a matplotlib colormap returning RGBA).
    """
    if callable(colormap):
        fn = colormap
    elif colormap in _COLORMAPS:
        fn = _COLORMAPS[colormap]
    else:
        try:
            import matplotlib  # optional
            fn = matplotlib.colormaps[colormap]
        except (ImportError, KeyError):
            raise ValueError(f'unknown colormap {colormap!r}; supported without matplotlib: '
                             f'{sorted(_COLORMAPS)}') from None

    def lookup(x: float) -> np.ndarray:
        x = float(min(max(x, 0.0), 1.0))
        return np.asarray(fn(x), dtype=np.float64)[:3]

    return lookup


# --------------------------------------------------------------------------------------------
# Visualizer
# --------------------------------------------------------------------------------------------

def _to_hwc(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(B, C, h, w) tensor (C = 1 or 3) -> (B, H, W, 3) float64 numpy in [0, 1], resized to size."""
    t = images.detach().float().cpu()
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode='bilinear', align_corners=False)
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    return t.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float64)


def _keypoints(kp: Mapping[str, torch.Tensor] | None) -> np.ndarray | None:
    """Keypoint dict of either family -> (B, K, 2) numpy array (x, y) in [-1, 1], or None."""
    if kp is None:
        return None
    for key in ('value', 'fg_kp'):
        if key in kp and kp[key] is not None:
            return kp[key].detach().float().cpu().numpy()
    return None


def _finest(maps: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """A single map, or the highest-resolution map of a list (TPSMM's multi-scale occlusion)."""
    if isinstance(maps, torch.Tensor):
        return maps
    maps = list(maps)
    return max(maps, key=lambda m: m.shape[-2] * m.shape[-1])


class Visualizer:
    """Builds the training-visualisation grid.

    Parameters (the configs' `visualizer_params`):
        kp_size: radius in pixels of the keypoint disks.
        draw_border: draw a one-pixel white frame around every cell.
        colormap: name of the colormap for keypoint / region colours (see `get_colormap`).
        max_samples: at most this many samples (rows) of the batch are shown; None = all.
    """

    def __init__(self, kp_size: int = 5, draw_border: bool = False,
                 colormap: str | Callable = 'gist_rainbow', max_samples: int | None = None):
        self.kp_size = kp_size
        self.draw_border = draw_border
        self.colormap = get_colormap(colormap)
        self.max_samples = max_samples

    # -- helpers ---------------------------------------------------------------------------

    def kp_color(self, index: int, count: int) -> np.ndarray:
        """Colour of keypoint / region `index` out of `count` (same formula for both)."""
        return self.colormap(index / max(count, 1))

    def draw_keypoints(self, image: np.ndarray, kp: np.ndarray) -> np.ndarray:
        """Draw `kp` ((K, 2) array of (x, y) in [-1, 1]) on a copy of `image` ((H, W, 3) float).

        Normalised coordinates map to pixels by (kp + 1) / 2 * (size - 1): x -> column (width),
        y -> row (height). Keypoint k gets colour colormap(k / K). Non-finite points are skipped.
        """
        image = np.array(image, dtype=np.float64, copy=True)
        h, w = image.shape[:2]
        kp = np.asarray(kp, dtype=np.float64).reshape(-1, 2)
        num_kp = kp.shape[0]
        for k, (x, y) in enumerate(kp):
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            col = (x + 1) / 2 * (w - 1)
            row = (y + 1) / 2 * (h - 1)
            rr, cc = disk((row, col), self.kp_size, shape=(h, w))
            image[rr, cc] = self.kp_color(k, num_kp)
        return image

    def _with_kp(self, images: np.ndarray, kp: np.ndarray | None) -> np.ndarray:
        if kp is None:
            return images
        return np.stack([self.draw_keypoints(img, pts) for img, pts in zip(images, kp)])

    def _border(self, column: np.ndarray) -> np.ndarray:
        if not self.draw_border:
            return column
        column = column.copy()
        column[:, [0, -1], :, :] = 1.0
        column[:, :, [0, -1], :] = 1.0
        return column

    # -- main entry ------------------------------------------------------------------------

    def visualize(self, driving: torch.Tensor, source: torch.Tensor, out: Mapping[str, Any],
                  max_samples: int | None = None) -> np.ndarray:
        """Return the grid as np.uint8 of shape (rows * H, cols * W, 3); rows = samples.

        Columns, each present only when its data is in `out`:
          1. source with `kp_source`
          2. `transformed_frame` with `transformed_kp` (equivariance branch)
          3. driving with `kp_driving`
          4. `deformed` (source warped by the dense motion)
          5. `prediction`
          6. occlusion map resized to H x W as grey (TPSMM: the finest of the list)
          7. per region i = 0..K (0 = background): the region's warped source
             (FOMM `sparse_deformed`, TPSMM `deformed_source`) and its weight map
             (FOMM `mask`, TPSMM `contribution_maps`) tinted with the region colour
             (background: grey), then one column with all non-background weights tinted and
             summed. Region i >= 1 has the colour of keypoint i - 1 in FOMM.
        """
        n = source.shape[0]
        limit = self.max_samples if max_samples is None else max_samples
        if limit is not None:
            n = min(n, int(limit))
        size = tuple(source.shape[-2:])
        take = lambda t: t[:n]  # noqa: E731

        def kp_of(name):
            kp = _keypoints(out.get(name))
            return None if kp is None else kp[:n]

        columns: list[np.ndarray] = []
        columns.append(self._with_kp(_to_hwc(take(source), size), kp_of('kp_source')))
        if out.get('transformed_frame') is not None:
            columns.append(self._with_kp(_to_hwc(take(out['transformed_frame']), size),
                                         kp_of('transformed_kp')))
        columns.append(self._with_kp(_to_hwc(take(driving), size), kp_of('kp_driving')))
        for key in ('deformed', 'prediction'):
            if out.get(key) is not None:
                columns.append(_to_hwc(take(out[key]), size))
        occlusion = out.get('occlusion_map')
        if occlusion is not None and not (isinstance(occlusion, (list, tuple)) and not occlusion):
            columns.append(_to_hwc(take(_finest(occlusion)), size))

        if out.get('sparse_deformed') is not None and out.get('mask') is not None:
            pieces, weights = out['sparse_deformed'], out['mask']
        elif out.get('deformed_source') is not None and out.get('contribution_maps') is not None:
            pieces, weights = out['deformed_source'], out['contribution_maps']
        else:
            pieces = weights = None
        if pieces is not None:
            pieces, weights = take(pieces), take(weights)
            num = weights.shape[1]
            combined = np.zeros((pieces.shape[0],) + size + (3,))
            for i in range(num):
                columns.append(_to_hwc(pieces[:, i], size))
                weight = _to_hwc(weights[:, i:i + 1], size)
                if i == 0:
                    columns.append(weight)  # background: grey
                else:
                    tinted = weight * self.kp_color(i - 1, num - 1).reshape(1, 1, 1, 3)
                    columns.append(tinted)
                    combined += tinted
            columns.append(np.clip(combined, 0, 1))

        grid = np.concatenate([np.concatenate(list(self._border(c)), axis=0) for c in columns],
                              axis=1)
        return np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Checkpoint helpers
# --------------------------------------------------------------------------------------------

def unwrap_module(obj: Any) -> Any:
    """Strip DataParallel / DistributedDataParallel / torch.compile wrappers from a module."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(obj, wrappers):
            obj = obj.module
        elif isinstance(obj, torch.nn.Module) and isinstance(getattr(obj, '_orig_mod', None),
                                                             torch.nn.Module):
            obj = obj._orig_mod
        else:
            return obj


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    """Drop `prefix` from every key if all keys carry it (state dicts saved from a wrapper).

    Keeps the state dict's `_metadata` (per-submodule versions used by load_state_dict).
    """
    if not state or not all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return state
    stripped = OrderedDict((k[len(prefix):], v) for k, v in state.items())
    metadata = getattr(state, '_metadata', None)
    if metadata is not None:
        stripped._metadata = OrderedDict(
            (k[len(prefix):] if k.startswith(prefix) else ('' if k + '.' == prefix else k), v)
            for k, v in metadata.items())
    return stripped


def _checkpoint_state(checkpoint: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, obj in checkpoint.items():
        if name == 'epoch':
            continue
        obj = unwrap_module(obj)
        state[name] = obj.state_dict() if callable(getattr(obj, 'state_dict', None)) else obj
    state['epoch'] = int(epoch)
    return state


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean().item())
    return float(np.mean(value))


# --------------------------------------------------------------------------------------------
# Logger
# --------------------------------------------------------------------------------------------

class Logger:
    """Per-epoch text log, visualisations, TensorBoard and checkpoints under `log_dir`.

    Files:
        log_dir/log.txt                           one line per epoch (appended, flushed)
        log_dir/train-vis/<epoch>-rec.png         visualisation of the epoch's last batch
        log_dir/last.pth.tar                      rolling checkpoint, rewritten every epoch
        log_dir/<epoch>-checkpoint.pth.tar        when (epoch + 1) % checkpoint_freq == 0, and the last
        log_dir/tensorboard/events.out.tfevents.* TensorBoard (if `tensorboard`)
    `<epoch>` is `str(epoch).zfill(zfill_num)`. A numbered checkpoint of the epoch `last.pth.tar`
    holds is a hard link to it (one copy on disk; replacing `last.pth.tar` later leaves it intact).
    `keep_last`: None keeps every numbered checkpoint (as the references); N keeps the newest N
    of the run folder and deletes older ones; 0 writes none (`last.pth.tar` only).

    With `enabled=False` (non-zero DDP ranks) nothing is created and every method is a no-op
    (the path-returning methods still return the path they would have written).

    Use as a context manager: `__exit__` flushes and closes TensorBoard on normal exit and on
    any exception (KeyboardInterrupt included). It does not write a checkpoint on interruption:
    the state at that moment is mid-epoch; `last.pth.tar` from the last completed epoch is
    already on disk (written atomically, so an interruption during the write keeps the previous
    one intact). Resume with `Logger.load_checkpoint(...) + 1` as the start epoch.
    """

    def __init__(self, log_dir: str, checkpoint_freq: int | None = 1,
                 visualizer_params: Mapping[str, Any] | None = None, zfill_num: int = 8,
                 log_file_name: str = 'log.txt', tensorboard: bool = True, enabled: bool = True,
                 keep_last: int | None = None):
        self.log_dir = log_dir
        self.checkpoint_freq = checkpoint_freq
        self.keep_last = keep_last
        self.zfill_num = zfill_num
        self.enabled = enabled
        self.log_path = os.path.join(log_dir, log_file_name)
        self.vis_dir = os.path.join(log_dir, 'train-vis')
        self.last_checkpoint_path = os.path.join(log_dir, 'last.pth.tar')
        self.visualizer = Visualizer(**(visualizer_params or {}))
        self._losses: dict[str, list[float]] = {}  # name -> [sum, count], insertion-ordered
        self._writer = None
        self.last_epoch: int | None = None
        if not enabled:
            return
        os.makedirs(self.vis_dir, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - tensorboard is in requirements
                warnings.warn(f'TensorBoard disabled: {e}')
            else:
                self._writer = SummaryWriter(log_dir=os.path.join(log_dir, 'tensorboard'))

    def keep_config(self, path: str) -> None:
        """Copy the run's config file into the run folder (as the references do), so a checkpoint
        always travels with the config it was trained from. An existing copy (a resumed run) is kept."""
        target = os.path.join(self.log_dir, os.path.basename(path))
        if not self.enabled or not os.path.isfile(path) or os.path.exists(target):
            return
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)

    # -- naming ----------------------------------------------------------------------------

    def _epoch_str(self, epoch: int) -> str:
        return str(epoch).zfill(self.zfill_num)

    def checkpoint_path(self, epoch: int) -> str:
        return os.path.join(self.log_dir, f'{self._epoch_str(epoch)}-checkpoint.pth.tar')

    def visualization_path(self, epoch: int) -> str:
        return os.path.join(self.vis_dir, f'{self._epoch_str(epoch)}-rec.png')

    # -- per iteration / per epoch ---------------------------------------------------------

    def log_iter(self, losses: Mapping[str, Any], step: int) -> None:
        """Accumulate losses (floats or tensors; tensors are averaged) for the epoch mean and
        write TensorBoard scalars `loss/<name>` and `loss/total` (their sum) at `step`."""
        if not self.enabled:
            return
        total = 0.0
        for name, value in losses.items():
            v = _to_float(value)
            acc = self._losses.setdefault(name, [0.0, 0])
            acc[0] += v
            acc[1] += 1
            total += v
            if self._writer is not None:
                self._writer.add_scalar(f'loss/{name}', v, step)
        if self._writer is not None and losses:
            self._writer.add_scalar('loss/total', total, step)

    def log_epoch(self, epoch: int, checkpoint: Mapping[str, Any] | None = None,
                  inp: Mapping[str, Any] | None = None, out: Mapping[str, Any] | None = None,
                  extra_scalars: Mapping[str, Any] | None = None) -> dict[str, float]:
        """End-of-epoch logging; returns the epoch's mean losses.

        Order: log.txt line (then the accumulator is reset), TensorBoard epoch means
        (`epoch_loss/<name>`) and `extra_scalars` (under their own names), both at step
        `epoch`; checkpoints (`last.pth.tar` always, the numbered one when
        (epoch + 1) % checkpoint_freq == 0); then the visualisation of (`inp`, `out`).
        Checkpoints come before the visualisation so a visualisation failure cannot cost one;
        such a failure is reported with a warning and does not stop training.
        """
        if not self.enabled:
            return {}
        means = {name: s / max(c, 1) for name, (s, c) in self._losses.items()}
        self._losses = {}
        line = self._epoch_str(epoch) + ') ' + '; '.join(f'{n} - {m:.5f}' for n, m in means.items())
        with open(self.log_path, 'a') as f:
            f.write(line + '\n')
            f.flush()
        if self._writer is not None:
            for name, m in means.items():
                self._writer.add_scalar(f'epoch_loss/{name}', m, epoch)
            for name, value in (extra_scalars or {}).items():
                self._writer.add_scalar(name, _to_float(value), epoch)

        if checkpoint is not None:
            self.save_checkpoint(checkpoint, epoch, path=self.last_checkpoint_path)
            if self.checkpoint_freq and self.checkpoint_freq > 0 \
                    and (epoch + 1) % self.checkpoint_freq == 0:
                self._number_last(epoch)

        if inp is not None and out is not None:
            try:
                image = self.visualizer.visualize(inp['driving'], inp['source'], out)
            except Exception:  # noqa: BLE001 - visualisation must not kill a training run
                warnings.warn('visualisation failed:\n' + traceback.format_exc())
            else:
                from media import write_image
                with atomic_path(self.visualization_path(epoch)) as tmp:
                    write_image(tmp, image)
                if self._writer is not None:
                    self._writer.add_image('reconstruction', image, epoch, dataformats='HWC')
        if self._writer is not None:
            self._writer.flush()
        self.last_epoch = epoch
        return means

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Mapping[str, Any], epoch: int,
                        path: str | None = None) -> str:
        """Atomically save {name: state_dict() or value, ..., 'epoch': epoch}; return the path.

        Default path: `log_dir/<epoch>-checkpoint.pth.tar`. Modules are unwrapped first.
        """
        path = self.checkpoint_path(epoch) if path is None else path
        if not self.enabled:
            return path
        state = _checkpoint_state(checkpoint, epoch)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return path

    def save_final(self, checkpoint: Mapping[str, Any], epoch: int) -> str:
        """Write the numbered checkpoint of the last epoch unless it already exists (or keep_last is 0)."""
        path = self.checkpoint_path(epoch)
        if not self.enabled or os.path.exists(path) or self.keep_last == 0:
            return path
        if self.last_epoch == epoch and os.path.isfile(self.last_checkpoint_path):
            return self._number_last(epoch)
        self.save_checkpoint(checkpoint, epoch, path=path)
        self._prune()
        return path

    def _number_last(self, epoch: int) -> str:
        """`last.pth.tar` (just written for `epoch`) also as the numbered checkpoint of `epoch`: a hard
        link where the file system has them, else a copy; then prune to `keep_last`."""
        path = self.checkpoint_path(epoch)
        if self.keep_last == 0:
            return path
        with atomic_path(path) as tmp:
            os.remove(tmp)
            try:
                os.link(self.last_checkpoint_path, tmp)
            except OSError:        # no hard links here (some network and FAT file systems)
                shutil.copyfile(self.last_checkpoint_path, tmp)
        self._prune()
        return path

    def numbered_checkpoints(self) -> list[str]:
        """The run folder's `<epoch>-checkpoint.pth.tar` files, oldest epoch first."""
        found = []
        for name in os.listdir(self.log_dir):
            head, sep, tail = name.partition('-')
            if sep and head.isdigit() and tail == 'checkpoint.pth.tar':
                found.append((int(head), os.path.join(self.log_dir, name)))
        return [path for _, path in sorted(found)]

    def _prune(self) -> None:
        """Delete all but the newest `keep_last` numbered checkpoints."""
        if not self.keep_last:
            return
        for path in self.numbered_checkpoints()[:-self.keep_last]:
            os.remove(path)

    @staticmethod
    def load_checkpoint(path: str, objects: Mapping[str, Any], strict: bool = True) -> int:
        """Load the state of each object (modules, optimizers, schedulers) from `path`.

        Objects whose name is missing from the checkpoint (or that are None) are skipped, with
        a warning for the missing names. Modules are unwrapped and a 'module.' / '_orig_mod.'
        prefix on every saved key is dropped. `strict` applies to modules. Returns the saved
        epoch (-1 when the checkpoint has none); resume training at the returned epoch + 1.
        """
        state = torch.load(path, map_location='cpu', weights_only=True)
        missing = []
        for name, obj in objects.items():
            if obj is None:
                continue
            if name not in state:
                missing.append(name)
                continue
            target = unwrap_module(obj)
            saved = state[name]
            if isinstance(target, torch.nn.Module):
                own = list(target.state_dict())
                for prefix in ('module.', '_orig_mod.'):
                    if not (own and all(k.startswith(prefix) for k in own)):
                        saved = _strip_prefix(saved, prefix)
                target.load_state_dict(saved, strict=strict)
            else:
                target.load_state_dict(saved)
        if missing:
            warnings.warn(f'{path}: no saved state for {missing}; left as they are')
        return int(state.get('epoch', -1))

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> 'Logger':
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False
