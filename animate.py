"""Animation: drive a source image with a video's motion, for both families.

    from animate import Animator
    from media import VideoReader, load_image
    animator = Animator.from_files('config/fomm/vox-256.yaml', 'vox-cpk.pth.tar', device='cuda')
    source = load_image('photo.jpg')                # float32 (H, W, 3) in [0, 1]; uint8 works too
    with VideoReader('driving.mp4') as reader:      # iter_batches: float32 (B, H, W, 3) batches
        for frames in animator.animate(source, reader.iter_batches(16), mode='relative', adapt_scale=True):
            ...   # float32 (B, 256, 256, 3) in [0, 1], at the config's frame size

Inputs of any size are resized to the animation size, as the command line does.

Every result frame depends only on the source, that driving frame and the reference ("initial")
driving frame, so frames are animated in batches as they stream in. Source keypoints, the
source's encoder features and the movement scale are computed once per video.
Modes: FOMM 'standard' (absolute keypoints) and 'relative' (`--relative`, optionally
`adapt_scale`); TPSMM 'standard', 'relative' (always with adaptive scale, as its reference) and
'avd' (keypoints re-targeted by the AVD network).

`smooth` (off by default, as the references): the driving keypoints (and FOMM's jacobians) are
smoothed over time with a causal One-Euro filter (modules/temporal_filter.py) before they are
moved onto the source, frame by frame in frame order, so the batch size does not change the result.
"""
from __future__ import annotations

import contextlib
import copy
import os
from typing import Iterable, Iterator

import numpy as np
import torch

from modules.motion_transfer import movement_scale, normalize_kp  # noqa: F401  (normalize_kp: reference API)

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# int8: quantized copies of the per-frame networks (PyTorch's int8 convolutions), the rest fp32 (deploy/int8.py).
ALL_PRECISIONS = tuple(PRECISIONS) + ('int8',)
FLOAT32_NETWORKS = ('kp_detector', 'bg_predictor', 'avd_network')
MODES = {'fomm': ('standard', 'relative'), 'tps': ('standard', 'relative', 'avd')}


def frame_shape_of(config: dict) -> tuple[int, int]:
    """Animation size: the config's dataset frame_shape, else 256x256 (TPSMM configs say null)."""
    shape = (config.get('dataset_params') or {}).get('frame_shape')
    return (int(shape[0]), int(shape[1])) if shape else (256, 256)


def to_tensor(frames: np.ndarray, device) -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) float in [0, 1] -> (B, 3, H, W) float32 on device."""
    t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    if t.dim() == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).to(device)


def expand_batch(x, batch: int):
    """Repeat a batch-1 tensor (or dict/list of them) along the batch dimension without copying."""
    if isinstance(x, dict):
        return {k: expand_batch(v, batch) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [expand_batch(v, batch) for v in x]
    return x.expand(batch, *x.shape[1:])


def to_channels_last(maps):
    """A (B, C, H, W) map, or a list of them, in channels-last memory order."""
    if isinstance(maps, (list, tuple)):
        return [to_channels_last(m) for m in maps]
    return maps.contiguous(memory_format=torch.channels_last)


def store_convolutions_channels_last(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> None:
    """Keep convolution weights channels-last (and in `dtype`), in place, for CPU inference.

    oneDNN's fast CPU convolutions work on channels-last data: given the usual NCHW layout, every
    call reorders its input and output. With channels-last weights the activations stay
    channels-last from the first convolution on (FOMM vox-256 in fp32 on a 2-core AVX-512 Xeon:
    27.0 s -> 22.7 s end to end; TPSMM, whose time is convolution arithmetic, unchanged; see
    benchmarks/README.md). For bf16, storing the
    weights once also saves autocast re-casting every fp32 weight on every call. Everything else
    (norms, softmax, grid_sample, the small linear algebra) stays fp32 under autocast's rules.
    """
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.to(dtype=dtype, memory_format=torch.channels_last)


def meta_models(config: dict) -> dict:
    """The config's animation networks on the meta device (shapes only), in eval mode. No
    discriminator: its spectral norm's random start would import torch._dynamo (1.8 s) on meta."""
    from modules import build_models
    with torch.device('meta'):
        models = build_models(config, without=('discriminator',))
    return {k: m.eval() for k, m in models.items()}


