"""Video data sets for keypoint-based image animation (FOMM, TPSMM).

`FramesDataset` keeps the reference data semantics (the same config keys, the same split rules,
the same item dictionaries) but reads far less data: a training item needs two frames, so only
those two are decoded (two files of a frame folder, two tiles of a strip image, and for video
files each frame from the keyframe before it, skipping the frames nothing refers to).

Video formats, each giving float32 (H, W, 3) frames in [0, 1] (grayscale -> RGB, alpha dropped),
all read through `media` (PyAV for video files):

* a folder of image files, frames in natural name order (`2.png` before `10.png`);
* a single .png/.jpg "strip" with the frames side by side, each `frame_shape` wide;
* .mp4/.mov/.avi/.mkv/.webm and .gif files (rotation metadata applied, as players do).

Layouts: `root_dir/train` + `root_dir/test` when they exist, otherwise a seeded 80/20 random
split of the entries of `root_dir` (the same permutation sklearn's `train_test_split` makes).
Names starting with '.' are ignored, which keeps half-written temporary outputs out.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from skimage.transform import resize as sk_resize
from skimage.util import img_as_float32
from torch.utils.data import Dataset

import media
from augmentation import AllAugmentationTransform, RandomCrop, UnknownKeyError, check_param_keys
from media import MediaError

__all__ = [
    'DATASET_PARAM_KEYS',
    'DatasetRepeater',
    'FramesDataset',
    'PairedDataset',
    'UnknownKeyError',
    'VideoReadError',
    'VideoSplit',
    'build_dataset',
    'count_frames',
    'list_videos',
    'read_frames',
    'split_videos',
    'to_float_rgb',
]

logger = logging.getLogger(__name__)

FRAME_EXTENSIONS = media.IMAGE_EXTENSIONS
STRIP_EXTENSIONS = ('.png', '.jpg', '.jpeg')
VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.gif')
VIDEO_FILE_EXTENSIONS = STRIP_EXTENSIONS + VIDEO_EXTENSIONS

# Consecutive undecodable training videos tolerated before giving up: one bad file among
# thousands should not stop an epoch, but a data set where nothing decodes must fail loudly.
MAX_DECODE_ATTEMPTS = 10

# The keys a config's `dataset_params` may hold (`is_train` is chosen by the caller instead).
DATASET_PARAM_KEYS = ('root_dir', 'frame_shape', 'id_sampling', 'random_seed', 'pairs_list', 'augmentation_params')

FrameShape = tuple[int, int, int]


class VideoReadError(RuntimeError):
    """A video could not be decoded. `path` names the file so the message and logs point at it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f'cannot read video {path!r}: {reason}')
        self.path = path


# --------------------------------------------------------------------------------------------
# Frame conversion


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """Convert any decoded image to float32 (H, W, 3) in [0, 1].

    Grayscale is repeated to RGB and an alpha channel dropped, because the networks expect
    exactly three colour channels whatever the source files hold.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f'expected an (H, W), (H, W, 1|2|3|4) image, got shape {image.shape}')
    if image.shape[2] in (2, 4):  # gray+alpha or RGBA: drop alpha
        image = image[:, :, :-1]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.clip(img_as_float32(image), 0.0, 1.0)


def fit_frame(frame: np.ndarray, frame_shape: FrameShape | None) -> np.ndarray:
    """Resize a float32 (H, W, 3) frame to `frame_shape[:2]` (anti-aliased) unless it already fits.

    `frame_shape` None (TPSMM configs) means "keep the native size".
    """
    if frame_shape is None or frame.shape[:2] == tuple(frame_shape[:2]):
        return frame
    return sk_resize(frame, frame_shape[:2], order=1, anti_aliasing=True).astype(np.float32)


def _normalise_frame_shape(frame_shape: Sequence[int] | None) -> FrameShape | None:
    """Validate a config's `frame_shape` ([H, W] or [H, W, 3] or null) and return (H, W, 3)."""
    if frame_shape is None:
        return None
    shape = tuple(frame_shape)
    if len(shape) not in (2, 3) or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f'frame_shape must be [height, width, 3] of positive ints or null, got {frame_shape!r}')
    if len(shape) == 3 and shape[2] != 3:
        raise ValueError(f'frame_shape must have 3 channels (frames are RGB), got {frame_shape!r}')
    return int(shape[0]), int(shape[1]), 3


