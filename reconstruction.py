"""Reconstruction evaluation (run.py --mode reconstruction), both families.

Each test video is reconstructed from its first frame driven by all its frames, in standard
(absolute keypoint) mode, as both papers evaluate; TPSMM models with a background predictor
also use its background motion, as TPSMM's evaluation does. Written to <log_dir>/reconstruction/:
  png/<video>.png      all predicted frames side by side, truncated to 8 bits as the
                       references write them (the strips pose-evaluation scores)
  <video><format>      visualisation video (source, driving, prediction, motion, occlusion)
  metrics.json         L1 per video and overall (mean over all frames, as the references
                       print); for faces AKD and AED as pose-evaluation computes them (and
                       other forms beside them), each with its missing share, per video and
                       overall, with the face backend named (faces/metrics.py, docs/faces.md).
                       For bodies (Tai-Chi, TED, fashion, or reconstruction_params.metrics_kind:
                       body) AKD, MKR and, given reconstruction_params.reid_model, AED
                       (bodies/metrics.py, docs/bodies.md). Both score the strips' 8-bit frames,
                       so evaluate.py on png/ against the test videos gives the same numbers.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
from tqdm import tqdm

from animate import Animator, refuse_output_among_inputs, required_networks, to_uint8_truncated, video_stem
from faces.backend import as_uint8
from media.files import atomic_path
from bodies.metrics import body_fields, metrics_kind
from logger import Visualizer
from loading.checkpoint import load_models
from media import VideoWriter, write_image

log = logging.getLogger('reconstruction')


def make_face_metrics(config: dict, device: torch.device, backend: str = 'auto'):
    """(FaceMetrics or None, note) per reconstruction_params.face_metrics: auto (default: on when
    the first test frame shows a face), true, or false. The backend loads once per process:
    offline, face-alignment is tried once and dlib used instead, said in one line."""
    from faces import FaceModelError, load_backend
    from faces.metrics import FaceMetrics
    setting = (config.get('reconstruction_params') or {}).get('face_metrics', 'auto')
    if setting is False:
        return None, 'off (reconstruction_params.face_metrics: false)'
    try:
        return FaceMetrics(load_backend(backend, str(device), say=log.info)), None
    except FaceModelError as e:
        log.warning('face metrics (AKD, AED) skipped: %s', e)
        return None, f'skipped: {e}'


def face_fields(faces, note: str | None) -> dict:
    """metrics.json's face entries: overall AKD, AED, missing-face share, per video, the backend."""
    if faces is None:
        return {'akd': None, 'aed': None, 'face_metrics_note': note}
    summary = faces.summary()
    per_video = summary.pop('per_video')
    return {**summary, 'face_per_video': per_video, 'face_metrics_note': None}


def make_body_metrics(config: dict, device: torch.device):
    """(BodyMetrics or None, note) for a body data set; a body backend or re-ID file that does
    not load is said and skipped."""
    from bodies import BodyModelError
    from bodies.metrics import make_body_metrics as make
    try:
        metrics = make((config.get('reconstruction_params') or {}).get('reid_model'), str(device), say=log.info)
    except BodyModelError as e:
        log.warning('body metrics (AKD, MKR) skipped: %s', e)
        return None, f'skipped: {e}'
    if metrics.reid is None:
        log.info('%s (reconstruction_params.reid_model)', metrics.summary()['aed_note'].split(' (')[0])
    return metrics, None