def size_problem(config: dict, size: tuple[int, int], models: dict | None = None) -> str | None:
    """None when the config's networks animate (H, W) frames at that size, else what goes wrong.

    The networks run once on the meta device (shapes only: no memory, no arithmetic, ~0.2 s):
    every hourglass needs its input divisible by 2 ** num_blocks at its own scale, and a size that
    does not divide either fails to line up its skip connections or comes out smaller."""
    from modules.model import family_of
    models = models or meta_models(config)
    x = torch.empty(1, 3, *size, device='meta')
    try:
        with torch.no_grad():
            kp = models['kp_detector'](x)
            if family_of(models) == 'fomm':
                out = models['generator'](x, kp_driving=kp, kp_source=kp)
            else:
                motion = models['dense_motion_network'](source_image=x, kp_driving=kp, kp_source=kp, bg_param=None,
                                                        dropout_flag=False)
                out = models['inpainting_network'](x, motion)
    except (RuntimeError, ValueError):     # concatenated skips of other sizes; maps shrunk to 1x1
        return 'its feature maps do not line up at that size'
    got = tuple(out['prediction'].shape[-2:])
    return None if got == tuple(size) else f'the result would come out {got[0]}x{got[1]}'


def size_multiple(config: dict) -> int:
    """The smallest power of two m such that frames whose sides are multiples of m work (tried: m x m, 3m x 2m)."""
    models, m = meta_models(config), 8
    while m < 1024 and any(size_problem(config, (m * k, m * j), models) for k, j in ((1, 1), (3, 2))):
        m *= 2
    return m


def compile_per_frame_networks(models: dict, device: torch.device) -> None:
    """torch.compile, in place, the networks that run on every driving frame (the keypoint
    detector, FOMM's generator, TPSMM's dense motion and inpainting networks); `encode` and the
    other once-per-source calls stay eager. Inductor caches its kernels on disk, so a second
    process compiles faster. On the CPU, weights are frozen into the graph (oneDNN prepacking)."""
    if device.type == 'cpu':
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
    for name in ('kp_detector', 'generator', 'dense_motion_network', 'inpainting_network'):
        if name in models:
            models[name].compile()


def required_networks(models: dict, avd: bool = False) -> tuple[str, ...]:
    """The networks a checkpoint must hold to animate (TPSMM's AVD network only for its avd mode)."""
    if 'generator' in models:
        return ('kp_detector', 'generator')
    return ('kp_detector', 'dense_motion_network', 'inpainting_network') + (('avd_network',) if avd else ())


