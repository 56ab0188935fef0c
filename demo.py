"""Animate a still source image with the motion of a driving video (FOMM or TPSMM).

    python demo.py --config config/fomm/vox-256.yaml --checkpoint vox-cpk.pth.tar \\
        --source_image my.png --driving_video driving.mp4 --result_video result.mp4 \\
        --relative --adapt_scale [--audio] [--find_best_frame]

    python demo.py --config config/tps/vox-256.yaml --checkpoint vox.pth.tar \\
        --source_image my.png --driving_video driving.mp4 --result_video result.mp4 --mode relative

    python demo.py --example        # `make demo`: a generated sample animated by the bundled small model

The model family (FOMM or TPSMM) follows from the config. The driving video is streamed: frames
are decoded, resized, animated in batches and written as they come, so memory does not grow with
the video's length. The result has exactly the driving video's frame rate and frame count.

Options
-------
Inputs and output
  --config PATH           model config (YAML, official format).
  --checkpoint PATH       checkpoint of that config (official or ours). Checkpoints are loaded as
                          plain tensors only; one carrying pickled code is refused.
  --source_image PATH     the still image to animate: any image Pillow reads (PNG, JPEG, ...;
                          grayscale, RGBA, palette and 16-bit are fine; alpha is dropped). It is
                          resized to --img_shape with skimage-equivalent anti-aliasing.
  --driving_video PATH    a video ffmpeg decodes (mp4, mov, avi, mkv, webm, gif, ...) or a folder of
                          image frames.
  --result_video PATH     output (default result.mp4): `.mp4` (H.264), `.gif`, or a folder path
                          ending in '/' for lossless PNG frames. Missing folders are created; the
                          file appears only once complete (nothing is left behind on error).
  --audio                 copy the driving video's audio track into the .mp4 result (a video
                          without audio, or a folder of frames, gives a note and a silent result).

Motion
  --mode MODE             FOMM: standard | relative (default standard, as the reference without
                          --relative). TPSMM: standard | relative | avd (default relative).
  --relative              FOMM: relative motion transfer (same as --mode relative).
  --adapt_scale           FOMM relative mode: scale the motion by the ratio of the source's and the
                          reference frame's keypoint hull sizes. (TPSMM's relative mode always does.)
  --find_best_frame       use as reference ("initial") frame the driving frame whose face landmarks
                          are closest to the source's, after centring and scaling them; one extra
                          pass over the video. Needs a face in the source. Landmarks come from
                          --face_backend.
  --best_frame N          use driving frame N (0-based) as the reference frame. Equivalent to the
                          references' forward/backward animation from frame N. Both options only
                          matter in relative mode.
  --smooth                steadier motion, off by default (the references do not smooth): the
                          driving keypoints (and FOMM's jacobians) are smoothed over time with a
                          One-Euro filter at the driving video's frame rate, before they move the
                          source; causal (look-ahead 0 frames), in any mode, faces and bodies alike.
                          On the sample clip (bundled model) it takes out 65% of the keypoints'
                          frame-to-frame jitter and 57% of the result's; a steady motion is
                          followed 1-3 frames late at 25 fps (docs/smoothing.md).
  --smooth_min_cutoff HZ  the filter's cutoff for a keypoint at rest (default 1.0; lower: smoother,
                          more lag). Any --smooth_* option turns --smooth on.
  --smooth_beta B         how fast the cutoff rises with a keypoint's speed in units/s (the frame is
                          2 units wide) (default 5.0; higher: less lag on fast motion, less
                          smoothing).
  --smooth_d_cutoff HZ    the cutoff of the speed estimate (default 1.0).

Faces (docs/faces.md)
  --crop                  the source may be a whole photo of any size: its largest face is cropped
                          (a square around the face box, enlarged by --crop_increase per side, as
                          training crops are made), animated at the model's size and pasted back
                          into the photo with a feathered edge; pixels outside the pasted square
                          stay the photo's. The driving video is cropped to its face with a box
                          that follows it, smoothed; where the face is lost the box is held. The
                          result has the photo's size, or --result_size H,W (an .mp4 with an odd side
                          gets one repeated row or column: H.264 needs even sides; the last line
                          says the size written).
  --crop_increase X       share of the face box added on each side (default 0.45: VoxCeleb framing;
                          bodies: 0.1 of the person box).
  --crop_target T         auto (default: body for a Tai-Chi, TED or fashion config, else face) | face
                          | body: --crop crops the largest person of the photo (MediaPipe BlazePose,
                          offline; docs/bodies.md) and follows the driving person instead of faces.
  --face_backend B        auto (default: face-alignment when its model loads, else dlib, offline)
                          | face-alignment | dlib: faces for --crop and --find_best_frame.
  --detector D            dlib's face detector for --crop: hog (default; frames without a face are
                          looked at again at 2x and 4x size, for faces down to ~40 px) | hog-once
                          (one pass, faster) | mmod (CNN, seconds a frame on a CPU).

Compute
  --device DEV            torch device (default cuda when available, else cpu).
  --cpu                   force the CPU (same as --device cpu).
  --precision P           fp32 (default) | int8 | bf16 | fp16. Measured on a 2-core Intel Xeon
                          (AVX-512, VNNI, AMX), vox-256, 40 frames, whole processes alternating
                          with the reference demos (docs/cpu-inference.md):
                          int8 (CPU only): every convolution of the per-frame networks runs on
                            PyTorch's int8 kernels (oneDNN), calibrated on the source and the first
                            --calibration_frames driving frames; keypoints, grid_sample and the TPS
                            solve stay fp32. FOMM 9.2 s (fp32 25.4 s, reference 32.1 s), TPSMM
                            17.6 s (fp32 64.8 s, reference 71.3 s). PSNR against fp32 83 dB (FOMM)
                            and 48 dB (TPSMM) with random weights, 56 dB and the same held-out L1
                            (+0.02%) on the bundled model. The first run on a source and video also
                            calibrates (+4 s FOMM, +16 s TPSMM here); the ranges are cached
                            (~/.cache/keypoint-animation, or $KEYPOINT_ANIMATION_CACHE), so the same
                            inputs again do not pay it.
                          bf16: autocast; only pays where the CPU has fast bf16 (avx512_bf16/AMX).
                          fp16: autocast, CUDA only.
  --calibration_frames N  int8: driving frames calibration sees (default 8).
  --compile               torch.compile the per-frame networks (fp32/bf16/fp16). On a 2-core AVX2 EPYC
                          it made a 40-frame run 2.2x slower, even with Inductor's cache warm: do
                          not use it on a CPU. GPUs: unmeasured.
  --batch_size N          driving frames per network call (default 1 on the CPU, 32 on a GPU:
                          on 2 CPU cores batch 1 was fastest and smallest for vox-256).
  --img_shape H,W         animation size (default: the config's dataset_params.frame_shape, else
                          256,256).
  --threads N             CPU threads for torch (default: one per core, fewer when other work
                          keeps cores busy, by the load average; see docs/cpu-inference.md).
  --quiet                 no progress bar (it is also off when stderr is not a terminal).

Example (--example)
  --example               generate a source image and a driving video of a held-out synthetic
                          identity, animate them with the bundled small TPSMM model and write
                          result.mp4 and side-by-side.mp4 (source | driving | result, x4).
  --example_dir DIR       where the example's files go (default example-output/).
  --example_checkpoint P  checkpoint to use instead of checkpoints/synthetic-tps-64-small.pth.tar
                          (with --config, default config/synthetic/tps-64-small.yaml).
  --example_frames N      length of the generated driving video (default 64).

Errors with an input (missing, unreadable or damaged files, a config that does not fit the
checkpoint, impossible options, a --result_video that would write over an input) are reported as
one line on stderr naming the file and the problem, with exit status 2 and no output file. Ctrl-C
and SIGTERM leave no partial file either. A relative --config such as config/fomm/vox-256.yaml
that is not in the current folder is read from this repository's config/ (said once).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

# Idle OpenMP threads sleep instead of spinning (modules/cpu_threads.py); set before torch loads.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from loading.checkpoint import CheckpointError  # noqa: E402
from deploy.int8 import Int8Unavailable  # noqa: E402
from bodies.backend import BodyModelError, NoBodyError  # noqa: E402
from faces.backend import DETECTOR_CHOICES, DETECTOR_HELP, FaceModelError, NoFaceError  # noqa: E402
from modules.config import ConfigError  # noqa: E402
from media import MediaError, MediaWarning, VideoReader, VideoWriter, load_image  # noqa: E402
from animation import DemoError, find_best_frame, load_landmark_detector, normalize_landmarks, one_line  # noqa: E402,F401

EXAMPLE_CONFIG = os.path.join('config', 'synthetic', 'tps-64-small.yaml')
EXAMPLE_CHECKPOINT = os.path.join('checkpoints', 'synthetic-tps-64-small.pth.tar')
EXAMPLE_SEED = 12345          # synthetic/data.py's data set uses seeds [seed, 0|1, ...]; this one is apart
EXAMPLE_SIZE = 64
EXAMPLE_ZOOM = 4
SAMPLE_DRIVING = os.path.join(os.path.dirname(ROOT), 'shared', 'samples', 'face-driving.mp4')

# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog='demo.py', description='Animate a source image with a driving video (FOMM / TPSMM).',
                epilog='Every option is described in the module docstring at the top of demo.py.')
    io = p.add_argument_group('inputs and output')
    io.add_argument('--config', help='model config (YAML)')
    io.add_argument('--checkpoint', help='checkpoint of that config')
    io.add_argument('--source_image', help='image to animate')
    io.add_argument('--driving_video', help='video (or folder of frames) giving the motion')
    io.add_argument('--result_video', default='result.mp4', help=".mp4, .gif or a folder ending in '/' (PNG frames)")
    io.add_argument('--audio', action='store_true', help="copy the driving video's audio into the result")
    mo = p.add_argument_group('motion')
    mo.add_argument('--mode', choices=('standard', 'relative', 'avd'),
                    help='FOMM: standard|relative (default standard); TPSMM: standard|relative|avd (default relative)')
    mo.add_argument('--relative', action='store_true', help='FOMM: relative motion (= --mode relative)')
    mo.add_argument('--adapt_scale', action='store_true', help='FOMM relative mode: adapt the movement scale')
    mo.add_argument('--find_best_frame', action='store_true',
                    help='reference frame = driving frame whose face landmarks best match the source')
    mo.add_argument('--best_frame', type=int, default=None, metavar='N', help='reference frame = driving frame N')
    mo.add_argument('--smooth', action='store_true',
                    help='smooth the driving keypoints over time (causal One-Euro filter; off by default)')
    mo.add_argument('--smooth_min_cutoff', type=float, default=None, metavar='HZ',
                    help='--smooth: cutoff at rest (default 1.0; lower: smoother, more lag)')
    mo.add_argument('--smooth_beta', type=float, default=None, metavar='B',
                    help='--smooth: cutoff rise with speed (default 5.0; higher: less lag on fast motion)')
    mo.add_argument('--smooth_d_cutoff', type=float, default=None, metavar='HZ',
                    help='--smooth: cutoff of the speed estimate (default 1.0)')
    fa = p.add_argument_group('faces')
    fa.add_argument('--crop', action='store_true',
                    help='animate the largest face of a photo of any size and paste it back; follow the driving face')
    fa.add_argument('--result_size', default=None, metavar='H,W', help='--crop: output size (default: the photo\'s)')
    fa.add_argument('--crop_increase', type=float, default=None, metavar='X',
                    help='--crop: enlarge the face box by this share per side (default 0.45, VoxCeleb framing)')
    fa.add_argument('--crop_target', choices=('auto', 'face', 'body'), default='auto',
                    help='--crop: face or whole person (auto: body for Tai-Chi/TED/fashion configs)')
    fa.add_argument('--face_backend', choices=('auto', 'face-alignment', 'dlib'), default='auto',
                    help='faces for --crop and --find_best_frame (auto: face-alignment if it loads, else dlib)')
    fa.add_argument('--detector', choices=DETECTOR_CHOICES, default='hog', help=DETECTOR_HELP)
    co = p.add_argument_group('compute')
    co.add_argument('--device', default=None, help='torch device (default: cuda if available, else cpu)')
    co.add_argument('--cpu', action='store_true', help='run on the CPU')
    co.add_argument('--precision', choices=('fp32', 'int8', 'bf16', 'fp16'), default='fp32',
                    help='fp32 (default); int8 (CPU: int8 convolutions on PyTorch\'s kernels; vox-256 on a 2-core '
                         'AMX Xeon 0.29 (FOMM) and 0.25 (TPSMM) of the reference demo\'s time; 48-83 dB PSNR against '
                         'fp32; first run on new inputs +4-16 s to calibrate, then cached); bf16 (pays only with '
                         'avx512_bf16/AMX or on a GPU); fp16 (CUDA). Details: docstring, docs/cpu-inference.md')
    co.add_argument('--calibration_frames', type=int, default=None, metavar='N',
                    help='int8: driving frames used to calibrate (default 8)')
    co.add_argument('--compile', action='store_true',
                    help='torch.compile the per-frame networks (on the CPU above 2.2x slower even with the cache '
                         'warm: not for CPUs)')
    co.add_argument('--batch_size', type=int, default=None, help='frames per network call (default 1 CPU / 32 GPU)')
    co.add_argument('--img_shape', default=None, metavar='H,W', help='animation size (default: from the config)')
    co.add_argument('--threads', type=int, default=None, metavar='N', help='CPU threads for torch')
    co.add_argument('--quiet', action='store_true', help='no progress bar')
    ex = p.add_argument_group('example')
    ex.add_argument('--example', action='store_true', help='animate a generated sample with the bundled small model')
    ex.add_argument('--example_dir', default='example-output', help='output folder of --example')
    ex.add_argument('--example_checkpoint', default=None, help=f'checkpoint for --example (default {EXAMPLE_CHECKPOINT})')
    ex.add_argument('--example_frames', type=int, default=64, help='frames of the generated driving video')
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def parse_shape(text: str, option: str = '--img_shape') -> tuple[int, int]:
    """'256,256', '256x256' or '256' -> (256, 256)."""
    parts = text.replace('x', ',').replace('X', ',').split(',')
    try:
        values = [int(v) for v in parts if v.strip()]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise DemoError(f'{option} {text!r}: expected two positive integers H,W such as 256,256')
    return values[0], values[1]


def resolve_device(args: argparse.Namespace):
    import torch
    if args.cpu:
        if args.device not in (None, 'cpu'):
            raise DemoError(f'--cpu and --device {args.device} contradict each other')
        return torch.device('cpu')
    if args.device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError) as err:
        raise DemoError(f'--device {args.device!r}: not a torch device ({err})') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise DemoError(f'--device {args.device}: CUDA is not available on this machine; use --cpu')
    return device


def resolve_mode(args: argparse.Namespace, family: str, config_path: str) -> tuple[str, bool]:
    """(mode, adapt_scale) from --mode / --relative / --adapt_scale for the config's family."""
    if family == 'fomm':
        if args.mode == 'avd':
            raise DemoError(f'--mode avd needs a TPSMM config; {config_path} is a FOMM config (modes: standard, relative)')
        if args.relative and args.mode == 'standard':
            raise DemoError('--relative and --mode standard contradict each other')
        mode = 'relative' if args.relative else (args.mode or 'standard')
    else:
        if args.relative and args.mode not in (None, 'relative'):
            raise DemoError(f'--relative and --mode {args.mode} contradict each other')
        mode = 'relative' if args.relative else (args.mode or 'relative')
    adapt = bool(args.adapt_scale)
    if adapt and (family == 'tps' or mode != 'relative'):
        why = "TPSMM's relative mode always adapts the scale" if family == 'tps' and mode == 'relative' \
            else f'it only applies to relative mode (mode is {mode})'
        note(f'--adapt_scale has no effect: {why}')
        adapt = family == 'tps' and mode == 'relative'
    return mode, adapt