# --------------------------------------------------------------------------------------------
# Readers: count frames cheaply, decode only the frames asked for (media does the decoding).


def _video_kind(path: str) -> str:
    """Classify `path` as 'folder', 'strip' or 'video' (the reader it needs)."""
    if os.path.isdir(path):
        return 'folder'
    ext = os.path.splitext(path)[1].lower()
    if ext in STRIP_EXTENSIONS:
        return 'strip'
    if ext in VIDEO_EXTENSIONS:
        return 'video'
    raise VideoReadError(path, f'unsupported video format {ext!r} (expected a folder of frames or one of '
                               f'{", ".join(VIDEO_FILE_EXTENSIONS)})')


def _strip_tile_width(path: str, height: int, width: int, frame_shape: FrameShape | None) -> int:
    """Width of one frame inside a strip image of size (height, width).

    With `frame_shape` the tiles have its aspect ratio (exactly `frame_shape[1]` wide when the
    strip is `frame_shape[0]` high); without it tiles are assumed square.
    """
    if frame_shape is None:
        tile = height
    else:
        exact = height * frame_shape[1] / frame_shape[0]
        tile = round(exact)
        if abs(exact - tile) > 1e-6:
            raise VideoReadError(path, f'strip height {height} does not give whole tiles of aspect '
                                       f'{frame_shape[0]}x{frame_shape[1]}')
    if tile <= 0 or width % tile:
        raise VideoReadError(path, f'strip width {width} is not a multiple of the frame width {tile} '
                                   f'(frames must be stacked side by side; check frame_shape)')
    return tile


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """Turn any decoding failure into a VideoReadError naming `path`."""
    try:
        yield
    except VideoReadError:
        raise
    except MediaError as err:
        raise VideoReadError(path, err.reason or str(err)) from err
    except Exception as err:  # decoders raise many types (OSError, RuntimeError, ValueError...)
        raise VideoReadError(path, f'{type(err).__name__}: {err}') from err


def count_frames(path: str, frame_shape: FrameShape | None = None, cache: dict[str, Any] | None = None) -> int:
    """Number of frames of the video at `path`.

    Folders are counted from their listing, strips from their width, video files from their packets
    (one pass that reads but does not decode the file; media keeps the result per file).
    `cache` (one dict per data set) keeps the counts. Raises VideoReadError for unreadable files.
    """
    if cache is not None and path in cache:
        return cache[path]
    kind = _video_kind(path)
    with _reading(path):
        if kind == 'strip':
            height, width = media.read_image(path).shape[:2]
            n = width // _strip_tile_width(path, height, width, frame_shape)
        else:
            n = media.count_frames(path)
    if cache is not None:
        cache[path] = n
    return n


def _read_raw(path: str, kind: str, indices: Sequence[int] | None,
              frame_shape: FrameShape | None) -> dict[int, np.ndarray]:
    """Decoded (not yet converted) frames of `path` keyed by index; all frames when `indices` is None."""
    if kind == 'strip':
        image = media.read_image(path)  # (H, n*W, 3); a PNG cannot be partially decoded
        tile = _strip_tile_width(path, image.shape[0], image.shape[1], frame_shape)
        count = image.shape[1] // tile
        chosen = range(count) if indices is None else sorted(i for i in set(indices) if i < count)
        return {i: image[:, i * tile:(i + 1) * tile] for i in chosen}
    if indices is None and kind == 'video':
        return dict(enumerate(media.VideoReader(path, strict=True)))
    if indices is None:
        indices = range(len(media.list_frame_files(path)))
    try:
        return media.read_frames(path, indices)
    except IndexError:
        return {}  # reported with the frame count by read_frames below