class Animator:
    """Networks of one family in eval mode, ready to animate; see the module docstring."""

    def __init__(self, config: dict, models: dict, device: str | torch.device = 'cpu', precision: str = 'fp32',
                 compile: bool = False, calibration_frames: int | None = None):
        """`precision` 'int8' (CPU only) quantizes the convolutions of the per-frame networks,
        calibrated on the source and the first `calibration_frames` driving frames of each video
        (default deploy.int8.CALIBRATION_FRAMES) unless `calibrate` was called; see deploy/int8.py.
        `compile`: torch.compile the per-frame networks (fp32/bf16/fp16)."""
        from modules.model import family_of
        self.config = config
        self.family = family_of(models)
        self.device = torch.device(device)
        if precision not in ALL_PRECISIONS:
            raise ValueError(f'precision must be one of {list(ALL_PRECISIONS)}, got {precision!r}')
        if precision == 'fp16' and self.device.type != 'cuda':
            raise ValueError('fp16 needs a CUDA device; use bf16 on the CPU')
        if precision == 'int8' and (self.device.type != 'cpu' or compile):
            raise ValueError('int8 runs on the CPU (PyTorch quantized kernels), without --compile')
        self.precision = precision
        self.models = {k: m.to(self.device).eval() for k, m in models.items() if k != 'discriminator'}
        if self.device.type == 'cpu' and precision in ('fp32', 'bf16', 'int8'):
            for name, model in self.models.items():
                # The keypoint detector, background and AVD networks run in float32 under autocast
                # (modules/precision.py), so their weights stay float32.
                dtype = torch.float32 if name in FLOAT32_NETWORKS else PRECISIONS.get(precision, torch.float32)
                store_convolutions_channels_last(model, dtype)
        self.frame_size = frame_shape_of(config)
        self.int8 = None
        if precision == 'int8':
            from deploy.int8 import CALIBRATION_FRAMES, Int8Networks
            self.int8 = Int8Networks(self.models, self.family)
            self.calibration_frames = calibration_frames or CALIBRATION_FRAMES
            self.int8_fixed = False          # True once `calibrate` set one calibration for all videos
        if compile:
            compile_per_frame_networks(self.models, self.device)

    @classmethod
    def from_files(cls, config_path: str, checkpoint_path: str, device='cpu', precision='fp32',
                   need_avd: bool = False, **options) -> 'Animator':
        """Build from a config file and a checkpoint (ours or official). Raises ConfigError or
        CheckpointError with a one-line explanation naming the file."""
        from loading import load_config
        from loading.checkpoint import networks_from_checkpoint
        config = load_config(config_path)
        models, ckpt = networks_from_checkpoint(config, checkpoint_path,
                                                lambda models: required_networks(models, avd=need_avd))
        animator = cls(config, models, device, precision, **options)
        # The networks the checkpoint held: TPSMM's AVD network is in some checkpoints only.
        animator.loaded_networks = frozenset(k for k in animator.models if k in ckpt)
        return animator

    def autocast(self):
        if self.precision in ('fp32', 'int8'):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    @torch.no_grad()
    def keypoints(self, frames: torch.Tensor) -> dict:
        with self.autocast():
            kp = self.models['kp_detector'](frames)
        return {k: v.float() for k, v in kp.items()}

    @torch.no_grad()
    def prepare(self, source: np.ndarray, initial: np.ndarray | None, mode: str, adapt_scale: bool,
                relative_jacobian: bool = True, smooth=None, fps: float = 25.0) -> dict:
        """Everything that depends only on the source and the reference driving frame.

        `relative_jacobian` (FOMM relative mode): J = J_D J_D0^-1 J_S, as FOMM's demo always does
        in relative mode; False keeps the driving jacobians (`normalization_params.
        use_relative_jacobian: false` in animate mode).
        `smooth`: None/False, True or modules.temporal_filter.OneEuroParams (or a dict of them):
        the state then holds the video's keypoint filter, at `fps` frames per second."""
        from modules.temporal_filter import KeypointSmoother, smoothing_params
        if mode not in MODES[self.family]:
            raise ValueError(f'mode {mode!r} is not available for {self.family}; choose from {MODES[self.family]}')
        params = smoothing_params(smooth)
        src = to_tensor(source, self.device)
        state = {'source': src, 'kp_source': self.keypoints(src), 'mode': mode,
                 'relative_jacobian': relative_jacobian,
                 'smoother': KeypointSmoother(params, fps) if params is not None else None,
                 # what an int8 calibration on this state depends on besides its driving frames
                 'initial': to_tensor(initial, self.device) if mode == 'relative' and initial is not None else None,
                 'options': {'mode': mode, 'adapt_scale': bool(adapt_scale), 'relative_jacobian': relative_jacobian}}
        with self.autocast():
            if self.family == 'fomm':
                state['features'] = self.models['generator'].encode(src)
            else:
                state['features'] = self.models['inpainting_network'].encode(src)
        if self.device.type == 'cpu':
            # channels-last like every map the convolutions give on the CPU (their weights are,
            # see store_convolutions_channels_last; TPSMM's InstanceNorm gives NCHW): the warped
            # maps keep the layout (modules.geometry.warp), so the decoder's adds and concatenations
            # pair maps of one layout instead of taking a slow strided path.
            state['features'] = to_channels_last(state['features'])
        if mode == 'relative':
            if initial is None:
                raise ValueError('relative mode needs the reference driving frame')
            state['kp_initial'] = self.keypoints(state['initial'])
            key = 'value' if self.family == 'fomm' else 'fg_kp'
            use_scale = adapt_scale or self.family == 'tps'   # TPSMM's relative mode always adapts
            state['scale'] = movement_scale(state['kp_source'][key], state['kp_initial'][key]) if use_scale else None
        return state

    @torch.no_grad()
    def driving_keypoints(self, state: dict, driving: torch.Tensor, smooth: bool = False,
                          times=None) -> tuple[dict, dict, dict]:
        """(kp_source expanded to the batch, kp_driving, kp_norm: the driving keypoints moved onto
        the source as `state['mode']` says) for (B, 3, H, W) driving frames.

        `smooth`: pass the driving keypoints through the state's filter, if it has one. Only the
        video's frames, in order, go through it (not int8's calibration frames): the filter
        keeps the previous frames' state. `times`: the B frames' times in seconds (default:
        frame index / fps)."""
        b = driving.shape[0]
        kp_driving = self.keypoints(driving)
        if smooth and state.get('smoother') is not None:
            kp_driving = state['smoother'](kp_driving, times)
        kp_source = expand_batch(state['kp_source'], b)
        if state['mode'] == 'relative':
            scale = state['scale'].expand(b) if state['scale'] is not None else False
            kp_norm = normalize_kp(kp_source, kp_driving, expand_batch(state['kp_initial'], b),
                                   adapt_movement_scale=scale, use_relative_movement=True,
                                   use_relative_jacobian=state['relative_jacobian'])
        elif state['mode'] == 'avd':
            kp_norm = self.models['avd_network'](kp_source, kp_driving)
        else:
            kp_norm = kp_driving
        return kp_source, kp_driving, kp_norm

    @torch.no_grad()
    def animate_batch(self, state: dict, driving: torch.Tensor, full: bool = False, background: bool = False,
                      times=None):
        """(B, 3, H, W) driving frames -> (B, 3, H, W) predictions, or with `full` the networks'
        whole output dict plus 'kp_source' and 'kp_driving' (for visualisation; smoothed when
        the state smooths). Successive calls on one state must come in frame order when it smooths;
        `times`: the frames' times in seconds (default: frame index / fps).

        `background`: TPSMM models with a background predictor add the source-to-driving
        background affine to the motion, as TPSMM's reconstruction evaluation does (its demo,
        which animates another identity, does not)."""
        b = driving.shape[0]
        if self.int8 is not None and not (self.int8_fixed or state.get('calibrated')):
            self.calibrate_state(state, driving, background)
        kp_source, kp_driving, kp_norm = self.driving_keypoints(state, driving, smooth=True, times=times)
        networks = self.models if self.int8 is None else {**self.models, **self.int8.networks}
        out = self.generate(networks, state, driving, kp_source, kp_norm, background)
        if full:
            out.update(kp_source=kp_source, kp_driving=kp_driving, kp_norm=kp_norm)
            return out
        return out['prediction'].float()

    def generate(self, networks: dict, state: dict, driving: torch.Tensor, kp_source: dict, kp_norm: dict,
                 background: bool = False) -> dict:
        """The per-frame networks' output dict for a (B, 3, H, W) driving batch whose keypoints
        are moved onto the source (`kp_norm`); `networks` are `self.models` or int8 copies."""
        b = driving.shape[0]
        source = expand_batch(state['source'], b)
        features = expand_batch(state['features'], b)
        with self.autocast():
            bg_param = None
            if self.family == 'tps' and background and 'bg_predictor' in networks:
                bg_param = networks['bg_predictor'](source, driving)
            if self.family == 'fomm':
                return networks['generator'](source, kp_driving=kp_norm, kp_source=kp_source, source_features=features)
            motion = networks['dense_motion_network'](source_image=source, kp_driving=kp_norm, kp_source=kp_source,
                                                      bg_param=bg_param, dropout_flag=False)
            return networks['inpainting_network'](source, motion, encoder_maps=features)

    def animate(self, source: np.ndarray, driving_batches: Iterable[np.ndarray], mode: str = 'relative',
                adapt_scale: bool = False, initial: np.ndarray | None = None,
                relative_jacobian: bool = True, size: tuple[int, int] | None = None, smooth=None,
                fps: float = 25.0) -> Iterator[np.ndarray]:
        """Yield float32 (B, h, w, 3) results in [0, 1], one per driving batch.

        `source` (H, W, 3) and each driving batch (B, H, W, 3) (or one (H, W, 3) frame) are uint8,
        uint16 or float in [0, 1], RGB, any size: they are resized to `size` (default: the config's
        frame size, `self.frame_size`) as the command line does; anything else is a ValueError
        saying what was given. `initial` is the reference driving frame for relative motion
        (default: the first driving frame, as the references). `smooth` (default off): True, or
        modules.temporal_filter.OneEuroParams, smooths the driving keypoints over time (causal
        One-Euro filter, no look-ahead); `fps` is the driving video's frame rate, which the
        filter's cutoffs (Hz) need."""
        size = tuple(size or self.frame_size)
        source = animation_frames(source, size, 'source')[0]
        state = None
        batches = (animation_frames(batch, size, 'driving frames') for batch in driving_batches)
        for batch in batches:
            if state is None:
                ref = batch[0] if initial is None else animation_frames(initial, size, 'initial frame')[0]
                state = self.prepare(source, ref, mode, adapt_scale, relative_jacobian, smooth=smooth, fps=fps)
                if self.int8 is not None and not self.int8_fixed:
                    # Calibrate on the first frames: read ahead, then animate what was read.
                    ahead = [batch]
                    while sum(len(b) for b in ahead) < self.calibration_frames:
                        more = next(batches, None)
                        if more is None:
                            break
                        ahead.append(more)
                    frames = np.concatenate(ahead)[:self.calibration_frames]
                    self.calibrate_state(state, to_tensor(frames, self.device))
                    for early in ahead[:-1]:
                        yield self._animate_frames(state, early)
                    batch = ahead[-1]
            yield self._animate_frames(state, batch)

    def _animate_frames(self, state: dict, batch: np.ndarray) -> np.ndarray:
        pred = self.animate_batch(state, to_tensor(batch, self.device))
        return pred.permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy()

    def for_one_video(self) -> 'Animator':
        """An animator for one video at a time among several at once (app.py's sessions): it shares
        this one's networks, and with int8 calibrated per video it has its own quantized copies, so
        one video's calibration never replaces another's mid-stream. Anything else is `self`."""
        if self.int8 is None or self.int8_fixed:
            return self
        from deploy.int8 import Int8Networks
        twin = copy.copy(self)
        twin.int8 = Int8Networks(self.models, self.family, self.int8.keep_fp32)
        return twin

    @torch.no_grad()
    def calibrate_state(self, state: dict, driving: torch.Tensor, background: bool = False) -> None:
        """int8: quantize the per-frame networks with activation ranges seen on `state`'s source
        driven by the (N, 3, H, W) `driving` frames (ranges cached on disk by model and inputs)."""
        from deploy.int8 import calibration_key
        options = {'family': self.family, 'background': background, 'keep_fp32': self.int8.keep_fp32,
                   **state['options']}
        used = ('kp_detector', *self.int8.names, *(('bg_predictor',) if background else ()),
                *(('avd_network',) if state['mode'] == 'avd' else ()))
        key = calibration_key({k: self.models[k] for k in used if k in self.models},
                              (state['source'], state['initial'], driving), options)

        def run(observed: dict) -> None:
            for frame in driving.split(1):
                kp_source, _, kp_norm = self.driving_keypoints(state, frame)
                self.generate({**self.models, **observed}, state, frame, kp_source, kp_norm, background)

        self.int8.build(key, run)
        state['calibrated'] = True

    def calibrate(self, source: np.ndarray, frames: np.ndarray, mode: str = 'relative', adapt_scale: bool = False,
                  relative_jacobian: bool = True) -> None:
        """int8: calibrate once on a calibration set ((H, W, 3) source, (N, H, W, 3) driving
        frames) and keep that quantization for every later video, instead of calibrating per video.
        Inputs are taken as `animate` takes them (any size, uint8 or float in [0, 1])."""
        source = animation_frames(source, self.frame_size, 'source')[0]
        frames = animation_frames(frames, self.frame_size, 'calibration frames')
        state = self.prepare(source, frames[0], mode, adapt_scale, relative_jacobian)
        self.calibrate_state(state, to_tensor(frames, self.device))
        self.int8_fixed = True


