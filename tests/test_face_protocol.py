"""The face metrics as pose-evaluation computes them (AKD: cmp_kp.py, AED: cmp.py, the face
extract.py scores), what face-alignment is handed in each use (metrics, best frame, crop), the
8-bit truncation of the reconstruction and animate-mode strips, and evaluate.py giving the
numbers of run.py --mode reconstruction on its own output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / 'shared' / 'samples'
CLIP, PHOTO = SAMPLES / 'face-driving.mp4', SAMPLES / 'face-source.png'
NO_SAMPLES = f'the real samples are not at {SAMPLES}'

from faces.backend import Face, FaceBackend  # noqa: E402
from faces.metrics import FaceMetrics, analyse_frame, keypoint_distance, keypoint_distance_euclidean  # noqa: E402


def shifted(frames: np.ndarray, dx: int) -> np.ndarray:
    """Content moved `dx` pixels right (the left columns repeat the edge); (T, H, W, 3)."""
    out = np.roll(frames, dx, axis=2)
    out[:, :, :dx] = frames[:, :, :1]
    return out


@pytest.fixture(scope='module')
def dlib_backend():
    pytest.importorskip('dlib', reason='the dlib backend needs dlib-bin (requirements.txt)')
    from faces import load_backend
    return load_backend('dlib', say=lambda message: None)


@pytest.fixture(scope='module')
def clip():
    """uint8 (169, 412, 410, 3): the real talking-head clip."""
    if not CLIP.is_file():
        pytest.skip(NO_SAMPLES)
    from media import VideoReader
    return np.stack(list(VideoReader(str(CLIP))))


@pytest.fixture(scope='module')
def clip256(clip):
    from faces.metrics import protocol_frame
    return np.stack([protocol_frame(f) for f in clip[[0, 30, 60, 90, 120]]])


# ----------------------------------------------------------------------------------------------
# The formulas
# ----------------------------------------------------------------------------------------------

def test_keypoint_distance_is_the_mean_absolute_coordinate_difference():
    points = np.random.default_rng(0).uniform(0, 256, (68, 2))
    assert keypoint_distance(points, points + [6, 0]) == pytest.approx(3.0)      # cmp_kp.py: mean over 68x2
    assert keypoint_distance(points, points + [3, -4]) == pytest.approx(3.5)
    assert keypoint_distance_euclidean(points, points + [3, -4]) == pytest.approx(5.0)


def test_akd_of_a_6_pixel_shift_of_the_real_clip(dlib_backend, clip256):
    """cmp_kp.py's AKD of content moved 6 px sideways is about 3 (the y coordinates hardly move);
    the Euclidean form beside it about 6."""
    scores = FaceMetrics(dlib_backend, identity=False).score_video('shift', clip256, shifted(clip256, 6))
    assert 2.5 < scores['akd'] < 3.6, scores
    assert 5.0 < scores['akd_euclidean'] < 7.2, scores
    assert scores['akd_missing'] == 0.0 and scores['frames'] == 5 and scores['aed_missing'] is None


def test_aed_of_another_person_is_the_squared_l2_distance(dlib_backend, clip256):
    """cmp.py's AED: per frame the sum of squared embedding differences, averaged. The sample
    portrait is another person: above dlib's same-person threshold (0.6 Euclidean, 0.36 squared);
    two frames of the clip (one person) below it."""
    if not PHOTO.is_file():
        pytest.skip(NO_SAMPLES)
    from faces.metrics import protocol_frame
    from media import load_image
    photo = protocol_frame(np.rint(load_image(str(PHOTO)) * 255).astype(np.uint8))
    real = clip256[[0, 2, 4]]
    scores = FaceMetrics(dlib_backend).score_video('other', real, np.stack([photo] * 3))
    e_photo = analyse_frame(dlib_backend, photo).embedding
    embeddings = [analyse_frame(dlib_backend, frame).embedding for frame in real]
    squared = [float(np.sum((e - e_photo) ** 2)) for e in embeddings]
    assert scores['aed'] == pytest.approx(np.mean(squared), rel=1e-9)
    assert scores['aed_l2'] == pytest.approx(np.mean(np.sqrt(squared)), rel=1e-9)
    assert scores['aed_mean_abs'] == pytest.approx(np.mean([np.abs(e - e_photo).mean() for e in embeddings]), rel=1e-9)
    assert scores['aed'] > 0.36 and scores['aed_missing'] == 0.0
    same = FaceMetrics(dlib_backend).score_video('same', real[:1], real[1:2])
    assert same['aed'] < 0.36


class ScriptedBackend(FaceBackend):
    """Faces by frame: a frame's value at (0, 0, 0) picks its list of (box, score)."""
    name = 'scripted'
    description = 'scripted'

    def __init__(self, faces_by_value: dict[int, list[tuple[tuple, float]]]):
        self.faces_by_value = faces_by_value

    def detect_batch(self, frames):
        return [[Face(np.array(box, float), score) for box, score in self.faces_by_value[int(f[0, 0, 0])]]
                for f in frames]

    def landmarks(self, frame, box):
        return np.tile(np.asarray(box[:2], float), (68, 1))        # every point at the box's corner

    def embed(self, frame, landmarks):
        return np.full(4, landmarks[0, 0] / 100.0)