def read_frames(path: str, indices: Sequence[int] | None = None, frame_shape: FrameShape | None = None,
                cache: dict[str, Any] | None = None) -> np.ndarray:
    """Read frames `indices` (any order, repeats allowed; None = all) of the video at `path`.

    Returns float32 (len(indices) or T, H, W, 3) in [0, 1], resized to `frame_shape` when given.
    Only the requested frames are decoded (see module docstring). Raises VideoReadError naming
    the file on any decoding problem, including an index past the end. `cache` is the same
    per-data-set dict as for `count_frames`.
    """
    kind = _video_kind(path)
    if indices is not None:
        indices = [int(i) for i in indices]
        if not indices or any(i < 0 for i in indices):
            raise ValueError(f'frame indices must be a non-empty list of ints >= 0 (or None for all), got {indices}')
    with _reading(path):
        raw = _read_raw(path, kind, indices, frame_shape)
        converted = {i: fit_frame(to_float_rgb(frame), frame_shape) for i, frame in raw.items()}
    order = sorted(converted) if indices is None else indices
    if not order:
        raise VideoReadError(path, 'the video has no frames')
    missing = sorted(set(i for i in order if i not in converted))
    if missing:
        raise VideoReadError(path, f'frame(s) {missing} requested but the video has only '
                                   f'{count_frames(path, frame_shape, cache)} frames')
    shapes = {f.shape for f in converted.values()}
    if len(shapes) > 1:
        raise VideoReadError(path, f'frames have different sizes {sorted(shapes)}; set frame_shape to resize them')
    return np.stack([converted[i] for i in order])  # (K, H, W, 3)


def frame_size(path: str, frame_shape: FrameShape | None = None) -> tuple[int, int]:
    """(height, width) of the frames of the video at `path` as stored (one frame decoded)."""
    kind = _video_kind(path)
    with _reading(path):
        if kind == 'strip':
            height, width = media.read_image(path).shape[:2]
            return height, _strip_tile_width(path, height, width, frame_shape)
        with media.VideoReader(path) as reader:
            width, height = reader.size
        return height, width


def survey_frame_sizes(paths: Sequence[str], frame_shape: FrameShape | None = None,
                       desc: str = 'frame sizes') -> dict[tuple[int, int], list[str]]:
    """{(height, width): paths} over `paths`, read on a few threads (opening files waits on the
    disk more than on the CPU); videos that cannot be read are left out (training reports and
    skips them)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    def size_of(path: str) -> tuple[int, int] | None:
        try:
            return frame_size(path, frame_shape)
        except (VideoReadError, MediaError):
            return None

    sizes: dict[tuple[int, int], list[str]] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = tqdm(pool.map(size_of, paths), total=len(paths), desc=desc, unit='video', leave=False,
                     disable=len(paths) < 200 or None)
        for path, size in zip(paths, found):
            if size is not None:
                sizes.setdefault(size, []).append(path)
    return sizes


def describe_sizes(sizes: Mapping[tuple[int, int], list[str]]) -> str:
    """'384x384 (120 videos, e.g. a.mp4), 412x410 (3 videos, e.g. b.mp4)', most common first."""
    ranked = sorted(sizes.items(), key=lambda item: -len(item[1]))
    return ', '.join(f'{h}x{w} ({len(p)} video{"s" * (len(p) > 1)}, e.g. {os.path.basename(p[0])})'
                     for (h, w), p in ranked)


# --------------------------------------------------------------------------------------------
# Listing and splitting


def list_videos(folder: str) -> list[str]:
    """Video entries of `folder`, sorted: sub-folders and supported video files.

    Hidden names (starting with '.') are skipped, so temporary '.name.part' outputs of an
    interrupted writer never become training data. Other files are skipped with one warning.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'data folder {folder!r} does not exist')
    videos, ignored = [], []
    for name in sorted(os.listdir(folder)):
        if name.startswith('.'):
            continue
        full = os.path.join(folder, name)
        if os.path.isdir(full) or os.path.splitext(name)[1].lower() in VIDEO_FILE_EXTENSIONS:
            videos.append(name)
        else:
            ignored.append(name)
    if ignored:
        logger.warning('ignoring %d non-video file(s) in %s: %s', len(ignored), folder, ', '.join(ignored[:5]))
    if not videos:
        raise ValueError(f'no videos found in {folder!r} (expected folders of frames or '
                         f'{", ".join(VIDEO_FILE_EXTENSIONS)} files)')
    return videos


@dataclass(frozen=True)
class VideoSplit:
    """Where the train and test videos live and their entry names."""

    train_dir: str
    train: list[str]
    test_dir: str
    test: list[str]