def smoothing_of(args: argparse.Namespace):
    """--smooth and its --smooth_* parameters -> modules.temporal_filter.OneEuroParams, or None."""
    from modules.temporal_filter import OneEuroParams
    given = {name: getattr(args, f'smooth_{name}', None) for name in ('min_cutoff', 'beta', 'd_cutoff')}
    given = {name: value for name, value in given.items() if value is not None}
    if not (getattr(args, 'smooth', False) or given):
        return None
    try:
        return OneEuroParams(**given)
    except ValueError as err:
        raise DemoError(f'--{str(err).replace("smoothing ", "smooth_")}') from None


def check_animation_size(config: dict, config_path: str, family: str, size: tuple[int, int]) -> None:
    """--img_shape the networks cannot animate at: one line saying which sizes work."""
    from animate import size_multiple, size_problem
    problem = size_problem(config, size)
    if problem is None:
        return
    m = size_multiple(config)
    near = [max(m, round(s / m) * m) for s in size]
    raise DemoError(f'--img_shape {size[0]},{size[1]}: the {family.upper() if family == "fomm" else "TPSMM"} config '
                    f'{config_path} cannot animate {size[0]}x{size[1]} frames ({problem}); use sides that are '
                    f'multiples of {m}, for example {near[0]},{near[1]}')


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), None when torch cannot tell."""
    import torch
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:       # private helpers of torch.cpu, present since torch 2.1
        return None


def check_output_path(path: str) -> None:
    """Fail early (before loading anything) on an output format VideoWriter cannot write."""
    if path.endswith(('/', os.sep)) or os.path.isdir(path):
        return
    ext = os.path.splitext(path)[1].lower()
    if ext not in ('.mp4', '.gif'):
        raise DemoError(f"cannot write {path!r}: unsupported output format {ext or '(no extension)'!r}; "
                        "use .mp4, .gif, or a folder path ending in '/' for PNG frames")


def check_not_an_input(result: str, **inputs: str | None) -> None:
    """--result_video naming one of the inputs (through any path or link), or a folder output
    that holds one (it is replaced whole): one DemoError, before anything is read or written."""
    from media.files import overwritten_input
    for option, path in inputs.items():
        if overwritten_input(result, [path]):
            raise DemoError(f'--result_video {result!r} would write over the input --{option} {path!r} '
                            '(the same file, or a folder holding it); choose another output path')


def note(message: str) -> None:
    print(f'note: {message}', file=sys.stderr)


@contextlib.contextmanager
def warnings_as_notes() -> Iterator[None]:
    """Show warnings as short 'note:' lines instead of Python's two-line file:line format."""
    def show(message, category, filename, lineno, file=None, line=None):
        label = 'note' if issubclass(category, MediaWarning) else 'warning'
        print(f'{label}: {message}', file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter('always', MediaWarning)
        warnings.showwarning = show
        yield


def _frames_of(batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for batch in batches:
        yield from batch


def progress_bar(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm
    # disable=None: on only when stderr is a terminal, so logs and error output stay clean.
    return tqdm(total=total, desc=desc, unit='frame', disable=True if quiet else None, leave=False)


def reference_frame(args: argparse.Namespace, reader: VideoReader, source: np.ndarray, img_shape, device,
                    batch_size: int) -> np.ndarray | None:
    """The resized reference driving frame for --best_frame / --find_best_frame, or None (first frame)."""
    from media import resize_frame
    if args.best_frame is not None:
        if args.find_best_frame:
            note('--best_frame given: --find_best_frame is not needed and is skipped')
        n = args.best_frame
        if n < 0:
            raise DemoError(f'--best_frame {n}: frame numbers start at 0')
        try:
            frame = reader.read_frame(n)
        except IndexError:
            count = reader.num_frames
            has = f'has {count} frames' if count is not None else 'has fewer frames'
            raise DemoError(f'--best_frame {n}: the driving video {reader.path!r} {has} (numbered from 0)') from None
        return resize_frame(frame, img_shape)
    if not args.find_best_frame:
        return None
    landmarks = load_landmark_detector(device, args.face_backend)
    with progress_bar(reader.num_frames or reader.estimated_num_frames, 'best frame', args.quiet) as bar:
        def frames():
            for frame in _frames_of(reader.iter_batches(batch_size, size=img_shape)):
                bar.update(1)
                yield frame
        index, frame = find_best_frame(source, frames(), landmarks, repr(args.source_image))
    if index is None:
        note(f'no face found in any frame of {args.driving_video!r}; using frame 0 as the reference')
        return None
    note(f'best reference frame: {index}')
    return frame


# ----------------------------------------------------------------------------------------------
# Animation
# ----------------------------------------------------------------------------------------------

def run_animation(animator, source: np.ndarray, reader: VideoReader, result_path: str, *, mode: str,
                  adapt_scale: bool = False, initial: np.ndarray | None = None, batch_size: int = 8,
                  img_shape: tuple[int, int] | None = None, audio_from: str | None = None, quiet: bool = False,
                  on_batch: Callable[[np.ndarray, np.ndarray], None] | None = None,
                  compose: Callable[[np.ndarray], np.ndarray] | None = None, smooth=None) -> dict:
    """Stream `reader` through `animator` into `result_path`, frame by frame as results come.

    `source` and `initial` are float (H, W, 3) at the animation size `img_shape`; `on_batch`,
    if given, sees every (driving batch, result batch) pair, both float (B, H, W, 3); `compose`,
    if given, turns each result batch into the uint8 frames to write (--crop's paste-back);
    `smooth` (OneEuroParams or None) filters the driving keypoints at the video's frame rate.
    Returns {'frames', 'seconds', 'fps', 'size': (H, W) of the frames written}; on any error
    nothing is left at `result_path`.
    """
    from animate import to_uint8
    img_shape = img_shape or animator.frame_size
    last: list[np.ndarray] = []

    def tap(batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for batch in batches:
            last[:] = [batch]
            yield batch

    start = time.perf_counter()
    written = img_shape        # (H, W) of the frames handed to the writer: the photo's with --crop
    try:
        with VideoWriter(result_path, fps=reader.fps, audio_from=audio_from) as writer, \
                progress_bar(reader.num_frames or reader.estimated_num_frames, 'animate', quiet) as bar:
            batches = tap(reader.iter_batches(batch_size, size=img_shape))
            for frames in animator.animate(source, batches, mode=mode, adapt_scale=adapt_scale, initial=initial,
                                           size=img_shape, smooth=smooth, fps=reader.fps):
                out = compose(frames) if compose is not None else to_uint8(frames)
                written = out.shape[1:3]
                writer.write(out)
                if on_batch is not None:
                    on_batch(last[0], frames)
                bar.update(len(frames))
    finally:
        reader.close()
    seconds = time.perf_counter() - start
    return {'frames': writer.frames_written, 'seconds': seconds, 'fps': reader.fps, 'size': tuple(written)}


def check_precision(precision: str, device, compile: bool) -> None:
    """A precision the device cannot run is one DemoError; bf16 emulated on this CPU is a note."""
    if precision == 'bf16' and device.type == 'cpu' and cpu_has_native_bf16() is False:
        note('this CPU has no native bf16 arithmetic (neither AVX512-BF16 nor AMX): --precision bf16 is emulated '
             'and usually several times slower than fp32 here')
    if precision == 'fp16' and device.type != 'cuda':
        raise DemoError(f'--precision fp16 needs a CUDA GPU (the device is {device}); use --precision bf16 on the CPU')
    if precision == 'int8' and (device.type != 'cpu' or compile):
        raise DemoError(f'--precision int8 runs on the CPU without --compile (the device is {device}); '
                        'use --cpu, or fp16/bf16 on a GPU')


def animate_files(args: argparse.Namespace, *, config_path: str | None = None, checkpoint_path: str | None = None,
                  on_batch=None, mode_override: tuple[str, bool] | None = None, animator=None) -> dict:
    """The CLI's work: check the options and inputs, load the model, animate, write.

    `animator`: an Animator already built from this config and checkpoint (app.py keeps its
    models loaded between requests); None loads them here."""
    from animate import Animator, frame_shape_of
    from modules import family_of_config
    from loading import load_config

    config_path = config_path or args.config
    checkpoint_path = checkpoint_path or args.checkpoint
    missing = [f'--{name}' for name, value in (('config', config_path), ('checkpoint', checkpoint_path),
                                               ('source_image', args.source_image),
                                               ('driving_video', args.driving_video)) if not value]
    if missing:
        raise DemoError(f'missing {", ".join(missing)} (or use --example)')
    device = resolve_device(args)
    check_precision(args.precision, device, args.compile)
    if args.calibration_frames is not None and args.calibration_frames < 1:
        raise DemoError(f'--calibration_frames {args.calibration_frames}: must be at least 1')
    batch_size = args.batch_size if args.batch_size is not None else (32 if device.type == 'cuda' else 1)
    if batch_size < 1:
        raise DemoError(f'--batch_size {batch_size}: must be at least 1')
    check_output_path(args.result_video)
    check_not_an_input(args.result_video, config=config_path, checkpoint=checkpoint_path,
                       source_image=args.source_image, driving_video=args.driving_video)
    if args.result_size:
        parse_shape(args.result_size, '--result_size')       # a malformed one is an error, with --crop or not
    smooth = smoothing_of(args)
    if args.threads is not None and args.threads < 1:
        raise DemoError(f'--threads {args.threads}: must be at least 1')
    from modules import cpu_threads
    cpu_threads.configure(args.threads)

    config = load_config(config_path)
    family = family_of_config(config).name
    mode, adapt = mode_override or resolve_mode(args, family, config_path)
    img_shape = parse_shape(args.img_shape) if args.img_shape else frame_shape_of(config)
    if args.img_shape:
        check_animation_size(config, config_path, family, img_shape)
    if (args.best_frame is not None or args.find_best_frame) and mode != 'relative':
        note(f'--best_frame / --find_best_frame only matter in relative mode (mode is {mode}); ignored')
        args.best_frame, args.find_best_frame = None, False

    # Notes about the inputs (an image squeezed to another aspect ratio, ...) wait until every input
    # has loaded: a bad input still gets exactly one line.
    with warnings.catch_warnings(record=True) as early_notes:
        warnings.simplefilter('always', MediaWarning)
        compose = None
        if args.crop:
            source, reader, compose = crop_inputs(args, img_shape, device, config)
        else:
            source = load_image(args.source_image, size=img_shape)
            reader = VideoReader(args.driving_video, strict=True)
        try:
            if not args.crop:   # (cropping has decoded the whole video already)
                reader.check_tail()   # a damaged end fails now, not after animating everything before it
            if animator is None:
                animator = Animator.from_files(config_path, checkpoint_path, device=device, precision=args.precision,
                                               compile=args.compile, calibration_frames=args.calibration_frames,
                                               need_avd=mode == 'avd')
            initial = reference_frame(args, reader, source, img_shape, device, batch_size)
        except BaseException:
            reader.close()
            raise
    for early in early_notes:
        warnings.showwarning(early.message, early.category, early.filename, early.lineno)
    if args.result_size and not args.crop:
        note(f'--result_size {args.result_size} only applies with --crop; without it the result has the '
             f'animation size {img_shape[1]}x{img_shape[0]} (--img_shape)')
    stats = run_animation(animator, source, reader, args.result_video, mode=mode, adapt_scale=adapt,
                          initial=initial, batch_size=batch_size, img_shape=img_shape,
                          audio_from=args.driving_video if args.audio else None, quiet=args.quiet,
                          on_batch=on_batch, compose=compose, smooth=smooth)
    rate = stats['frames'] / stats['seconds'] if stats['seconds'] > 0 else float('inf')
    if animator.int8 is not None:
        t = animator.int8.timings
        how = 'ranges from the cache' if t.get('cached') else 'calibrated, ranges cached'
        print(f"int8 set-up, inside the animation time: {t.get('calibrate_s', 0):.1f} s ({how}: {t.get('path', '?')})")
    size = describe_output_size(args.result_video, stats['size'], img_shape)
    print(f"wrote {args.result_video}: {stats['frames']} frames at {stats['fps']:g} fps, "
          f"{size}, {family} {mode}{' adapt_scale' if adapt and family == 'fomm' else ''}"
          f"{' smoothed' if smooth else ''} "
          f"on {device} {args.precision} (animation {stats['seconds']:.2f} s, {rate:.1f} frames/s)")
    return stats


def describe_output_size(result: str, size: tuple[int, int], img_shape: tuple[int, int]) -> str:
    """'WxH' of the file written, saying when H.264's even sides padded it (an odd --result_size
    or photo with --crop) and when the animation ran at another size (--crop pastes into the photo)."""
    h, w = size
    text = f'{w}x{h}'
    if result.lower().endswith('.mp4') and (h % 2 or w % 2):
        text = f'{w + w % 2}x{h + h % 2} ({w}x{h} padded by one repeated row/column: H.264 needs even sides)'
    if tuple(size) != tuple(img_shape):
        text += f', animated at {img_shape[1]}x{img_shape[0]}'
    return text


def crop_inputs(args: argparse.Namespace, img_shape, device, config: dict | None = None):
    """--crop: (source crop at img_shape, driving video cropped to its face, paste-back function)."""
    from faces import load_backend
    from faces.compose import DEMO_INCREASE, CroppedVideo, crop_photo, track_driving
    target = args.crop_target
    if target == 'auto':
        from bodies.metrics import metrics_kind
        target = metrics_kind(config or {})
    if target == 'body':        # the same steps with the person detector (bodies/compose.py)
        from bodies import load_backend
        from bodies.compose import DEMO_INCREASE, crop_person as crop_photo, track_person as track_driving
    increase = DEMO_INCREASE if args.crop_increase is None else args.crop_increase
    if increase < 0:
        raise DemoError(f'--crop_increase {increase}: must be >= 0')
    result_size = parse_shape(args.result_size, '--result_size') if args.result_size else None
    backend = (load_backend(use_tiles=True) if target == 'body'
               else load_backend(args.face_backend, str(device), detector=args.detector))
    photo = load_image(args.source_image)
    crop = crop_photo(photo, backend, increase, f'the source image {args.source_image!r}')
    reader = VideoReader(args.driving_video, strict=True)
    try:
        with progress_bar(reader.num_frames or reader.estimated_num_frames, f'driving {target}', args.quiet) as bar:
            track = track_driving(reader, backend, reader.fps, increase, name=f'the driving video {args.driving_video!r}',
                                  on_frame=lambda: bar.update(1))
    except BaseException:
        reader.close()
        raise
    if track.describe_lost():
        note(track.describe_lost())
    x0, y0, x1, y1 = (int(v) for v in crop.box)
    what = 'person' if target == 'body' else 'face'
    note(f'--crop: {what} square ({x0},{y0})-({x1},{y1}) of the {photo.shape[1]}x{photo.shape[0]} photo, pasted back '
         f'into it; driving {what} followed over {len(track.boxes)} frames ({backend.name})')
    return crop.source(img_shape), CroppedVideo(reader, track.boxes), crop.composer(result_size)


# ----------------------------------------------------------------------------------------------
# --example
# ----------------------------------------------------------------------------------------------

class Example(NamedTuple):
    source: np.ndarray     # uint8 (H, W, 3): identity A, first frame of `expected`
    driving: np.ndarray    # uint8 (T, H, W, 3): identity B performing motion M
    expected: np.ndarray   # uint8 (T, H, W, 3): identity A performing the same motion M


def example_inputs(num_frames: int = 64, size: int = EXAMPLE_SIZE, seed: int = EXAMPLE_SEED) -> Example:
    """The bundled example: two held-out synthetic identities perform the same motion.

    The driving clip shows identity B; the source is identity A in the clip's first pose. The
    generator can render A performing the same motion, so relative motion transfer has an exact
    answer, `expected`, and the result can be scored against it. Deterministic; the seed is apart
    from the training set's."""
    from synthetic.data import make_video, sample_identity
    rng = np.random.default_rng(seed)
    source_identity, driving_identity = sample_identity(rng), sample_identity(rng)
    motion_seed = int(rng.integers(2**31))
    # The motion is drawn from its own generator, in the same order whatever the identity.
    driving = make_video(np.random.default_rng(motion_seed), driving_identity, num_frames=num_frames, size=size)
    expected = make_video(np.random.default_rng(motion_seed), source_identity, num_frames=num_frames, size=size)
    return Example(expected[0], driving, expected)


def side_by_side(source: np.ndarray, driving: np.ndarray, result: np.ndarray, zoom: int = EXAMPLE_ZOOM) -> np.ndarray:
    """(B, H, 3W*zoom...) frames: source | driving | result, each enlarged `zoom` times (nearest)."""
    batch = np.concatenate([np.broadcast_to(source, driving.shape), driving, result], axis=2)
    return batch.repeat(zoom, axis=1).repeat(zoom, axis=2)


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith('..') else path


def write_example_inputs(out: str, num_frames: int = 64) -> tuple[Example, str, str]:
    """(example, source.png path, driving.mp4 path): `example_inputs` written into folder `out`."""
    from media.files import atomic_path
    from PIL import Image
    from synthetic.data import FPS
    example = example_inputs(num_frames)
    source_path = os.path.join(out, 'source.png')
    driving_path = os.path.join(out, 'driving.mp4')
    with atomic_path(source_path) as tmp:
        Image.fromarray(example.source).save(tmp)
    with VideoWriter(driving_path, fps=FPS, crf=10) as writer:   # near lossless
        writer.write(example.driving)
    return example, source_path, driving_path


def python_command() -> str:
    """This interpreter as a command that works from the current folder: 'python' when that is
    what the shell finds, else its path ('.venv/bin/python' after `make demo`, whose venv is not
    on PATH: the system Python has no torch)."""
    import shutil
    found = shutil.which('python')
    if found and os.path.dirname(os.path.abspath(found)) == os.path.dirname(os.path.abspath(sys.executable)):
        return 'python'
    shown = _shown(sys.executable)
    return shown if os.sep in shown else os.path.join('.', shown)


def official_example() -> str:
    """The closing hint of --example: demo.py on a face with an official checkpoint, as a command
    that runs from the current folder once the checkpoint and a photo are there."""
    driving = _shown(SAMPLE_DRIVING) if os.path.isfile(SAMPLE_DRIVING) else 'driving.mp4'
    return (f'{python_command()} {_shown(os.path.join(ROOT, "demo.py"))} --config config/fomm/vox-256.yaml '
            f'--checkpoint vox-cpk.pth.tar --source_image my.png --driving_video {driving} '
            '--result_video result.mp4 --relative --adapt_scale --audio')


def make_example(args: argparse.Namespace) -> int:
    from synthetic.data import FPS

    config = args.config or os.path.join(ROOT, EXAMPLE_CONFIG)
    checkpoint = args.example_checkpoint or args.checkpoint or os.path.join(ROOT, EXAMPLE_CHECKPOINT)
    if not os.path.isfile(checkpoint):
        raise DemoError(f'the example model {_shown(checkpoint)} is missing: it is trained on the synthetic data set '
                        f'and committed once ready; pass --example_checkpoint PATH to use a checkpoint made with '
                        f'{_shown(config)}')
    if args.example_frames < 2:
        raise DemoError(f'--example_frames {args.example_frames}: need at least 2 frames')
    out = args.example_dir
    (source, driving, expected), source_path, driving_path = write_example_inputs(out, args.example_frames)
    print(f'generated {_shown(source_path)} and {_shown(driving_path)} ({len(driving)} frames: two synthetic '
          f'identities not in the training set, doing the same motion; seed {EXAMPLE_SEED})')

    args.source_image, args.driving_video = source_path, driving_path
    args.result_video = os.path.join(out, 'result.mp4')
    sbs_path = os.path.join(out, 'side-by-side.mp4')
    source_float = source.astype(np.float32) / 255
    expected_float = expected.astype(np.float32) / 255
    errors = {'result': [], 'source': []}   # per-frame L1 against `expected`
    with VideoWriter(sbs_path, fps=FPS) as sbs:
        def on_batch(driving_batch: np.ndarray, result_batch: np.ndarray) -> None:
            shape = driving_batch.shape[1:3]
            src = source_float if source_float.shape[:2] == shape else load_image(source_path, size=shape)
            sbs.write(side_by_side(src, driving_batch, result_batch))
            if shape == expected_float.shape[1:3]:
                start = len(errors['result'])
                target = expected_float[start:start + len(result_batch)]
                errors['result'] += list(np.abs(result_batch - target).mean(axis=(1, 2, 3)))
                errors['source'] += list(np.abs(source_float - target).mean(axis=(1, 2, 3)))
        animate_files(args, config_path=config, checkpoint_path=checkpoint, on_batch=on_batch,
                      mode_override=('relative', False))
    print(f'wrote {_shown(sbs_path)} (source | driving | result, x{EXAMPLE_ZOOM})')
    if errors['result']:
        print(f"mean L1 to the exact answer (identity A doing the driving motion): result "
              f"{np.mean(errors['result']):.4f}, a still source image {np.mean(errors['source']):.4f}")
    print(f'\nExample outputs are in {_shown(out)}/: source.png, driving.mp4, result.mp4, side-by-side.mp4.')
    print('To animate your own photo with an official checkpoint (see README for where to get them):')
    print(f'  {official_example()}')
    return 0


# ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as stop:                  # --help, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else 2
    from media.files import Terminated, sigterm_as_interrupt
    with warnings_as_notes():
        try:
            with sigterm_as_interrupt():      # SIGTERM cleans up as Ctrl-C does: no .part files left
                if args.example:
                    return make_example(args)
                animate_files(args)
                return 0
        except (MediaError, ConfigError, CheckpointError, DemoError, FaceModelError, NoFaceError, BodyModelError,
                NoBodyError, Int8Unavailable) as err:
            print(f'error: {one_line(err)}', file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:
            terminated = isinstance(stop, Terminated)
            print(f"{'terminated' if terminated else 'interrupted'}; no result written", file=sys.stderr)
            return 143 if terminated else 130


if __name__ == '__main__':
    sys.exit(main())