def animation_frames(frames, size: tuple[int, int], what: str = 'frames') -> np.ndarray:
    """What the API is handed -> float32 (B, h, w, 3) in [0, 1] at `size`, or a ValueError that
    says what was given. uint8 is divided by 255 (fed as is, it washes the result out), uint16 by
    65535; grey is repeated to RGB, alpha dropped; other sizes are resized as the CLI resizes
    (skimage-equivalent anti-aliasing)."""
    from media import resize_frames
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        raise ValueError(f'{what}: expected an (H, W, 3) image or a (B, H, W, 3) batch, channels last, '
                         f'got shape {tuple(np.shape(frames))}')
    if arr.dtype.kind == 'f':
        lo, hi = float(arr.min()), float(arr.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f'{what}: float frames must lie in [0, 1], got values from {lo:.4g} to {hi:.4g} '
                             '(for 0-255 values pass uint8, or divide by 255)')
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'{what}: unsupported dtype {arr.dtype}; pass uint8, uint16 or float in [0, 1]')
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    elif arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if tuple(arr.shape[1:3]) != tuple(size):
        return resize_frames(arr, size)
    if arr.dtype.kind != 'f':
        return arr.astype(np.float32) / np.iinfo(arr.dtype).max
    return np.clip(arr, 0, 1).astype(np.float32, copy=False)