def split_videos(root_dir: str, random_seed: int = 0, test_fraction: float = 0.2) -> VideoSplit:
    """Use `root_dir/train` and `root_dir/test` when present, else split `root_dir` at random.

    The random split reproduces sklearn's `train_test_split(videos, test_size=0.2,
    random_state=seed)`: the first ceil(0.2 n) entries of a RandomState(seed) permutation are the
    test set, the rest the training set (entries are sorted first, so the split is reproducible
    across machines, which the reference's unsorted listing was not).
    """
    if not os.path.isdir(root_dir):
        raise FileNotFoundError(f'root_dir {root_dir!r} does not exist or is not a folder')
    train_dir, test_dir = os.path.join(root_dir, 'train'), os.path.join(root_dir, 'test')
    has_train, has_test = os.path.isdir(train_dir), os.path.isdir(test_dir)
    if has_train or has_test:
        if not (has_train and has_test):
            missing = test_dir if has_train else train_dir
            raise FileNotFoundError(f'{root_dir!r} has a {"train" if has_train else "test"}/ folder but no '
                                    f'{missing!r}; create both, or neither for a random 80/20 split')
        return VideoSplit(train_dir, list_videos(train_dir), test_dir, list_videos(test_dir))
    videos = list_videos(root_dir)
    n_test = math.ceil(test_fraction * len(videos))
    if len(videos) < 2 or n_test >= len(videos):
        raise ValueError(f'{root_dir!r} holds {len(videos)} video(s): too few for a random train/test split; '
                         f'add videos or create train/ and test/ folders')
    permutation = np.random.RandomState(random_seed).permutation(len(videos))
    test = [videos[i] for i in permutation[:n_test]]
    train = [videos[i] for i in permutation[n_test:]]
    return VideoSplit(root_dir, train, root_dir, test)


def _group_by_id(names: Sequence[str], folder: str) -> dict[str, list[str]]:
    """Map VoxCeleb-style ids (the part before '#') to their video names."""
    groups: dict[str, list[str]] = {}
    for name in names:
        if '#' not in name:
            raise ValueError(f'id_sampling is on but {name!r} in {folder!r} has no "#": video names must follow '
                             f'the pattern "<id>#<rest>" (e.g. "id10001#clip#001.mp4"), or set id_sampling: False')
        groups.setdefault(name.split('#', 1)[0], []).append(name)
    return groups


# --------------------------------------------------------------------------------------------
# Data sets


