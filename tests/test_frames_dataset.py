"""Tests for frames_dataset.py and augmentation.py on tiny videos written into tmp_path."""
from __future__ import annotations

import csv
import logging
import os
import sys

import imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage.util import img_as_float32

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import frames_dataset as fd  # noqa: E402
import media  # noqa: E402
from media import decoding, reading  # noqa: E402
from augmentation import AllAugmentationTransform, UnknownKeyError  # noqa: E402
from frames_dataset import (DatasetRepeater, FramesDataset, PairedDataset, VideoReadError,  # noqa: E402
                            build_dataset, count_frames, read_frames)

T, H, W = 6, 16, 16
FORMATS = ('folder', 'strip', 'mp4', 'gif')
SUFFIX = {'folder': '', 'strip': '.png', 'mp4': '.mp4', 'gif': '.gif'}


def make_frames(seed: int = 0, num_frames: int = T, height: int = H, width: int = W) -> np.ndarray:
    """Distinct, codec-friendly frames: a gradient whose brightness and offset encode the index."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    colour = rng.uniform(0.3, 1.0, size=3)
    frames = []
    for t in range(num_frames):
        level = 20 + 200 * t / max(1, num_frames - 1)
        base = level + 30 * np.sin((xx + 2 * t) / 3.0)[..., None] * colour
        frames.append(np.clip(base + 10 * (yy / height)[..., None], 0, 255))
    return np.asarray(frames).astype(np.uint8)  # (T, H, W, 3)


def write_video(path: str, frames: np.ndarray, fmt: str) -> str:
    """Write `frames` in format `fmt` at `path` + its suffix; returns the full path."""
    path = path + SUFFIX[fmt]
    if fmt == 'folder':
        os.makedirs(path)
        for t, frame in enumerate(frames):
            iio.imwrite(os.path.join(path, f'{t:04d}.png'), frame)
    elif fmt == 'strip':
        iio.imwrite(path, np.concatenate(list(frames), axis=1))  # (H, T*W, 3)
    elif fmt == 'mp4':
        imageio.mimwrite(path, list(frames), format='FFMPEG', fps=25, quality=9, macro_block_size=1)
    else:
        iio.imwrite(path, frames, duration=40, loop=0)
    return path


def make_split(root: str, fmt: str, train_names=('a#1', 'b#1'), test_names=('c#1',)) -> None:
    for split, names in (('train', train_names), ('test', test_names)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        for i, name in enumerate(names):
            write_video(os.path.join(root, split, name), make_frames(sum(map(ord, name)) + i), fmt)


@pytest.fixture(scope='module')
def videos(tmp_path_factory) -> dict[str, tuple[str, np.ndarray]]:
    """One video of each format (written once per module), with the frames it was made from."""
    base = tmp_path_factory.mktemp('videos')
    out = {}
    for i, fmt in enumerate(FORMATS):
        frames = make_frames(i)
        out[fmt] = (write_video(str(base / f'v{i}'), frames, fmt), frames)
    return out


# ---------------------------------------------------------------------------------------------
# Readers


@pytest.mark.parametrize('fmt', FORMATS)
def test_full_read_matches_written_frames(videos, fmt):
    path, frames = videos[fmt]
    video = read_frames(path, None, (H, W, 3))
    assert video.shape == (T, H, W, 3) and video.dtype == np.float32
    assert 0.0 <= video.min() and video.max() <= 1.0
    error = np.abs(video - frames / 255.0).mean(axis=(1, 2, 3))
    tolerance = 0.0 if fmt in ('folder', 'strip') else 0.05  # lossless vs codec / palette
    assert np.all(error <= tolerance + 1e-7), error
    assert count_frames(path, (H, W, 3)) == T


@pytest.mark.parametrize('fmt', FORMATS)
def test_partial_read_equals_full_decode(videos, fmt):
    path, _ = videos[fmt]
    full = read_frames(path, None, None)
    for indices in ([0, 0], [1, 4], [5, 5], [4, 1], [T - 1]):
        np.testing.assert_array_equal(read_frames(path, indices, None), full[indices])


# imageio's own ffmpeg reader leaves its pipes for the garbage collector; that is its leak, not ours.
@pytest.mark.filterwarnings('ignore::ResourceWarning', 'ignore::pytest.PytestUnraisableExceptionWarning')
def test_mp4_full_decode_matches_imageio_reader(videos):
    path, _ = videos['mp4']
    reference = img_as_float32(np.stack(imageio.mimread(path, format='FFMPEG')))  # the reference's conversion
    np.testing.assert_array_equal(read_frames(path, None, None), reference)


def test_mp4_partial_decode_stops_after_last_needed_frame(tmp_path, monkeypatch):
    """Random access demuxes from the keyframe before each wanted frame up to (about) that frame."""
    frames = make_frames(0, num_frames=40)
    path = str(tmp_path / 'gop.mp4')
    with media.VideoWriter(path, 25, keyframe_interval=10) as writer:   # keyframes at 0, 10, 20, 30
        writer.write(frames)
    packets = []
    open_video = decoding._open_video

    class CountingContainer:
        """The real container, counting the packets its demuxer hands out."""

        def __init__(self, container):
            self.container = container

        def __getattr__(self, name):
            return getattr(self.container, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.container.close()

        def demux(self, *args, **kwargs):
            for packet in self.container.demux(*args, **kwargs):
                packets.append(packet.pts)
                yield packet

    monkeypatch.setattr(decoding, '_open_video', lambda p: (lambda c, s: (CountingContainer(c), s))(*open_video(p)))
    full = read_frames(path, None, None)
    assert count_frames(path) == 40   # the packet index, built once per file
    index = decoding._video_index(path)
    starts = [list(index.pts).index(k) for k in index.keyframes]   # x264 adds keyframes at scene cuts
    assert len(starts) >= 4

    def group(i):
        return max(s for s in starts if s <= i)

    for wanted in ([2, 1], [33], [12, 35], [31, 38], [39]):
        packets.clear()
        np.testing.assert_array_equal(read_frames(path, wanted, None), full[wanted])
        # demuxed: from the keyframe before each wanted frame to the last wanted one of its group
        needed = sum(max(i for i in wanted if group(i) == g) - g + 1 for g in {group(i) for i in wanted})
        assert needed <= len(packets) <= needed + 4, (wanted, needed, packets)   # + reordering delay


def test_folder_train_item_reads_only_two_files(tmp_path, monkeypatch):
    write_video(str(tmp_path / 'train' / 'x'), make_frames(0, num_frames=12), 'folder')
    write_video(str(tmp_path / 'test' / 'y'), make_frames(1), 'folder')
    calls = []
    original = reading.read_image
    monkeypatch.setattr(reading, 'read_image', lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    ds = FramesDataset(str(tmp_path), frame_shape=(H, W, 3))
    for seed in range(5):
        ds.seed(seed)
        calls.clear()
        item = ds[0]
        same_frame = np.array_equal(item['source'], item['driving'])
        assert len(calls) == (1 if same_frame else 2)  # each distinct sampled frame is read once


def test_resize_and_channel_conversion(tmp_path):
    frames = make_frames(0, height=20, width=24)
    folder = tmp_path / 'v'
    folder.mkdir()
    iio.imwrite(folder / '0000.png', frames[0, :, :, 0])  # grayscale
    iio.imwrite(folder / '0001.png', np.dstack([frames[1], np.full((20, 24), 128, np.uint8)]))  # RGBA
    native = read_frames(str(folder), None, None)
    assert native.shape == (2, 20, 24, 3)
    np.testing.assert_array_equal(native[0, :, :, 0], native[0, :, :, 2])
    np.testing.assert_allclose(native[1], frames[1] / 255.0, atol=1e-6)
    resized = read_frames(str(folder), [1], (16, 16, 3))
    assert resized.shape == (1, 16, 16, 3) and resized.dtype == np.float32


def test_bad_strip_width_is_a_clear_error(tmp_path):
    path = tmp_path / 'strip.png'
    iio.imwrite(path, np.zeros((16, 40, 3), np.uint8))
    with pytest.raises(VideoReadError, match='strip.png'):
        read_frames(str(path), None, (16, 16, 3))


# ---------------------------------------------------------------------------------------------
# Items, splits, id sampling


@pytest.mark.parametrize('fmt', FORMATS)
def test_items_of_every_format(tmp_path, fmt):
    make_split(str(tmp_path), fmt)
    train = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), is_train=True,
                          augmentation_params={'flip_param': {'horizontal_flip': True, 'time_flip': True}})
    item = train[0]
    assert set(item) == {'source', 'driving', 'name'} and item['name'] == 'a#1' + SUFFIX[fmt]
    for key in ('source', 'driving'):
        assert item[key].shape == (3, H, W) and item[key].dtype == np.float32
        assert 0.0 <= item[key].min() and item[key].max() <= 1.0
    test = FramesDataset(str(tmp_path), frame_shape=None, is_train=False)
    item = test[0]
    assert set(item) == {'video', 'name'} and item['name'] == 'c#1' + SUFFIX[fmt]
    assert item['video'].shape == (3, T, H, W) and item['video'].dtype == np.float32


def test_source_not_after_driving_and_seed_reproducible(tmp_path):
    frames = make_frames(0, num_frames=20)
    write_video(str(tmp_path / 'train' / 'x'), frames, 'folder')
    write_video(str(tmp_path / 'test' / 'y'), frames, 'folder')
    ds = FramesDataset(str(tmp_path), frame_shape=(H, W, 3))
    chw = frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # (T, 3, H, W)

    def frame_index(image: np.ndarray) -> int:
        return int(np.flatnonzero([np.allclose(image, f, atol=1e-6) for f in chw])[0])

    ds.seed(3)
    draws = [ds[0] for _ in range(10)]
    assert all(frame_index(item['source']) <= frame_index(item['driving']) for item in draws)
    assert len({frame_index(item['driving']) for item in draws}) > 1
    ds.seed(3)
    again = [ds[0] for _ in range(10)]
    for a, b in zip(draws, again):
        np.testing.assert_array_equal(a['source'], b['source'])
        np.testing.assert_array_equal(a['driving'], b['driving'])


def test_random_split_matches_sklearn_rule(tmp_path):
    names = [f'v{i:02d}.png' for i in range(10)]
    for name in names:
        iio.imwrite(tmp_path / name, np.zeros((8, 16, 3), np.uint8))
    train = FramesDataset(str(tmp_path), frame_shape=(8, 8, 3), is_train=True, random_seed=0)
    test = FramesDataset(str(tmp_path), frame_shape=(8, 8, 3), is_train=False, random_seed=0)
    permutation = np.random.RandomState(0).permutation(10)
    assert test.videos == [names[i] for i in permutation[:2]]
    assert train.videos == [names[i] for i in permutation[2:]]
    other = FramesDataset(str(tmp_path), frame_shape=(8, 8, 3), is_train=False, random_seed=1)
    assert other.videos != test.videos
    assert train[0]['source'].shape == (3, 8, 8)


def test_train_test_folders(tmp_path):
    make_split(str(tmp_path), 'strip', train_names=('a#1', 'b#1', 'b#2'), test_names=('c#1',))
    assert FramesDataset(str(tmp_path), frame_shape=(H, W, 3)).videos == ['a#1.png', 'b#1.png', 'b#2.png']
    assert FramesDataset(str(tmp_path), frame_shape=(H, W, 3), is_train=False).videos == ['c#1.png']


def test_missing_test_folder_and_empty_folder_errors(tmp_path):
    (tmp_path / 'train').mkdir()
    with pytest.raises(FileNotFoundError, match='test'):
        FramesDataset(str(tmp_path))
    (tmp_path / 'test').mkdir()
    write_video(str(tmp_path / 'test' / 'c#1'), make_frames(0), 'strip')
    with pytest.raises(ValueError, match=r'no videos found in .*train'):
        FramesDataset(str(tmp_path), is_train=True)
    (tmp_path / 'train' / '.hidden.part').mkdir()  # temporary outputs do not count as videos
    with pytest.raises(ValueError, match='no videos found'):
        FramesDataset(str(tmp_path), is_train=True)


def test_id_sampling_groups_by_id(tmp_path):
    make_split(str(tmp_path), 'strip', train_names=('a#1', 'a#2', 'ab#1'), test_names=('c#1',))
    write_video(str(tmp_path / 'train' / 'a#3'), make_frames(5), 'folder')  # ids may mix formats
    ds = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), id_sampling=True)
    assert ds.videos == ['a', 'ab'] and len(ds) == 2
    ds.seed(0)
    names = {ds[0]['name'] for _ in range(30)}
    assert names == {'a#1.png', 'a#2.png', 'a#3'}  # never the 'ab' id sharing the prefix
    assert ds[1]['name'] == 'ab#1.png'
    test = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), id_sampling=True, is_train=False)
    assert test.videos == ['c#1.png']


def test_id_sampling_rejects_names_without_hash(tmp_path):
    make_split(str(tmp_path), 'strip', train_names=('a#1', 'plain'), test_names=('c#1',))
    with pytest.raises(ValueError, match=r"'plain.png'.*<id>#<rest>"):
        FramesDataset(str(tmp_path), id_sampling=True)


# ---------------------------------------------------------------------------------------------
# Corrupt files


def test_corrupt_mp4_skipped_in_train_and_raised_in_test(tmp_path, caplog):
    for split in ('train', 'test'):
        (tmp_path / split).mkdir()
        (tmp_path / split / 'bad.mp4').write_bytes(np.random.default_rng(0).bytes(2048))
        write_video(str(tmp_path / split / 'good'), make_frames(0), 'folder')
    train = FramesDataset(str(tmp_path), frame_shape=(H, W, 3))
    train.seed(0)  # the retry draws another index at random; fix it so the test cannot flake
    assert train.videos == ['bad.mp4', 'good']
    with caplog.at_level(logging.WARNING, logger='frames_dataset'):
        item = train[0]
        assert item['name'] == 'good'
        train[0]
    warnings = [r.getMessage() for r in caplog.records if 'bad.mp4' in r.getMessage()]
    assert len(warnings) == 1  # once per file

    test = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), is_train=False)
    with pytest.raises(VideoReadError, match='bad.mp4'):
        test[0]


def test_all_corrupt_gives_up_with_names(tmp_path):
    for split in ('train', 'test'):
        (tmp_path / split).mkdir()
        for name in ('x.png', 'y.png'):
            (tmp_path / split / name).write_bytes(b'not an image')
    with pytest.raises(RuntimeError, match=r'x\.png|y\.png'):
        FramesDataset(str(tmp_path), frame_shape=(H, W, 3))[0]


# ---------------------------------------------------------------------------------------------
# Wrappers and config handling


def test_dataset_repeater(tmp_path):
    make_split(str(tmp_path), 'strip', test_names=('c#1', 'd#1', 'e#1'))
    test = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), is_train=False)
    repeated = DatasetRepeater(test, 4)
    assert len(repeated) == 12
    assert repeated[7]['name'] == test[1]['name'] == 'd#1.png'


def test_paired_dataset_random_pairs(tmp_path):
    make_split(str(tmp_path), 'strip', test_names=('c#1', 'd#1', 'e#1', 'f#1'))
    test = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), is_train=False)
    pairs = PairedDataset(test, number_of_pairs=3, seed=0)
    grid = np.mgrid[:3, :3].reshape(2, -1).T
    expected = grid.take(np.random.RandomState(0).choice(9, 3, replace=False), axis=0)
    assert pairs.pairs == [tuple(p) for p in expected.tolist()]
    assert len(set(pairs.pairs)) == 3 and len(pairs) == 3
    assert PairedDataset(test, number_of_pairs=100).pairs.__len__() == 16  # all of the 4 x 4 grid
    item = pairs[0]
    assert set(item) == {'driving_video', 'driving_name', 'source_video', 'source_name'}
    assert item['driving_name'] == test.videos[pairs.pairs[0][0]]
    assert item['source_name'] == test.videos[pairs.pairs[0][1]]


def test_paired_dataset_from_csv(tmp_path):
    make_split(str(tmp_path), 'strip', test_names=('c#1', 'd#1', 'e#1'))
    pairs_csv = tmp_path / 'pairs.csv'
    with open(pairs_csv, 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['distance', 'source', 'driving', 'frame'])
        writer.writerow([0, 'c#1.png', 'missing.png', 0])
        writer.writerow([0, 'c#1.png', 'e#1.png', 0])
        writer.writerow([0, 'd#1.png', 'c#1.png', 0])
        writer.writerow([0, 'e#1.png', 'd#1.png', 0])
    test = FramesDataset(str(tmp_path), frame_shape=(H, W, 3), is_train=False, pairs_list=str(pairs_csv))
    pairs = PairedDataset(test, number_of_pairs=2)
    assert pairs.pairs == [(2, 0), (0, 1)]  # (driving, source) indices into test.videos
    item = pairs[1]
    assert item['driving_name'] == 'c#1.png' and item['source_name'] == 'd#1.png'


def test_unknown_keys_are_rejected_with_suggestion(tmp_path):
    make_split(str(tmp_path), 'strip')
    with pytest.raises(UnknownKeyError, match="'frame_shap'.*did you mean 'frame_shape'"):
        build_dataset({'root_dir': str(tmp_path), 'frame_shap': [16, 16, 3]}, is_train=True)
    with pytest.raises(TypeError, match="did you mean 'id_sampling'"):
        FramesDataset(str(tmp_path), id_sampeling=True)
    with pytest.raises(ValueError, match="did you mean 'flip_param'"):
        build_dataset({'root_dir': str(tmp_path), 'augmentation_params': {'flip_params': {}}}, is_train=True)
    with pytest.raises(ValueError, match="did you mean 'horizontal_flip'"):
        AllAugmentationTransform(flip_param={'horizontal_flp': True})
    ds = build_dataset({'root_dir': str(tmp_path), 'frame_shape': None, 'id_sampling': True,
                        'pairs_list': None, 'random_seed': 0, 'augmentation_params': None}, is_train=True)
    assert ds.videos == ['a', 'b']


def test_dataloader_collates_items(tmp_path):
    make_split(str(tmp_path), 'folder')
    ds = FramesDataset(str(tmp_path), frame_shape=(H, W, 3))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch['source'].shape == (2, 3, H, W) and batch['source'].dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# Augmentation


def _clip(seed: int = 0) -> list[np.ndarray]:
    return list(make_frames(seed, num_frames=2).astype(np.float32) / 255.0)


def test_augmentation_is_deterministic_under_a_seed():
    transform = AllAugmentationTransform(
        resize_param={'ratio': 0.2}, rotation_param={'degrees': 10}, crop_param={'size': [12, 12]},
        flip_param={'horizontal_flip': True, 'time_flip': True},
        jitter_param={'brightness': 0.1, 'contrast': 0.1, 'saturation': 0.1, 'hue': 0.1})
    a = transform(_clip(), np.random.default_rng(7))
    b = transform(_clip(), np.random.default_rng(7))
    c = transform(_clip(), np.random.default_rng(8))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    for frame in a:
        assert frame.shape == (12, 12, 3) and frame.dtype == np.float32
        assert 0.0 <= frame.min() and frame.max() <= 1.0


def test_horizontal_flip_flips_all_frames_together():
    clip = _clip()
    transform = AllAugmentationTransform(flip_param={'horizontal_flip': True})
    outcomes = set()
    for seed in range(20):
        out = transform(clip, seed)
        if np.array_equal(out[0], clip[0]):
            np.testing.assert_array_equal(out[1], clip[1])
            outcomes.add('same')
        else:
            np.testing.assert_array_equal(out[0], clip[0][:, ::-1])
            np.testing.assert_array_equal(out[1], clip[1][:, ::-1])
            outcomes.add('flipped')
    assert outcomes == {'same', 'flipped'}


def test_time_flip_swaps_frame_order():
    clip = _clip()
    transform = AllAugmentationTransform(flip_param={'time_flip': True})
    orders = set()
    for seed in range(20):
        out = transform(clip, seed)
        if np.array_equal(out[0], clip[1]) and np.array_equal(out[1], clip[0]):
            orders.add('reversed')
        else:
            np.testing.assert_array_equal(out[0], clip[0])
            np.testing.assert_array_equal(out[1], clip[1])
            orders.add('kept')
    assert orders == {'kept', 'reversed'}


def test_jitter_applies_the_same_change_to_every_frame():
    frame = _clip()[0]
    out = AllAugmentationTransform(jitter_param={'brightness': 0.3, 'hue': 0.2})([frame, frame.copy()], 1)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], frame)


def test_crop_pads_small_frames_and_resize_changes_size():
    clip = _clip()
    out = AllAugmentationTransform(crop_param={'size': 20})(clip, 0)
    assert out[0].shape == (20, 20, 3)
    out = AllAugmentationTransform(resize_param={'ratio': [2.0, 2.0]})(clip, 0)
    assert out[0].shape == (32, 32, 3) and out[0].dtype == np.float32


def test_forked_loader_worker_decodes_after_the_parent_did(tmp_path):
    """A DataLoader worker is a fork: nothing the parent's decoding set up may leave it waiting forever."""
    path = write_video(str(tmp_path / 'clip'), make_frames(0), 'mp4')
    expected = read_frames(path, [4], None)                  # the parent decodes (and converts) first
    context = torch.multiprocessing.get_context('fork')
    queue = context.SimpleQueue()
    worker = context.Process(target=lambda: queue.put(read_frames(path, [4], None)))
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():
        worker.kill()
        pytest.fail('the forked worker hung')
    np.testing.assert_array_equal(queue.get(), expected)


