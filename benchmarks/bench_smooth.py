"""What `--smooth` (the causal One-Euro keypoint filter, modules/temporal_filter.py) does.

    python benchmarks/bench_smooth.py                       # the bundled model on the sample clip
    python benchmarks/bench_smooth.py --vox                 # + a random-weights FOMM vox-256 (jacobians)
    python benchmarks/bench_smooth.py --sweep               # several (min_cutoff, beta) settings

Prints, with and without smoothing:
  * jitter of the driving keypoints on ../shared/samples/face-driving.mp4 (169 frames, 25 fps):
    the mean absolute second difference |x[t+1] - 2 x[t] + x[t-1]| over frames, keypoints and
    coordinates, in the normalised [-1, 1] units (FOMM: the jacobians' entries too);
  * jitter of the output video, the same statistic over pixels, in 8-bit levels (bundled model,
    relative mode; with --vox also the random vox-256 FOMM's output on the first --vox_frames frames);
  * the lag on a steady motion: a synthetic keypoint moving at a constant speed (units/s, the
    frame is 2 units wide), filtered at 25 fps; the lag is how many frames late the filtered
    track is once it has settled ((input - output) / per-frame step at the last frame);
  * a noisy still keypoint (Gaussian noise, sd 0.01 units) and its jitter before and after.
The filter is causal: look-ahead 0 frames. Deterministic; single runs (there is no timing here).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modules.temporal_filter import KeypointSmoother, OneEuroParams  # noqa: E402

SAMPLES = os.path.join(ROOT, '..', 'shared', 'samples')
SPEEDS = (0.05, 0.2, 0.5, 1.0, 2.0)      # units/s: 2 units/s crosses the frame in one second


def jitter(track: np.ndarray) -> float:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| over time (axis 0) and everything else."""
    track = np.asarray(track, dtype=np.float64)
    return float(np.abs(track[2:] - 2 * track[1:-1] + track[:-2]).mean())


def ramp_lag(params: OneEuroParams, speed: float, fps: float = 25.0, frames: int = 250) -> float:
    """Frames of delay of the filtered track behind a keypoint moving at `speed` units/s."""
    t = np.arange(frames) / fps
    x = torch.tensor(np.stack([speed * t - 1, np.zeros(frames)], axis=-1), dtype=torch.float32)   # (T, 2)
    smoother = KeypointSmoother(params, fps)
    y = smoother({'fg_kp': x[:, None]})['fg_kp'][:, 0]      # one keypoint, all frames as one batch
    return float((x[-1, 0] - y[-1, 0]) / (speed / fps))


def noise_jitter(params: OneEuroParams | None, fps: float = 25.0, frames: int = 250) -> float:
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(0, 0.01, (frames, 10, 2)), dtype=torch.float32)
    if params is not None:
        x = KeypointSmoother(params, fps)({'fg_kp': x})['fg_kp']
    return jitter(x.numpy())


def read_clip(path: str, size: tuple[int, int], frames: int | None = None) -> tuple[np.ndarray, float]:
    from media import VideoReader
    with VideoReader(path) as reader:
        clip = np.concatenate(list(reader.iter_batches(32, size=size)))
        return clip[:frames], reader.fps


def clip_keypoints(animator, clip: np.ndarray) -> dict:
    """The driving keypoints of every frame, (T, K, 2) (and FOMM's (T, K, 2, 2) jacobians)."""
    from animate import to_tensor
    batches = [animator.keypoints(to_tensor(clip[i:i + 16], animator.device)) for i in range(0, len(clip), 16)]
    return {k: torch.cat([b[k] for b in batches]).cpu() for k in batches[0]}


def keypoint_jitter(kp: dict, fps: float, params: OneEuroParams | None) -> dict:
    """{'keypoints': jitter, 'jacobians': jitter (FOMM)} of the driving keypoints."""
    if params is not None:
        kp = KeypointSmoother(params, fps)(kp)
    out = {'keypoints': jitter(kp['value' if 'value' in kp else 'fg_kp'].numpy())}
    if 'jacobian' in kp:
        out['jacobians'] = jitter(kp['jacobian'].numpy())
    return out


def output_jitter(animator, source: np.ndarray, clip: np.ndarray, fps: float, params: OneEuroParams | None) -> float:
    batches = (clip[i:i + 8] for i in range(0, len(clip), 8))
    frames = np.concatenate(list(animator.animate(source, batches, 'relative', adapt_scale=True, smooth=params,
                                                  fps=fps)))
    return jitter(frames * 255)