def test_frame_rules_first_face_and_missing_faces():
    """extract.py's face is get_landmarks(frame)[0], the detector's most confident face (not the
    largest); cmp_kp.py leaves out frames without a face on either side."""
    small_sure, large_unsure = ((10, 10, 50, 50), 0.99), ((100, 100, 250, 250), 0.6)
    backend = ScriptedBackend({1: [large_unsure, small_sure], 2: [((16, 10, 56, 50), 0.9)], 3: []})
    frame = {v: np.full((256, 256, 3), v, np.uint8) for v in (1, 2, 3)}
    real = [frame[1], frame[1], frame[3], frame[1]]
    fake = [frame[2], frame[3], frame[2], frame[1]]
    scores = FaceMetrics(backend).score_video('v', real, fake)
    # scored: frame 0 (corner (10, 10) against (16, 10): AKD 3, AKD-L2 6) and frame 3 (0)
    assert scores['frames'] == 4 and scores['frames_scored'] == 2
    assert scores['akd'] == pytest.approx(1.5) and scores['akd_euclidean'] == pytest.approx(3.0)
    assert scores['aed'] == pytest.approx(4 * 0.06 ** 2 / 2)
    assert scores['akd_missing'] == 0.5 and scores['aed_missing'] == 0.5
    assert scores['missing_face'] == pytest.approx(1 / 3) and scores['real_missing_face'] == 0.25


# ----------------------------------------------------------------------------------------------
# What face-alignment is handed (a fake model that records its calls)
# ----------------------------------------------------------------------------------------------

class FakeFaceAlignment:
    BOX = np.array([60.0, 50.0, 190.0, 210.0, 0.99])

    def __init__(self, landmarks_type, **kwargs):
        self.kwargs = kwargs
        self.flip_input = kwargs.get('flip_input', True)
        self.calls: list[tuple] = []
        fake = self

        class Detector:
            def detect_from_batch(self, tensor):
                fake.calls.append(('detect_from_batch', tensor.detach().clone()))
                return [[FakeFaceAlignment.BOX.copy()] for _ in range(tensor.shape[0])]

        self.face_detector = Detector()

    def get_landmarks_from_image(self, image, detected_faces=None, return_bboxes=False, return_landmark_score=False):
        self.calls.append(('get_landmarks', np.array(image, copy=True), self.flip_input, detected_faces))
        points = np.stack([np.linspace(70, 180, 68), np.linspace(60, 200, 68)], axis=1)
        if return_bboxes or return_landmark_score:
            return [points], None, [self.BOX.copy()]
        return [points]