def test_folder_frames_in_natural_order(tmp_path):
    frames = make_frames(0, num_frames=12)
    folder = tmp_path / 'v'
    folder.mkdir()
    for t, frame in enumerate(frames):
        iio.imwrite(folder / f'frame{t}.png', frame)           # not zero-padded: frame10 after frame9
    np.testing.assert_allclose(read_frames(str(folder), None, None), frames / 255.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Frame sizes, checked when the data set is built


@pytest.mark.parametrize('fmt', ['folder', 'mp4', 'strip'])
def test_mixed_sizes_without_frame_shape_are_refused_up_front(tmp_path, fmt):
    """TPSMM's configs use frames as stored (frame_shape: null); clips of several sizes crashed
    inside the DataLoader (torch.stack) minutes into training. Now the data set refuses them when
    it is built, naming the setting to set."""
    for split, name, size in (('train', 'a#1', 16), ('train', 'b#1', 16), ('train', 'c#1', 20), ('test', 'd#1', 16)):
        os.makedirs(tmp_path / split, exist_ok=True)
        write_video(str(tmp_path / split / name), make_frames(1, height=size, width=size), fmt)
    with pytest.raises(ValueError) as err:
        FramesDataset(str(tmp_path), frame_shape=None, is_train=True)
    message = str(err.value)
    assert '16x16 (2 videos' in message and '20x20 (1 video' in message
    assert 'dataset_params.frame_shape: [16, 16, 3]' in message
    # with frame_shape, or a crop to a fixed size (MGIF's configs), the same data set is fine
    assert len(FramesDataset(str(tmp_path), frame_shape=(16, 16, 3), is_train=True)) == 3
    cropped = FramesDataset(str(tmp_path), frame_shape=None, is_train=True,
                            augmentation_params={'crop_param': {'size': [12, 12]}})
    assert cropped[2]['source'].shape == (3, 12, 12)
    assert len(FramesDataset(str(tmp_path), frame_shape=None, is_train=False)) == 1   # test videos go one by one


def test_resizing_to_frame_shape_is_said_once(tmp_path, caplog):
    make_split(str(tmp_path), 'folder')
    with caplog.at_level(logging.INFO, logger='frames_dataset'):
        FramesDataset(str(tmp_path), frame_shape=(16, 16, 3), is_train=True)
        assert 'resized' not in caplog.text
        FramesDataset(str(tmp_path), frame_shape=(32, 32, 3), is_train=True)
    lines = [r for r in caplog.records if 'resized on load' in r.getMessage()]
    assert len(lines) == 1 and '32x32' in lines[0].getMessage() and '16x16 (2 videos' in lines[0].getMessage()


def test_truncated_mp4_in_training_is_said_once_per_file(tmp_path, caplog):
    """A cut-off mp4 trains as a clip of the frames that decode (demo.py refuses it): said once per
    file, also across DataLoader workers (a forked worker sees the parent's note)."""
    import subprocess

    from conftest import ffmpeg_exe
    full = tmp_path / 'full.mp4'
    subprocess.run([ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi',
                    '-i', 'testsrc=size=32x32:rate=25:duration=2', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-g', '5',
                    '-movflags', '+faststart', str(full)], check=True)   # index first: the start stays decodable
    for split in ('train', 'test'):
        (tmp_path / split).mkdir()
    data = full.read_bytes()
    (tmp_path / 'train' / 'cut.mp4').write_bytes(data[:int(len(data) * 0.6)])
    full.unlink()
    write_video(str(tmp_path / 'train' / 'good'), make_frames(0, height=32, width=32), 'mp4')
    write_video(str(tmp_path / 'test' / 'other'), make_frames(1, height=32, width=32), 'mp4')
    train = FramesDataset(str(tmp_path), frame_shape=(32, 32, 3))
    train.seed(0)
    assert train.videos == ['cut.mp4', 'good.mp4']
    with caplog.at_level(logging.WARNING, logger='frames_dataset'):
        for _ in range(3):
            assert train[0]['name'] == 'cut.mp4'
            train[1]
    notes = [r.getMessage() for r in caplog.records if 'cut.mp4' in r.getMessage()]
    assert len(notes) == 1 and 'truncated' in notes[0] and 'frames that decode' in notes[0]
    assert not [r for r in caplog.records if 'good.mp4' in r.getMessage()]

    context = torch.multiprocessing.get_context('fork')
    queue = context.SimpleQueue()

    def worker():
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger('frames_dataset').addHandler(handler)
        train._probe_cache.clear()        # a worker's first look at the file
        train[0]
        queue.put(len([r for r in records if 'cut.mp4' in r.getMessage()]))
    process = context.Process(target=worker)
    process.start()
    process.join(timeout=120)
    assert queue.get() == 0
