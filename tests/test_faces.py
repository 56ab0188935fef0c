"""Faces end to end on the real samples (../shared/samples), offline: the dlib backend's
landmarks and embeddings, the papers' face metrics, the crop tool on a synthetic "raw" video made
from the real clip, demo.py --crop's paste-back, and face-alignment's offline fallback."""
from __future__ import annotations

import csv
import json
import os
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / 'shared' / 'samples'
CLIP, PHOTO = SAMPLES / 'face-driving.mp4', SAMPLES / 'face-source.png'
TPS = (REPO / 'config' / 'synthetic' / 'tps-64-small.yaml', REPO / 'checkpoints' / 'synthetic-tps-64-small.pth.tar')
FOMM = (REPO.parent / 'shared' / 'parity' / 'fomm-public.yaml', REPO.parent / 'shared' / 'parity' / 'fomm-public.pth.tar')

pytest.importorskip('dlib', reason='the dlib backend needs dlib-bin (requirements.txt)')
if not CLIP.is_file() or not PHOTO.is_file():
    pytest.skip(f'the real samples are not at {SAMPLES}', allow_module_level=True)

from faces import FaceModelError, load_backend  # noqa: E402
from faces import backend as backend_module  # noqa: E402
from faces.boxes import iou  # noqa: E402
from faces.metrics import FaceMetrics, analyse_frame, protocol_frame  # noqa: E402
from media import VideoReader, VideoWriter, load_image  # noqa: E402


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope='module')
def dlib_backend():
    return load_backend('dlib', say=quiet)


@pytest.fixture(scope='module')
def clip():
    """uint8 (169, 412, 410, 3): the real talking-head clip."""
    return np.stack(list(VideoReader(str(CLIP))))


@pytest.fixture(scope='module')
def clip256(clip):
    return np.stack([protocol_frame(f) for f in clip])


@pytest.fixture(scope='module')
def photo():
    return np.rint(load_image(str(PHOTO)) * 255).astype(np.uint8)


@pytest.fixture(scope='module')
def analysed(dlib_backend, clip256):
    """Landmarks and embeddings of a few frames (the descriptor takes ~0.2 s a frame)."""
    picks = [0, 40, 80, 120]
    return {i: analyse_frame(dlib_backend, clip256[i]) for i in picks}


# ----------------------------------------------------------------------------------------------
# Backend and metrics
# ----------------------------------------------------------------------------------------------

def test_landmarks_on_every_frame(dlib_backend, clip256):
    for index, frame in enumerate(clip256):
        face = dlib_backend.largest_face(frame)
        assert face is not None, f'no face on frame {index}'
        points = face.landmarks
        assert points.shape == (68, 2)
        # the points lie on the face: inside the frame, spread over a face-sized region
        assert points.min() >= -5 and points.max() <= 261 and np.ptp(points[:, 0]) > 60


def shifted(frames: np.ndarray, dx: int) -> np.ndarray:
    """Content moved `dx` pixels right (the left columns repeat the edge)."""
    out = np.roll(frames, dx, axis=2)
    out[:, :, :dx] = frames[:, :, :1]
    return out


def test_akd_zero_on_itself_and_about_2_when_shifted_4px(dlib_backend, clip256):
    frames = clip256[[0, 30, 60, 90, 120]]
    metrics = FaceMetrics(dlib_backend, identity=False)
    assert metrics.score_video('self', frames, frames)['akd'] == 0.0
    moved = metrics.score_video('shift', frames, shifted(frames, 4))
    assert 1.5 < moved['akd'] < 2.5 and 3.0 < moved['akd_euclidean'] < 5.0, moved     # cmp_kp.py: mean over x and y
    pooled = metrics.summary()
    assert pooled['frames'] == 10 and pooled['missing_face'] == 0.0 and 'dlib' in pooled['face_backend']


def test_aed_within_one_person_below_against_another(dlib_backend, analysed, photo):
    other = analyse_frame(dlib_backend, photo)
    assert other.embedding is not None and other.embedding.shape == (128,)
    from faces.metrics import embedding_distances
    same = [embedding_distances(analysed[0].embedding, analysed[i].embedding) for i in (40, 80, 120)]
    across = [embedding_distances(analysed[i].embedding, other.embedding) for i in (0, 40, 80, 120)]
    for k in ('aed', 'aed_l2', 'aed_mean_abs'):     # the protocol's squared L2, its root, the mean |difference|
        assert max(s[k] for s in same) < min(a[k] for a in across)
    assert max(s['aed_l2'] for s in same) < 0.6 < min(a['aed_l2'] for a in across)   # dlib's same-person threshold