def clip_speed(kp: dict, fps: float) -> float:
    """Median keypoint speed on the clip (units/s), to read the ramp lags against."""
    pts = (kp['value'] if 'value' in kp else kp['fg_kp']).numpy()
    return float(np.median(np.linalg.norm(np.diff(pts, axis=0), axis=-1)) * fps)


def report_model(name: str, animator, source, clip, fps, settings, with_output: bool = True) -> None:
    kp = clip_keypoints(animator, clip)
    print(f'\n{name}: {len(clip)} frames at {fps:g} fps, {clip.shape[2]}x{clip.shape[1]}; '
          f'median keypoint speed {clip_speed(kp, fps):.3f} units/s')
    print('| smoothing | keypoint jitter | jacobian jitter | output jitter (8-bit levels) |')
    print('|---|---|---|---|')
    for label, params in settings:
        kj = keypoint_jitter(kp, fps, params)
        oj = f'{output_jitter(animator, source, clip, fps, params):.3f}' if with_output else '-'
        jac = f"{kj['jacobians']:.5f}" if 'jacobians' in kj else '-'
        print(f"| {label} | {kj['keypoints']:.5f} | {jac} | {oj} |", flush=True)


def label_of(params: OneEuroParams | None) -> str:
    if params is None:
        return 'off'
    return f'min_cutoff {params.min_cutoff:g}, beta {params.beta:g}, d_cutoff {params.d_cutoff:g}'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--driving_video', default=os.path.join(SAMPLES, 'face-driving.mp4'))
    p.add_argument('--source_image', default=os.path.join(SAMPLES, 'face-source.png'))
    p.add_argument('--config', default=os.path.join(ROOT, 'config', 'synthetic', 'tps-64-small.yaml'))
    p.add_argument('--checkpoint', default=os.path.join(ROOT, 'checkpoints', 'synthetic-tps-64-small.pth.tar'))
    p.add_argument('--vox', action='store_true', help='also a random-weights FOMM vox-256 (keypoints and jacobians)')
    p.add_argument('--vox_frames', type=int, default=40, help='frames of the vox-256 output measured')
    p.add_argument('--sweep', action='store_true', help='several (min_cutoff, beta) settings besides the default')
    p.add_argument('--threads', type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from animate import Animator
    from media import load_image

    settings = [('off', None), ('default: ' + label_of(OneEuroParams()), OneEuroParams())]
    if args.sweep:
        settings += [(label_of(q), q) for q in (OneEuroParams(0.5, 5.0), OneEuroParams(1.0, 0.0),
                                                OneEuroParams(1.0, 20.0), OneEuroParams(2.0, 5.0),
                                                OneEuroParams(0.5, 20.0))]
    print('Lag on a steady motion, 25 fps (frames; look-ahead 0), and a noisy still keypoint (sd 0.01):')
    print('| smoothing | ' + ' | '.join(f'{v:g} units/s' for v in SPEEDS) + ' | noise jitter |')
    print('|---|' + '---|' * (len(SPEEDS) + 1))
    for label, params in settings:
        lags = ' | '.join(f'{ramp_lag(params, v):.2f}' if params else '0' for v in SPEEDS)
        print(f'| {label} | {lags} | {noise_jitter(params):.5f} |')

    torch.manual_seed(0)
    animator = Animator.from_files(args.config, args.checkpoint)
    clip, fps = read_clip(args.driving_video, animator.frame_size)
    source = load_image(args.source_image, size=animator.frame_size)
    report_model(f'{os.path.basename(args.checkpoint)} on {os.path.basename(args.driving_video)}',
                 animator, source, clip, fps, settings)
    if args.vox:
        from modules import build_models, load_config
        torch.manual_seed(0)
        config = load_config(os.path.join(ROOT, 'config', 'fomm', 'vox-256.yaml'))
        vox = Animator(config, build_models(config))
        clip, fps = read_clip(args.driving_video, vox.frame_size)
        source = load_image(args.source_image, size=vox.frame_size)
        report_model(f'random FOMM vox-256 on {os.path.basename(args.driving_video)} (keypoints: all frames)',
                     vox, source, clip, fps, settings, with_output=False)
        report_model(f'random FOMM vox-256, output: first {args.vox_frames} frames', vox, source,
                     clip[:args.vox_frames], fps, settings[:2])
    return 0


if __name__ == '__main__':
    sys.exit(main())