@pytest.fixture
def fake_fa(monkeypatch):
    face_alignment = pytest.importorskip('face_alignment')
    from faces import backend as backend_module
    made = []

    def build(*args, **kwargs):
        made.append(FakeFaceAlignment(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(face_alignment, 'FaceAlignment', build)
    backend_module.forget_loaded()
    backend = backend_module.load_backend('face-alignment', say=lambda message: None)
    yield backend, made[0]
    backend_module.forget_loaded()


def coloured_frame(h: int = 256, w: int = 256) -> np.ndarray:
    """uint8 (h, w, 3) whose channels differ everywhere (R < G < B), so an order swap shows."""
    ramp = np.linspace(0, 50, w, dtype=np.float32)[None, :].repeat(h, 0)
    return np.stack([ramp + 10, ramp + 100, ramp + 200], axis=-1).astype(np.uint8)


def test_metrics_call_face_alignment_as_extract_py(fake_fa):
    """extract.py: fa.get_landmarks(frame)[0] on the RGB uint8 frame, flip_input=False, the
    library's own detection."""
    backend, fa = fake_fa
    frame = coloured_frame()
    face = analyse_frame(backend, frame, identity=False)
    (call,) = [c for c in fa.calls if c[0] == 'get_landmarks']
    _, image, flip, detected = call
    assert image.dtype == np.uint8 and np.array_equal(image, frame)       # RGB, as given
    assert flip is False and detected is None
    assert face.landmarks.shape == (68, 2)


def test_best_frame_calls_face_alignment_as_the_references(fake_fa):
    """Both references' find_best_frame: get_landmarks(255 * frame)[0] with flip_input=True on
    the float RGB frame."""
    from faces import landmark_function
    backend, fa = fake_fa
    image = coloured_frame(64, 64).astype(np.float32) / 255.0
    assert landmark_function(backend)(image).shape == (68, 2)
    (call,) = [c for c in fa.calls if c[0] == 'get_landmarks']
    _, given, flip, detected = call
    assert given.dtype.kind == 'f' and given.shape == (64, 64, 3)       # at its size: no enlarging
    np.testing.assert_allclose(given, image * 255.0, rtol=0, atol=1e-4)
    assert flip is True and detected is None


def test_crop_detection_hands_face_alignment_rgb(fake_fa):
    """crop-video.py handed SFD a BGR frame on face-alignment 1.0, which passed it on as is; since
    1.3 SFD reorders RGB to BGR itself, so the detector sees BGR when given RGB."""
    from faces.compose import crop_photo
    from faces.scan import scan_video
    backend, fa = fake_fa
    frame = coloured_frame()
    scan_video([frame, frame], backend, batch_size=2)
    crop_photo(frame, backend)
    batches = [c[1] for c in fa.calls if c[0] == 'detect_from_batch']
    assert len(batches) == 2
    expected = torch.from_numpy(frame).permute(2, 0, 1).float()         # (3, H, W), R first
    for batch in batches:
        for image in batch:
            assert torch.equal(image, expected)
    assert fa.kwargs['flip_input'] is False


# ----------------------------------------------------------------------------------------------
# Strips truncate; evaluate.py == reconstruction
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tps_checkpoint(tmp_path_factory):
    import modules
    torch.manual_seed(0)
    models = modules.build_models(tiny_config('tiny/tps'))
    path = tmp_path_factory.mktemp('ckpt') / 'tps.pth.tar'
    torch.save({k: m.state_dict() for k, m in models.items()}, path)
    return str(path)


def fixed_predictions(monkeypatch, make):
    """Animator.animate_batch returns make(driving) ((B, 3, H, W) -> same) instead of the model's output."""
    import animate

    def animate_batch(self, state, driving, full=False, background=False):
        pred = make(driving)
        return {'prediction': pred} if full else pred
    monkeypatch.setattr(animate.Animator, 'animate_batch', animate_batch)


def write_data(root: Path, frames: dict[str, np.ndarray]) -> None:
    from media import VideoWriter
    for name, video in frames.items():
        with VideoWriter(str(root / name), fps=25) as writer:
            writer.write(video)


LEVEL = 127.8 / 255        # truncates to 127, rounds to 128


def test_reconstruction_and_animate_strips_truncate(tmp_path, monkeypatch, tps_checkpoint):
    import animate
    import modules
    import reconstruction
    from frames_dataset import FramesDataset
    from media import load_image
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), np.uint8)
    for part in ('train', 'test'):
        (tmp_path / 'data' / part).mkdir(parents=True)
        write_data(tmp_path / 'data' / part, {f'{part}{k}.mp4': frames for k in range(2)})
    fixed_predictions(monkeypatch, lambda driving: torch.full_like(driving, LEVEL))
    config = tiny_config('tiny/tps')
    config['dataset_params'] = {'root_dir': str(tmp_path / 'data'), 'frame_shape': [64, 64, 3]}
    config['animate_params'] = {'num_pairs': 1, 'format': '.mp4', 'normalization_params': {'use_relative_movement': True}}
    dataset = FramesDataset(str(tmp_path / 'data'), frame_shape=(64, 64, 3), is_train=False)
    reconstruction.reconstruction(config, modules.build_models(config), dataset, str(tmp_path / 'log'), 'cpu',
                                  tps_checkpoint, akd=False, visualize=False)
    strip = np.rint(load_image(str(tmp_path / 'log' / 'reconstruction' / 'png' / 'test0.png')) * 255)
    assert strip.shape == (64, 3 * 64, 3) and (strip == 127).all()
    animate.animate_dataset(config, modules.build_models(config), str(tmp_path / 'log'), 'cpu', tps_checkpoint)
    (name,) = [p.name for p in (tmp_path / 'log' / 'animation' / 'png').iterdir()]
    strip = np.rint(load_image(str(tmp_path / 'log' / 'animation' / 'png' / name)) * 255)
    assert strip.shape == (64, 3 * 64, 3) and (strip == 127).all()