def test_missing_faces_are_counted_not_scored(dlib_backend, clip256):
    frames = clip256[[0, 60]]
    blank = np.full_like(frames, 90)
    scores = FaceMetrics(dlib_backend, identity=False).score_video('gone', frames, np.stack([frames[0], blank[1]]))
    assert scores['missing_face'] == 0.5 and scores['frames_scored'] == 1 and scores['akd'] == 0.0


# ----------------------------------------------------------------------------------------------
# The crop tool on a synthetic raw video
# ----------------------------------------------------------------------------------------------

FACE = 200                      # side of the placed clip in the raw video
RAW_W, RAW_H = 480, 320
SHOT = 16                       # frames per shot


INCREASE = 0.3


@pytest.fixture(scope='module')
def face_clip(clip, dlib_backend):
    """The real clip's first frames cropped to its face as the crop tool frames one (the union
    of the face boxes, enlarged by INCREASE per side), FACE x FACE."""
    from faces.boxes import crop_resized, fit_box, square_box, union_box
    frames = clip[:2 * SHOT]
    found = [dlib_backend.largest_face(f) for f in frames]
    box = fit_box(square_box(union_box(np.stack([f.box for f in found])), INCREASE), 410, 412, 'pad')
    return np.stack([np.rint(crop_resized(f, box, (FACE, FACE)) * 255).astype(np.uint8) for f in frames])