def video_stem(name: str) -> str:
    """'face_3.mp4' -> 'face_3', for output names that get their own extension (a video file's
    outputs were named 'face_3.mp4.mp4'); frame folders keep their names."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in ('.mp4', '.gif', '.mov', '.avi', '.mkv', '.webm', '.png', '.jpg', '.jpeg') else name


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Rounded, as scikit-image's img_as_ubyte, which both references' demo.py write with."""
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def to_uint8_truncated(frames: np.ndarray) -> np.ndarray:
    """Truncated, as both references' reconstruction and animate modes write their PNG strips
    (`(255 * x).astype(np.uint8)`): the strips pose-evaluation scores."""
    return (np.clip(frames, 0, 1) * 255).astype(np.uint8)


def animate_photo(animator: Animator, photo: np.ndarray, driving: np.ndarray, mode: str = 'relative',
                  adapt_scale: bool = False, *, crop: bool = True, face_backend: str = 'auto',
                  result_size: tuple[int, int] | None = None, increase: float | None = None,
                  batch_size: int = 8, fps: float = 25.0, smooth=None) -> Iterator[np.ndarray]:
    """`demo.py --crop` as a function: animate the largest face of `photo` (uint8 or float
    (H, W, 3), any size) with the face in `driving` (uint8 or float (T, h, w, 3), any size), paste
    each animated crop back into the photo and yield uint8 (B, H, W, 3) batches at the photo's
    size (or `result_size`). With crop=False the whole photo and frames are resized to the
    model's size and the results are yielded as uint8 at that size. Raises faces.NoFaceError
    when the photo or the video shows no face. `smooth`: as `Animator.animate`, at `fps`, the
    driving video's frame rate."""
    from faces import as_uint8, load_backend
    from faces.compose import DEMO_INCREASE, crop_photo, track_driving
    from faces.boxes import crop_resized
    size = animator.frame_size
    if not crop:
        batches = (driving[i:i + batch_size] for i in range(0, len(driving), batch_size))
        results = animator.animate(photo, batches, mode, adapt_scale, smooth=smooth, fps=fps)
        yield from (to_uint8(out) for out in results)
        return
    increase = DEMO_INCREASE if increase is None else increase
    backend = load_backend(face_backend, str(animator.device))
    face = crop_photo(photo, backend, increase)
    track = track_driving((as_uint8(f) for f in driving), backend, fps, increase)
    batches = (np.stack([crop_resized(f, track.boxes[i + k], size) for k, f in enumerate(driving[i:i + batch_size])])
               for i in range(0, len(driving), batch_size))
    compose = face.composer(result_size)
    for out in animator.animate(face.source(size), batches, mode, adapt_scale, smooth=smooth, fps=fps):
        yield compose(out)


