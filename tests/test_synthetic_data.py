"""Tests for synthetic/data.py: determinism, layout, shapes and the presence of smooth motion."""
from __future__ import annotations

import os
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.util import img_as_float32

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from frames_dataset import FramesDataset, read_frames  # noqa: E402
from synthetic.data import generate_dataset, identity_rng, main, make_video, sample_identity, video_rng  # noqa: E402

SIZE, FRAMES = 32, 8


def clip(seed: int = 0, identity: int = 0, video: int = 0, frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    return make_video(video_rng(seed, identity, video), sample_identity(identity_rng(seed, identity)), frames, size)


def test_make_video_shape_and_determinism():
    video = clip()
    assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video, clip())
    assert not np.array_equal(video, clip(seed=1))
    small = make_video(np.random.default_rng(0), sample_identity(np.random.default_rng(0)), 3, 24)
    assert small.shape == (3, 24, 24, 3)


def test_motion_is_visible_but_smooth():
    video = clip(frames=24, size=64).astype(np.float32)
    step = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))  # mean abs change per frame, 0..255
    assert np.all(step > 0.2), step  # something moves in every frame
    assert np.all(step < 12.0), step  # ...but nothing jumps
    assert np.abs(video[-1] - video[0]).mean() > 1.0  # and over the clip it adds up


def test_identities_differ_and_videos_of_one_identity_share_appearance():
    a0, a1, b0 = clip(identity=0), clip(identity=0, video=1), clip(identity=1)
    between_ids = np.abs(a0[0].astype(float) - b0[0]).mean()
    within_id = np.abs(a0[0].astype(float) - a1[0]).mean()
    assert between_ids > 15.0
    assert within_id < between_ids / 2  # same background and colours, only the pose differs
    assert not np.array_equal(a0, a1)


def test_png_layout_and_determinism(tmp_path):
    kwargs = dict(size=SIZE, num_ids=3, videos_per_id=2, frames=FRAMES, test_ids=1, seed=0, progress=False)
    paths = generate_dataset(str(tmp_path / 'a'), **kwargs)
    assert len(paths) == 6
    assert sorted(os.listdir(tmp_path / 'a')) == ['test', 'train']
    assert sorted(os.listdir(tmp_path / 'a' / 'train')) == ['id000#000', 'id000#001', 'id001#000', 'id001#001']
    assert sorted(os.listdir(tmp_path / 'a' / 'test')) == ['id002#000', 'id002#001']
    frames = sorted(os.listdir(tmp_path / 'a' / 'train' / 'id000#000'))
    assert frames == [f'{t:04d}.png' for t in range(FRAMES)]
    first = iio.imread(tmp_path / 'a' / 'train' / 'id000#000' / '0000.png')
    assert first.shape == (SIZE, SIZE, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(read_frames(paths[0]), img_as_float32(clip()))

    generate_dataset(str(tmp_path / 'b'), **kwargs)
    for name in ('id001#001', 'id002#000'):
        split = 'test' if name.startswith('id002') else 'train'
        np.testing.assert_array_equal(read_frames(str(tmp_path / 'a' / split / name)),
                                      read_frames(str(tmp_path / 'b' / split / name)))

    train = FramesDataset(str(tmp_path / 'a'), frame_shape=(SIZE, SIZE, 3), id_sampling=True)
    assert train.videos == ['id000', 'id001']
    assert train[0]['source'].shape == (3, SIZE, SIZE)


def test_mp4_cli(tmp_path):
    out = tmp_path / 'mp4'
    assert main(['--out', str(out), '--size', '32', '--num_ids', '2', '--videos_per_id', '1', '--frames', '6',
                 '--test_ids', '1', '--format', 'mp4']) == 0
    assert sorted(os.listdir(out / 'train')) == ['id000#000.mp4']
    decoded = read_frames(str(out / 'test' / 'id001#000.mp4'))
    assert decoded.shape == (6, 32, 32, 3)
    rendered = img_as_float32(clip(identity=1, frames=6))
    assert np.abs(decoded - rendered).mean() < 0.03  # high-quality encode stays close to the render


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match='test_ids'):
        generate_dataset(str(tmp_path), num_ids=2, test_ids=2, progress=False)
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--num_ids', '1', '--test_ids', '1'])


def test_windowed_rendering_equals_full_frame_rendering(monkeypatch):
    from synthetic import data as synthetic_data

    windowed = clip(seed=5, identity=2)
    monkeypatch.setattr(synthetic_data, '_part_window', lambda part, size: (slice(0, size), slice(0, size)))
    np.testing.assert_array_equal(windowed, clip(seed=5, identity=2))