def test_evaluate_gives_the_numbers_of_reconstruction(tmp_path, monkeypatch, tps_checkpoint, clip, dlib_backend,
                                                      capsys):
    """The same reconstruction scored by run.py --mode reconstruction (metrics.json) and by
    evaluate.py on its png/ strips against the test videos: the same AKD, AED, missing shares and
    frame counts; L1 within the 8-bit rounding of the strips."""
    import evaluate
    import modules
    import reconstruction
    from frames_dataset import FramesDataset
    from media import resize_frame
    size = 64
    video = np.stack([resize_frame(f, (size, size)) for f in clip[:6:2]])    # uint8 (3, 64, 64, 3)
    for part in ('train', 'test'):
        (tmp_path / 'data' / part).mkdir(parents=True)
    write_data(tmp_path / 'data' / 'train', {'t.mp4': video})
    write_data(tmp_path / 'data' / 'test', {'a.mp4': video, 'b.mp4': video[::-1]})

    def reconstruct(driving):            # 1 px to the right; the last frame of each video grey (no face)
        out = torch.roll(driving, 1, dims=3)
        out[-1] = 0.5
        return out
    fixed_predictions(monkeypatch, reconstruct)
    config = tiny_config('tiny/tps')
    config['reconstruction_params'] = {'face_metrics': True}
    dataset = FramesDataset(str(tmp_path / 'data'), frame_shape=(size, size, 3), is_train=False)
    run = reconstruction.reconstruction(config, modules.build_models(config), dataset, str(tmp_path / 'log'), 'cpu',
                                        tps_checkpoint, visualize=False, face_backend='dlib')
    line = capsys.readouterr().out
    saved = json.loads((tmp_path / 'log' / 'reconstruction' / 'metrics.json').read_text())
    assert saved == json.loads(json.dumps(run))
    assert 'AKD ' in line and 'AED ' in line and '(missing 33.3%)' in line
    scores = evaluate.evaluate(str(tmp_path / 'data' / 'test'), str(tmp_path / 'log' / 'reconstruction' / 'png'),
                               'dlib')
    keys = ('akd', 'akd_euclidean', 'aed', 'aed_l2', 'aed_mean_abs', 'akd_missing', 'aed_missing', 'missing_face',
            'real_missing_face', 'frames', 'frames_scored', 'face_backend')
    assert saved['akd'] is not None and saved['aed'] is not None and saved['akd_missing'] == pytest.approx(1 / 3)
    assert {k: scores[k] for k in keys} == {k: saved[k] for k in keys}
    for name in ('a', 'b'):
        row, theirs = scores['per_video'][name], saved['face_per_video'][f'{name}.mp4']
        assert {k: row[k] for k in keys[:-1]} == {k: theirs[k] for k in keys[:-1]}
        assert row['l1'] == pytest.approx(saved['l1_per_video'][f'{name}.mp4'], abs=1 / 255)
    assert scores['l1'] == pytest.approx(saved['l1'], abs=1 / 255)


def test_evaluate_says_how_many_frames_it_scored(tmp_path, dlib_backend, clip256, capsys):
    import evaluate
    import imageio.v3 as iio
    (tmp_path / 'real').mkdir()
    (tmp_path / 'fake').mkdir()
    iio.imwrite(tmp_path / 'real' / 'a.png', np.concatenate(list(clip256[:4]), axis=1))
    iio.imwrite(tmp_path / 'fake' / 'a.png', np.concatenate(list(clip256[:2]), axis=1))
    assert evaluate.main(['--real', str(tmp_path / 'real'), '--fake', str(tmp_path / 'fake'), '--face_backend',
                          'dlib', '--no_identity', '--out', str(tmp_path / 's.json')]) == 0
    out = capsys.readouterr()
    assert 'a: 4 real and 2 generated frames; scored the first 2' in out.err
    assert 'scored 2 frame pairs of 1 videos; 1 video(s) had different real and generated frame counts' in out.out
    assert 'L1' in out.out and 'AKD' in out.out and '(0.0%)' in out.out
    scores = json.loads((tmp_path / 's.json').read_text())
    assert scores['l1'] == 0.0 and scores['per_video']['a']['frames_real'] == 4
    assert scores['per_video']['a']['frames_generated'] == 2 and scores['frames'] == 2
