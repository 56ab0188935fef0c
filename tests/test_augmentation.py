"""Augmentation as the references draw and apply it (their shared augmentation.py).

Nothing in the parity fixtures covers data augmentation, so these pin the references' numbers:
flip rates, edge padding, nearest-neighbour resizing with a truncated size, and the stage order.
"""
from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from augmentation import AllAugmentationTransform, RandomCrop, RandomFlip, RandomResize


def _two_frames(h: int = 12, w: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(2)]


def _flip_outcomes(flip: RandomFlip, draws: int = 20000) -> dict[str, float]:
    frames = _two_frames(4, 4)
    rng = np.random.default_rng(0)
    counts = {'time': 0, 'horizontal': 0, 'both': 0}
    for _ in range(draws):
        out = flip(frames, rng)
        reversed_ = np.array_equal(out[0], frames[1]) or np.array_equal(out[0], frames[1][:, ::-1])
        mirrored = np.array_equal(out[0], frames[0][:, ::-1]) or np.array_equal(out[0], frames[1][:, ::-1])
        counts['time'] += reversed_ and not mirrored
        counts['horizontal'] += mirrored and not reversed_
        counts['both'] += reversed_ and mirrored
    return {k: v / draws for k, v in counts.items()}


def test_flip_draws_time_first_and_horizontal_only_without_it():
    rates = _flip_outcomes(RandomFlip(horizontal_flip=True, time_flip=True))
    assert rates['time'] == pytest.approx(0.5, abs=0.02)
    assert rates['horizontal'] == pytest.approx(0.25, abs=0.02)
    assert rates['both'] == 0


def test_flip_alone_happens_half_of_the_time():
    assert _flip_outcomes(RandomFlip(horizontal_flip=True), 4000)['horizontal'] == pytest.approx(0.5, abs=0.03)
    assert _flip_outcomes(RandomFlip(time_flip=True), 4000)['time'] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize('offsets', ['reference', 'independent'])
def test_crop_pads_with_edge_pixels(offsets):
    # MGIF's frames have white backgrounds: padding must not add black borders.
    white = [np.ones((9, 10, 3), np.float32) for _ in range(2)]
    white[0][4, 5] = 0.0                       # a dark pixel in the middle stays where it was
    out = RandomCrop(16, offsets)(white, np.random.default_rng(0))
    assert out[0].shape == (16, 16, 3)
    for corner in (out[0][0, 0], out[0][0, -1], out[0][-1, 0], out[0][-1, -1]):
        np.testing.assert_array_equal(corner, 1.0)
    # padding split as the reference: 7 rows -> 3 before, 4 after; 6 columns -> 3 and 3
    assert out[0][4 + 3, 5 + 3].tolist() == [0.0, 0.0, 0.0]
    assert out[0].min() == 0.0 and (out[0] == 0).sum() == 3


def test_crop_offsets_follow_the_reference():
    # A frame as tall as the crop but wider: the reference keeps the column at 0 (its conditions
    # are crossed); 'independent' draws it.
    frames = [np.tile(np.arange(20, dtype=np.float32)[None, :, None], (8, 1, 3))]
    rng = np.random.default_rng(0)
    reference = {RandomCrop((8, 8))(frames, rng)[0][0, 0, 0] for _ in range(30)}
    independent = {RandomCrop((8, 8), 'independent')(frames, rng)[0][0, 0, 0] for _ in range(30)}
    assert reference == {0.0}
    assert len(independent) > 5


@pytest.mark.parametrize('interpolation, order', [('nearest', 0), ('bilinear', 1)])
def test_resize_is_scikit_image_resize_at_the_truncated_size(interpolation, order):
    frames = _two_frames(17, 23, seed=3)
    factor = np.random.default_rng(5).uniform(0.75, 4 / 3)      # the draw the transform makes
    out = RandomResize((0.75, 4 / 3), interpolation)(frames, np.random.default_rng(5))
    size = (int(17 * factor), int(23 * factor))
    assert out[0].shape[:2] == size
    expected = sk_resize(frames[1], size, order=order, preserve_range=True, mode='constant', anti_aliasing=True)
    np.testing.assert_allclose(out[1], expected, atol=1e-6)


def test_resize_defaults_to_nearest_and_accepts_the_reference_key():
    assert RandomResize().order == 0
    t = AllAugmentationTransform.from_params({'resize_param': {'ratio': [0.9, 1.1], 'interpolation': 'bilinear'}})
    assert t.transforms[0].order == 1
    with pytest.raises(ValueError, match='interpolation'):
        RandomResize(interpolation='bicubic')


def test_stages_run_in_the_references_order():
    t = AllAugmentationTransform(jitter_param={'hue': 0.1}, crop_param={'size': 8}, resize_param={'ratio': 0.1},
                                 rotation_param={'degrees': 5}, flip_param={'time_flip': True})
    assert repr(t) == 'AllAugmentationTransform(RandomFlip, RandomRotation, RandomResize, RandomCrop, ColorJitter)'