def make_raw(faces: np.ndarray, path: Path, seed: int) -> list[list[tuple[int, int, int, int]]]:
    """Write a raw video: the real face clip (FACE x FACE) inside a larger canvas seen by a
    camera that pans, a cut to another place and background, and a distractor patch
    (skin-coloured noise) that is no face. Returns the placed face region of each frame, per shot."""
    rng = np.random.default_rng(seed)
    regions = []
    with VideoWriter(str(path), fps=25, crf=12) as writer:
        for shot, (colour, at, pan) in enumerate([((60, 110, 60), (60, 50), (1, 0)),
                                                  ((40, 40, 130), (200, 90), (0, -1))]):
            canvas = np.empty((RAW_H + 60, RAW_W + 60, 3), np.uint8)
            canvas[:] = colour
            canvas += rng.integers(0, 25, canvas.shape, dtype=np.uint8)          # texture, so the pan shows
            patch = np.clip(rng.normal((200, 150, 120), 25, (90, 70, 3)), 0, 255).astype(np.uint8)
            shot_regions = []
            for t in range(SHOT):
                frame_canvas = canvas.copy()
                frame_canvas[200:290, 380:450] = patch                            # distractor
                x, y = at
                frame_canvas[y:y + FACE, x:x + FACE] = faces[shot * SHOT + t]
                ox, oy = 30 + pan[0] * (t // 2), 30 + pan[1] * (t // 2)           # the camera pans 1 px / 2 frames
                writer.write(frame_canvas[oy:oy + RAW_H, ox:ox + RAW_W])
                shot_regions.append((x - ox, y - oy, x - ox + FACE, y - oy + FACE))
            regions.append(shot_regions)
    return regions


def crop_args(raw_dir, out, *extra):
    return ['--inp', str(raw_dir), '--out', str(out), '--image_shape', '64,64', '--min_frames', '8',
            '--min_size', '60', '--stride', '3', '--batch_size', '4', '--increase', str(INCREASE), '--quiet',
            '--face_backend', 'dlib', *extra]


@pytest.fixture(scope='module')
def raw_videos(face_clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp('raw')
    regions = {name: make_raw(face_clip, folder / f'{name}#take.mp4', seed) for seed, name in enumerate(('alice', 'bob'))}
    return folder, regions


def read_manifest(out: Path) -> list[dict]:
    with open(out / 'manifest.csv', newline='') as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('track', ['fixed', 'smooth'])
def test_crop_tool_one_tube_per_shot_on_the_face(raw_videos, tmp_path, capsys, track):
    import crop_video
    from frames_dataset import FramesDataset
    raw_dir, regions = raw_videos
    out = tmp_path / 'data'
    assert crop_video.main(crop_args(raw_dir, out, '--test_ids', 'bob', '--track', track)) == 0, capsys.readouterr().err
    rows = read_manifest(out)
    assert sorted((r['id'], int(r['start_frame']), int(r['end_frame'])) for r in rows) == \
        [(name, s * SHOT, s * SHOT + SHOT - 1) for name in ('alice', 'bob') for s in range(2)]
    assert {r['partition'] for r in rows if r['id'] == 'bob'} == {'test'}
    assert all('dlib' in r['face_backend'] for r in rows)
    for row in rows:
        shot = int(row['start_frame']) // SHOT
        placed = regions[row['id']][shot]
        if track == 'fixed':
            box = [int(row[k]) for k in ('x0', 'y0', 'x1', 'y1')]
            overlaps = [iou(box, r) for r in placed]
            assert min(overlaps) >= 0.8, (row['name'], min(overlaps))
        else:
            # the box follows the pan: its offset from the placed region stays within the head's own motion,
            # and it stays inside that region (its side: the largest per-frame face box, enlarged)
            with open(out / row['track'].split(':', 1)[1], newline='') as f:
                boxes = np.array([[float(b[k]) for k in ('x0', 'y0', 'x1', 'y1')] for b in csv.DictReader(f)])
            offsets = (boxes[:, :2] + boxes[:, 2:]) / 2 - (np.array(placed)[:, :2] + np.array(placed)[:, 2:]) / 2
            assert np.abs(offsets - offsets.mean(axis=0)).max() <= 0.06 * FACE, offsets   # the head moves too
            assert min(iou(b, r) for b, r in zip(boxes, placed)) >= 0.5
    # the clips are a data set run.py trains on unchanged
    train = FramesDataset(str(out), frame_shape=(64, 64, 3), is_train=True)
    item = train[0]
    assert item['source'].shape == (3, 64, 64) and len(train) == 2
    test = FramesDataset(str(out), frame_shape=(64, 64, 3), is_train=False)
    assert test[0]['video'].shape == (3, SHOT, 64, 64)
    # a re-run does nothing and changes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob('*.mp4')}
    assert crop_video.main(crop_args(raw_dir, out, '--test_ids', 'bob', '--track', track)) == 0
    assert 'done before' in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*.mp4')} == before


def test_crop_tool_face_leaving_and_no_face(clip, tmp_path, capsys):
    import crop_video
    from media import resize_frame
    raw = tmp_path / 'raw'
    raw.mkdir()
    faces = [np.rint(resize_frame(f, (FACE, FACE)) * 255).astype(np.uint8) for f in clip[:20]]
    with VideoWriter(str(raw / 'carol#leaves.mp4'), fps=25, crf=12) as writer:
        for t, face in enumerate(faces):
            frame = np.full((RAW_H, RAW_W, 3), 70, np.uint8)
            x = 100 + (0 if t < 12 else 40 * (t - 11))          # from frame 12 on it slides out to the right
            frame[60:60 + FACE, x:min(RAW_W, x + FACE)] = face[:, :min(FACE, RAW_W - x)]
            writer.write(frame)
    assert crop_video.main(crop_args(raw, tmp_path / 'out', '--test_fraction', '0')) == 0
    (row,) = read_manifest(tmp_path / 'out')
    assert int(row['start_frame']) == 0 and 11 <= int(row['end_frame']) <= 15
    # a video with no face: one line, nothing written, exit 2
    empty = tmp_path / 'empty'
    empty.mkdir()
    with VideoWriter(str(empty / 'nobody.mp4'), fps=25) as writer:
        writer.write(np.full((12, 96, 128, 3), 120, np.uint8))
    capsys.readouterr()
    assert crop_video.main(crop_args(empty, tmp_path / 'out2')) == 2
    err = capsys.readouterr().err
    assert 'nobody.mp4: no face found' in err and err.count('error:') == 1
    assert not list((tmp_path / 'out2').rglob('*.mp4'))


# ----------------------------------------------------------------------------------------------
# demo.py --crop
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def crop_inputs(clip, photo, tmp_path_factory):
    from media import resize_frame
    folder = tmp_path_factory.mktemp('crop')
    canvas = np.empty((420, 560, 3), np.uint8)
    canvas[:] = (30, 80, 150)
    canvas[60:360, 200:501] = np.rint(resize_frame(photo, (300, 301)) * 255).astype(np.uint8)
    import imageio.v3 as iio
    iio.imwrite(folder / 'canvas.png', canvas)
    with VideoWriter(str(folder / 'driving.mp4'), fps=25) as writer:
        writer.write(clip[:5])
    return folder, canvas


def changed_region(canvas: np.ndarray, frames: np.ndarray) -> np.ndarray:
    return (np.abs(frames.astype(int) - canvas.astype(int)).sum(axis=-1) > 0).any(axis=0)


FAMILIES = [pytest.param(TPS, ['--mode', 'relative'], id='tps-relative'),
            pytest.param(TPS, ['--mode', 'standard'], id='tps-standard'),
            pytest.param(FOMM, ['--relative', '--find_best_frame'], id='fomm-relative-best-frame')]


@pytest.mark.parametrize('model, mode', FAMILIES)
def test_demo_crop_pastes_back_into_the_photo(crop_inputs, tmp_path, capsys, model, mode):
    import demo
    if not model[1].is_file():
        pytest.skip(f'{model[1]} is absent')
    folder, canvas = crop_inputs
    out = str(tmp_path / 'result') + '/'
    code = demo.main(['--config', str(model[0]), '--checkpoint', str(model[1]), '--source_image',
                      str(folder / 'canvas.png'), '--driving_video', str(folder / 'driving.mp4'),
                      '--result_video', out, '--crop', '--face_backend', 'dlib', '--cpu', '--quiet', *mode])
    err = capsys.readouterr().err
    assert code == 0, err
    frames = np.stack(list(VideoReader(out)))
    assert frames.shape == (5,) + canvas.shape
    changed = changed_region(canvas, frames)
    ys, xs = np.nonzero(changed)
    # what changed lies within one square around the face; everything outside equals the canvas
    side_x, side_y = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(side_x - side_y) <= 0.1 * side_x and 150 < side_x < 420
    outside = np.ones_like(changed)
    outside[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = False
    assert np.array_equal(frames[:, outside], np.broadcast_to(canvas[outside], frames[:, outside].shape))
    assert changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean() > 0.5     # inside: it differs
    assert 'face square' in err


def test_demo_crop_result_size_and_api(crop_inputs, clip):
    import animate
    folder, canvas = crop_inputs
    animator = animate.Animator.from_files(str(TPS[0]), str(TPS[1]))
    frames = np.concatenate(list(animate.animate_photo(animator, canvas, clip[:3], face_backend='dlib')))
    assert frames.shape == (3,) + canvas.shape and frames.dtype == np.uint8
    changed = changed_region(canvas, frames)
    assert 0.05 < changed.mean() < 0.7        # a face-sized square changed, the rest is the canvas
    small = next(animate.animate_photo(animator, canvas, clip[:1], face_backend='dlib', result_size=(210, 280)))
    assert small.shape == (1, 210, 280, 3)


def test_demo_crop_without_a_face(crop_inputs, tmp_path, capsys):
    import demo
    import imageio.v3 as iio
    folder, canvas = crop_inputs
    blank = tmp_path / 'wall.png'
    iio.imwrite(blank, np.full((300, 400, 3), 128, np.uint8))
    result = tmp_path / 'x.mp4'
    base = ['--config', str(TPS[0]), '--checkpoint', str(TPS[1]), '--result_video', str(result), '--crop',
            '--face_backend', 'dlib', '--cpu', '--quiet']
    assert demo.main(base + ['--source_image', str(blank), '--driving_video', str(folder / 'driving.mp4')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no face found in the source image' in err and 'wall.png' in err
    still = tmp_path / 'still.mp4'
    with VideoWriter(str(still), fps=25) as writer:
        writer.write(np.full((4, 96, 96, 3), 128, np.uint8))
    assert demo.main(base + ['--source_image', str(folder / 'canvas.png'), '--driving_video', str(still)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith('error: no face found in the driving video')
    assert not result.exists()


def test_driving_track_holds_the_last_box_when_the_face_leaves(dlib_backend, clip):
    from faces.compose import track_driving
    frames = [f.copy() for f in clip[:10]]
    for f in frames[6:]:
        f[:] = 100                                            # the face is gone from frame 6 on
    track = track_driving(frames, dlib_backend, fps=25, smooth_seconds=0)
    assert track.lost == [(6, 9)] and 'driving frames 6-9' in track.describe_lost()
    assert (track.boxes[6:] == track.boxes[5]).all()


# ----------------------------------------------------------------------------------------------
# face-alignment unavailable (as offline, here)
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def offline_face_alignment(monkeypatch):
    face_alignment = pytest.importorskip('face_alignment')
    calls = []

    def offline(*args, **kwargs):
        calls.append(1)
        print('Downloading: "https://example.invalid/s3fd.pth" to /nowhere')      # as torch.hub does
        raise urllib.error.URLError('[Errno -2] Name or service not known')

    monkeypatch.setattr(face_alignment, 'FaceAlignment', offline)
    backend_module.forget_loaded()
    yield calls
    backend_module.forget_loaded()


def test_auto_falls_back_to_dlib_once_and_forced_is_one_error(offline_face_alignment, capsys):
    said = []
    first = load_backend('auto', say=said.append)
    again = load_backend('auto', say=said.append)
    assert first is again and first.name == 'dlib'
    assert len(said) == 1 and 'face-alignment is unavailable' in said[0] and 'dlib' in said[0]
    with pytest.raises(FaceModelError) as err:
        load_backend('face-alignment', say=said.append)
    message = str(err.value)
    assert '\n' not in message and 'face-alignment' in message and 'hub' in message and '--face_backend dlib' in message
    assert len(offline_face_alignment) == 1        # tried once for the whole process
    out = capsys.readouterr()
    assert 'Downloading' not in out.out + out.err


def test_reconstruction_face_metrics_offline(offline_face_alignment, clip, tmp_path, caplog):
    """Reconstruction on a tiny face data set: AKD / AED / missing share in metrics.json, with
    the backend named; face-alignment tried once, one line about it."""
    import logging
    import reconstruction
    from frames_dataset import FramesDataset
    from modules import build_models
    from loading import load_config
    from media import resize_frame
    for part in ('train', 'test'):
        with VideoWriter(str(tmp_path / 'data' / part / f'x#{part}.mp4'), fps=25) as writer:
            writer.write(np.stack([resize_frame(f, (64, 64)) for f in clip[:4]]))
    config = load_config(str(TPS[0]))
    dataset = FramesDataset(str(tmp_path / 'data'), frame_shape=(64, 64, 3), is_train=False)
    with caplog.at_level(logging.INFO, logger='reconstruction'):
        metrics = reconstruction.reconstruction(config, build_models(config), dataset, str(tmp_path / 'log'), 'cpu',
                                                str(TPS[1]), visualize=False)
    saved = json.loads((tmp_path / 'log' / 'reconstruction' / 'metrics.json').read_text())
    assert saved['akd'] is not None and saved['aed'] is not None and saved['aed_l2'] is not None
    assert 'dlib' in saved['face_backend'] and saved['face_per_video']['x#test.mp4']['frames'] == 4
    assert 0 <= saved['missing_face'] <= 1 and metrics['akd'] == saved['akd']
    assert sum('face-alignment is unavailable' in r.getMessage() for r in caplog.records) == 1
    assert len(offline_face_alignment) == 1


def test_evaluate_scores_two_folders(clip256, tmp_path, capsys):
    import evaluate
    import imageio.v3 as iio
    (tmp_path / 'real').mkdir()
    (tmp_path / 'fake').mkdir()
    frames = clip256[:3]
    for name in ('a', 'b'):
        iio.imwrite(tmp_path / 'real' / f'{name}.png', np.concatenate(list(frames), axis=1))    # strips
    iio.imwrite(tmp_path / 'fake' / 'a.mp4.png', np.concatenate(list(frames), axis=1))
    iio.imwrite(tmp_path / 'fake' / 'b.png', np.concatenate(list(shifted(frames, 4)), axis=1))
    assert evaluate.main(['--real', str(tmp_path / 'real'), '--fake', str(tmp_path / 'fake'), '--face_backend',
                          'dlib', '--no_identity', '--out', str(tmp_path / 's.json')]) == 0
    scores = json.loads((tmp_path / 's.json').read_text())
    assert scores['per_video']['a']['akd'] == 0.0 and 1.5 < scores['per_video']['b']['akd'] < 2.5
    assert 'dlib' in capsys.readouterr().out


def test_crop_tool_writes_a_keyframe_every_second(tmp_path):
    """Training decodes a sampled frame from the keyframe before it: with x264's default (a
    keyframe every 250 frames) clips load several times slower than PNG folders."""
    import argparse
    import av
    import crop_video
    from tqdm import tqdm
    from media import VideoReader, VideoWriter
    raw = tmp_path / 'raw.mp4'
    frames = np.random.default_rng(0).integers(0, 256, (80, 48, 48, 3), np.uint8)
    with VideoWriter(str(raw), fps=25) as writer:
        writer.write(frames)
    clip = crop_video.Clip('a#raw#000', 'train', 0, 79, np.tile([4, 4, 44, 44], (80, 1)))
    args = argparse.Namespace(out=str(tmp_path / 'out'), format='mp4', image_shape=(32, 32))
    with VideoReader(str(raw)) as reader, tqdm(disable=True) as bar:
        crop_video.write_clips(reader, [clip], args, bar)
    with av.open(str(tmp_path / 'out' / 'train' / 'a#raw#000.mp4')) as container:
        keyframes = [i for i, p in enumerate(container.demux(video=0)) if p.size and p.is_keyframe]
    assert keyframes[0] == 0 and max(np.diff(keyframes + [80])) <= 25, keyframes