class FramesDataset(Dataset):
    """Videos of a folder, as pairs of frames (training) or whole videos (testing).

    Train item: {'source': float32 (3, H, W), 'driving': float32 (3, H, W), 'name': str}, two
    frames drawn with replacement, source not after driving, augmented jointly. Test item:
    {'video': float32 (3, T, H, W), 'name': str}. With `id_sampling` the training set is indexed
    by identity (the part of the name before '#') and each item uses a random video of it, so
    identities with many videos are not over-represented.

    Randomness comes from a per-process numpy Generator seeded from `torch.initial_seed()`,
    which differs between DataLoader workers and epochs (the reference's global numpy state is
    copied into every worker, so workers drew the same frames). Call `seed()` to fix it.
    """

    def __init__(self, root_dir: str, frame_shape: Sequence[int] | None = (256, 256, 3), id_sampling: bool = False,
                 is_train: bool = True, random_seed: int = 0, pairs_list: str | None = None,
                 augmentation_params: Mapping[str, Any] | None = None, **unknown: Any) -> None:
        if unknown:
            check_param_keys(unknown, DATASET_PARAM_KEYS + ('is_train',), 'FramesDataset arguments')
        self.frame_shape = _normalise_frame_shape(frame_shape)
        self.id_sampling = bool(id_sampling)
        self.is_train = bool(is_train)
        self.pairs_list = pairs_list
        split = split_videos(root_dir, random_seed)
        self.root_dir = split.train_dir if self.is_train else split.test_dir
        names = split.train if self.is_train else split.test
        self._videos_by_id: dict[str, list[str]] | None = None
        if self.is_train and self.id_sampling:
            self._videos_by_id = _group_by_id(names, self.root_dir)
            self.videos = sorted(self._videos_by_id)  # identities
        else:
            self.videos = list(names)
        self.transform = (AllAugmentationTransform.from_params(augmentation_params)
                          if self.is_train and augmentation_params is not None else None)
        self._probe_cache: dict[str, int] = {}  # path -> frame count
        self._warned: set[str] = set()
        self._rng: np.random.Generator | None = None
        self._rng_pid: int | None = None
        if self.is_train:
            self._check_frame_sizes()
            # One flag per video file, in shared memory so DataLoader workers see each other's.
            self._slots = {path: i for i, path in enumerate(self._video_paths())}
            self._noted = torch.zeros(len(self._slots), dtype=torch.uint8).share_memory_()

    def _video_paths(self) -> list[str]:
        names = self.videos if self._videos_by_id is None else \
            [n for group in self._videos_by_id.values() for n in group]
        return [os.path.join(self.root_dir, n) for n in names]

    def _check_frame_sizes(self) -> None:
        """Before training: frames are batched, so they must come out at one size.

        With `frame_shape` every frame is resized to it; a sample of the videos tells whether that
        happens, said once. Without (TPSMM's configs: frames used as stored) every video is
        surveyed, and a data set of several sizes is refused naming the setting to set (it would
        otherwise fail inside the DataLoader, minutes into training), unless the augmentation
        crops to a fixed size as MGIF's configs do."""
        paths = self._video_paths()
        if self.frame_shape is not None:
            sample = paths[::max(1, len(paths) // 16)][:16]
            other = {s: p for s, p in survey_frame_sizes(sample, self.frame_shape).items()
                     if s != self.frame_shape[:2]}
            if other:
                logger.info('%s: frames are resized on load to dataset_params.frame_shape %dx%d; stored sizes seen in '
                            'a sample of %d videos: %s', self.root_dir, *self.frame_shape[:2], len(sample),
                            describe_sizes(other))
            return
        if self.transform is not None and any(isinstance(t, RandomCrop) for t in self.transform.transforms):
            return
        sizes = survey_frame_sizes(paths, desc='checking frame sizes')
        if len(sizes) > 1:
            (h, w), _ = max(sizes.items(), key=lambda item: len(item[1]))
            raise ValueError(f'{self.root_dir}: the training videos have different frame sizes ({describe_sizes(sizes)}) '
                             f'and dataset_params.frame_shape is null (frames used as stored), so they cannot be '
                             f'batched; set dataset_params.frame_shape: [{h}, {w}, 3] to resize every frame on load, '
                             f'or store the videos at one size (crop_video.py --image_shape)')

    def __len__(self) -> int:
        return len(self.videos)

    def seed(self, seed: int) -> None:
        """Make this process's future frame sampling and augmentation reproducible."""
        self._rng = np.random.default_rng(seed)
        self._rng_pid = os.getpid()

    def _generator(self) -> np.random.Generator:
        """This process's Generator; a forked DataLoader worker makes its own from its torch seed."""
        if self._rng is None or self._rng_pid != os.getpid():
            self.seed(torch.initial_seed())
        assert self._rng is not None
        return self._rng

    def _pick_video(self, index: int, rng: np.random.Generator) -> tuple[str, str]:
        """(path, name) of the video behind training index `index`."""
        if self._videos_by_id is None:
            name = self.videos[index]
        else:
            candidates = self._videos_by_id[self.videos[index]]
            name = candidates[int(rng.integers(len(candidates)))]
        return os.path.join(self.root_dir, name), name

    def _note_damage(self, path: str, num_frames: int) -> None:
        """Say once per file (across workers) that a video file is cut off or damaged: training uses
        the frames that decode, where demo.py refuses the file."""
        slot = self._slots.get(path)
        if slot is None or self._noted[slot] or _video_kind(path) != 'video':
            return
        reason = media.damage(path)
        if reason is not None:
            self._noted[slot] = 1
            logger.warning('training video %s: %s; it is used as a clip of the %d frames that decode (demo.py '
                           'refuses such a file; re-encode or remove it)', path, reason, num_frames)

    def _train_item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        path, name = self._pick_video(index, rng)
        first_use = path not in self._probe_cache
        num_frames = count_frames(path, self.frame_shape, self._probe_cache)
        if first_use:
            self._note_damage(path, num_frames)
        if num_frames < 1:
            raise VideoReadError(path, 'the video has no frames')
        frame_idx = np.sort(rng.choice(num_frames, size=2, replace=True))
        try:
            frames = list(read_frames(path, frame_idx, self.frame_shape, self._probe_cache))  # 2 x (H, W, 3)
        except VideoReadError:
            self._probe_cache.pop(path, None)  # a stale count must not fail this video forever
            raise
        if self.transform is not None:
            frames = self.transform(frames, rng)
        source, driving = frames
        return {'source': _to_chw(source), 'driving': _to_chw(driving), 'name': name}

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not self.is_train:
            name = self.videos[idx]
            path = os.path.join(self.root_dir, name)
            video = read_frames(path, None, self.frame_shape, self._probe_cache)  # (T, H, W, 3)
            return {'video': np.ascontiguousarray(video.transpose(3, 0, 1, 2)), 'name': name}

        rng = self._generator()
        failed: list[str] = []
        index = int(idx)
        for _ in range(MAX_DECODE_ATTEMPTS):
            try:
                return self._train_item(index, rng)
            except VideoReadError as err:
                failed.append(os.path.basename(err.path))
                if err.path not in self._warned:
                    self._warned.add(err.path)
                    logger.warning('skipping undecodable training video (will not warn again for it): %s', err)
                index = int(rng.integers(len(self)))
        raise RuntimeError(f'{MAX_DECODE_ATTEMPTS} training videos in a row could not be decoded in '
                           f'{self.root_dir!r}: {", ".join(failed)}')


def _to_chw(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> contiguous float32 (3, H, W), the layout the networks take."""
    return np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32)


class DatasetRepeater(Dataset):
    """Present a data set `num_repeats` times per epoch (item i is item i % len of the original).

    With id_sampling an "epoch" is one item per identity, far too short for a useful epoch; the
    repeat makes checkpoints and learning-rate milestones land at sensible intervals.
    """

    def __init__(self, dataset: Dataset, num_repeats: int = 100) -> None:
        if int(num_repeats) < 1:
            raise ValueError(f'num_repeats must be >= 1, got {num_repeats}')
        self.dataset = dataset
        self.num_repeats = int(num_repeats)

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[idx % len(self.dataset)]


class PairedDataset(Dataset):
    """(driving video, source video) pairs for cross-identity animation evaluation.

    Without a `pairs_list` csv on the initial data set: `min(number_of_pairs, n*n)` distinct
    pairs drawn (seeded) from the grid over the first `n = min(number_of_pairs, len)` videos.
    With one: the csv's rows (columns `source`, `driving`) whose two names are videos of the data
    set, in file order, at most `number_of_pairs`. Items merge both test items with key prefixes
    'driving_' and 'source_'.
    """

    def __init__(self, initial_dataset: Dataset, number_of_pairs: int, seed: int = 0) -> None:
        self.initial_dataset = initial_dataset
        pairs_list = getattr(initial_dataset, 'pairs_list', None)
        if pairs_list is None:
            self.pairs = _random_pairs(len(initial_dataset), number_of_pairs, seed)
        else:
            self.pairs = _pairs_from_csv(pairs_list, list(initial_dataset.videos), number_of_pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        driving_index, source_index = self.pairs[idx]
        driving = self.initial_dataset[driving_index]
        source = self.initial_dataset[source_index]
        return {**{'driving_' + k: v for k, v in driving.items()}, **{'source_' + k: v for k, v in source.items()}}


def _random_pairs(num_videos: int, number_of_pairs: int, seed: int) -> list[tuple[int, int]]:
    """Seeded distinct (driving, source) index pairs; same draw as the reference's np.random.seed."""
    side = min(number_of_pairs, num_videos)
    grid = np.mgrid[:side, :side].reshape(2, -1).T  # (side*side, 2): (driving, source)
    count = min(len(grid), number_of_pairs)
    chosen = grid.take(np.random.RandomState(seed).choice(len(grid), count, replace=False), axis=0)
    return [(int(d), int(s)) for d, s in chosen]


def _pairs_from_csv(path: str, videos: list[str], number_of_pairs: int) -> list[tuple[int, int]]:
    """(driving, source) index pairs from a csv with `source` and `driving` columns."""
    index_of = {name: i for i, name in enumerate(videos)}
    pairs: list[tuple[int, int]] = []
    with open(path, newline='') as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if 'source' not in columns or 'driving' not in columns:
            raise ValueError(f'pairs list {path!r} needs "source" and "driving" columns, found {columns}')
        for row in reader:
            row = {k.strip(): (v or '').strip() for k, v in row.items() if k is not None}
            if row['source'] in index_of and row['driving'] in index_of:
                pairs.append((index_of[row['driving']], index_of[row['source']]))
                if len(pairs) >= number_of_pairs:
                    break
    return pairs


def build_dataset(dataset_params: Mapping[str, Any], is_train: bool) -> FramesDataset:
    """Build a FramesDataset from a config's `dataset_params`, rejecting unknown keys up front."""
    params = check_param_keys(dataset_params, DATASET_PARAM_KEYS, 'dataset_params')
    if 'root_dir' not in params:
        raise ValueError('dataset_params needs a "root_dir" (the folder holding the videos)')
    return FramesDataset(is_train=is_train, **params)