def reconstruction(config: dict, models: dict, dataset, log_dir: str, device, checkpoint: str | None,
                   batch_size: int = 16, akd: bool = True, visualize: bool = True, face_backend: str = 'auto') -> dict:
    if not checkpoint:
        raise ValueError('--mode reconstruction needs --checkpoint')
    out_dir = os.path.join(log_dir, 'reconstruction')
    refuse_output_among_inputs(out_dir, getattr(dataset, 'root_dir', None))
    ckpt = load_models(checkpoint, {k: m for k, m in models.items() if k != 'discriminator'}, config,
                       required_networks(models))
    background = 'bg_predictor' in models and 'bg_predictor' in ckpt
    if 'bg_predictor' in models and not background:
        log.warning('%s has no bg_predictor: TPSMM reconstruction without background motion', checkpoint)
    params = config.get('reconstruction_params') or {}
    num_videos = params.get('num_videos')
    fmt = params.get('format', '.mp4')
    os.makedirs(os.path.join(out_dir, 'png'), exist_ok=True)
    animator = Animator(config, models, device)
    visualizer = Visualizer(**(config.get('visualizer_params') or {}))
    kind = metrics_kind(config)
    faces, faces_note = make_face_metrics(config, animator.device, face_backend) if akd and kind == 'face' \
        else (None, 'off')
    bodies, bodies_note = make_body_metrics(config, animator.device) if akd and kind == 'body' else (None, 'off')
    per_video, frame_l1, baseline_l1 = {}, [], []
    count = len(dataset) if num_videos is None else min(num_videos, len(dataset))
    for index in tqdm(range(count), desc='reconstruction'):
        item = dataset[index]
        video = torch.from_numpy(np.asarray(item['video'])).permute(1, 0, 2, 3).to(animator.device)  # (T, 3, H, W)
        state = animator.prepare(video[0].permute(1, 2, 0).cpu().numpy(), None, 'standard', False)
        predictions, frames_vis, l1 = [], [], []
        # Baseline: "reconstruct" every frame by copying the source frame.
        baseline_l1 += (video - video[:1]).abs().mean(dim=(1, 2, 3)).tolist()
        for start in range(0, video.shape[0], batch_size):
            driving = video[start:start + batch_size]
            out = animator.animate_batch(state, driving, full=True, background=background)
            pred = out['prediction'].float()
            l1 += (pred - driving).abs().mean(dim=(1, 2, 3)).tolist()
            predictions.append(pred.permute(0, 2, 3, 1).cpu().numpy())
            if visualize:
                source = state['source'].expand_as(driving)
                for i in range(driving.shape[0]):
                    one = {k: (v[i:i + 1] if torch.is_tensor(v) else
                               {kk: vv[i:i + 1] for kk, vv in v.items()} if isinstance(v, dict) else
                               [vv[i:i + 1] for vv in v] if isinstance(v, list) else v)
                           for k, v in out.items()}
                    frames_vis.append(visualizer.visualize(driving[i:i + 1], source[i:i + 1], one))
        strip = to_uint8_truncated(np.concatenate(predictions))      # uint8 (T, H, W, 3), as written
        # the data set's frames are 8-bit values / 255: as_uint8 gives back the decoded values
        real = as_uint8(video.permute(0, 2, 3, 1).cpu().numpy()) if faces or bodies else None
        if faces is not None:
            if not per_video and params.get('face_metrics', 'auto') == 'auto' and not faces.shows_face(real[0]):
                faces, faces_note = None, 'skipped: no face in the first frame of the first test video'
                log.info('face metrics (AKD, AED) %s (reconstruction_params.face_metrics: true forces them)',
                         faces_note)
            else:
                faces.score_video(item['name'], real, strip)
        if bodies is not None:
            bodies.score_video(item['name'], real, strip)
        name = video_stem(item['name'])
        with atomic_path(os.path.join(out_dir, 'png', name + '.png')) as tmp:
            write_image(tmp, np.concatenate(list(strip), axis=1))
        if visualize:
            with VideoWriter(os.path.join(out_dir, name + fmt), fps=25) as writer:
                for frame in frames_vis:
                    writer.write(frame)
        per_video[item['name']] = float(np.mean(l1))
        frame_l1 += l1
    metrics = {'l1': float(np.mean(frame_l1)) if frame_l1 else None,
               'l1_copy_source_baseline': float(np.mean(baseline_l1)) if baseline_l1 else None,
               'l1_per_video': per_video,
               'num_videos': len(per_video), 'num_frames': len(frame_l1),
               'background_motion': background,
               **(face_fields(faces, faces_note) if kind == 'face' else body_fields(bodies, bodies_note))}
    with atomic_path(os.path.join(out_dir, 'metrics.json')) as tmp:
        with open(tmp, 'w') as f:
            json.dump(metrics, f, indent=2)
    print(summary_line(metrics, faces, bodies, out_dir))
    return metrics


def summary_line(metrics: dict, faces, bodies, out_dir: str) -> str:
    """'Reconstruction L1: ... over N videos (F frames); AKD ... (missing ...), AED ... (missing
    ...) (face backend); written to ...'."""
    from faces.metrics import face_columns
    from scoring import summary_text
    line = (f"Reconstruction L1: {metrics['l1']:.5f} (copy-the-source baseline "
            f"{metrics['l1_copy_source_baseline']:.5f}) over {metrics['num_videos']} videos "
            f"({metrics['num_frames']} frames)")
    if faces is not None:
        line += f"; {summary_text(metrics, face_columns(faces.identity))} ({metrics['face_backend']})"
    if bodies is not None:
        from bodies.metrics import body_columns
        line += f"; {summary_text(metrics, body_columns())} ({metrics['body_backend']})"
    return line + f'; written to {out_dir}'