def refuse_output_among_inputs(out_dir: str, data_dir: str | None) -> None:
    """run.py's reconstruction and animate modes: an output folder that is, holds or lies inside
    the data set's folder could write over its videos (a strip <name>.png, a <name>.mp4): refused."""
    from media.files import overwritten_input
    if data_dir and overwritten_input(out_dir, [data_dir]):
        raise ValueError(f'the output folder {out_dir} and the data set folder {data_dir} (dataset_params.root_dir) '
                         'overlap: its videos could be written over; use another --log_dir')


def animate_dataset(config: dict, models: dict, log_dir: str, device, checkpoint: str,
                    find_best_frame: bool = False, face_backend: str = 'auto') -> None:
    """run.py --mode animate: animate PairedDataset pairs (pairs_list csv or random pairs) with
    the config's animate_params, writing <log_dir>/animation/<driving>-<source>.<format> (the
    predicted video) and animation/png/<driving>-<source>.png (its frames side by side), both
    truncated to 8 bits as the reference writes them.
    `find_best_frame` (relative motion): the reference frame of each pair is the driving frame
    whose face landmarks best match the source's (face backend `face_backend`)."""
    from frames_dataset import PairedDataset, build_dataset
    from loading.checkpoint import load_models
    from media import VideoWriter, write_image
    from media.files import atomic_path
    from tqdm import tqdm
    if not checkpoint:
        raise ValueError('--mode animate needs --checkpoint')
    out_dir = os.path.join(log_dir, 'animation')
    refuse_output_among_inputs(out_dir, (config.get('dataset_params') or {}).get('root_dir'))
    load_models(checkpoint, {k: m for k, m in models.items() if k != 'discriminator'}, config,
                required_networks(models))
    params = config.get('animate_params') or {     # TPSMM configs have none: relative, as its demo
        'num_pairs': 50, 'format': '.mp4', 'normalization_params': {'use_relative_movement': True}}
    # As the reference's normalize_kp(**normalization_params): a key left out means False.
    norm = {key: bool((params.get('normalization_params') or {}).get(key, False))
            for key in ('use_relative_movement', 'use_relative_jacobian', 'adapt_movement_scale')}
    animator = Animator(config, models, device)
    family_mode = 'relative' if norm['use_relative_movement'] else 'standard'
    dataset = PairedDataset(build_dataset(config['dataset_params'], is_train=False), params['num_pairs'])
    os.makedirs(os.path.join(out_dir, 'png'), exist_ok=True)
    landmarks = None
    if find_best_frame and family_mode == 'relative':
        from faces import landmark_function, load_backend
        landmarks = landmark_function(load_backend(face_backend, str(device)))
    for pair in tqdm(dataset, desc='animate'):
        driving = np.transpose(pair['driving_video'], (1, 2, 3, 0))     # (T, H, W, 3)
        source = np.transpose(pair['source_video'], (1, 2, 3, 0))[0]
        initial = best_reference_frame(source, driving, landmarks, pair['source_name']) if landmarks else None
        batches = (driving[i:i + 16] for i in range(0, len(driving), 16))
        name = f"{video_stem(pair['driving_name'])}-{video_stem(pair['source_name'])}"
        strip = []
        with VideoWriter(os.path.join(out_dir, name + params.get('format', '.mp4')), fps=25) as writer:
            for frames in animator.animate(source, batches, family_mode, norm['adapt_movement_scale'],
                                           initial=initial, relative_jacobian=norm['use_relative_jacobian'],
                                           size=driving.shape[1:3]):
                frames = to_uint8_truncated(frames)         # (B, H, W, 3)
                writer.write(frames)
                strip += list(frames)
        with atomic_path(os.path.join(out_dir, 'png', name + '.png')) as tmp:
            write_image(tmp, np.concatenate(strip, axis=1))
    print(f'wrote {len(dataset)} animations ({params.get("format", ".mp4")}, {family_mode} motion) to {out_dir}')


def best_reference_frame(source: np.ndarray, driving: np.ndarray, landmarks, source_name: str) -> np.ndarray | None:
    """The driving frame whose normalised landmarks best match the source's (demo.py's
    --find_best_frame), or None (the first frame) when either side shows no face."""
    import logging
    from animation import DemoError, find_best_frame
    try:
        index, frame = find_best_frame(source, iter(driving), landmarks, source_name)
    except DemoError as err:
        logging.getLogger('animate').warning('%s; using the first driving frame', err)
        return None
    return frame
