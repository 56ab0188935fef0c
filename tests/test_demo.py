"""Tests for demo.py: the animation CLI, end to end, in-process through `demo.main(argv)`.

The tiny parity models (../shared/parity, 64x64) animate 2-6 frame videos written here, so every
run takes about a second. Streamed, batched results are checked against the networks called
directly frame by frame (not through animate.Animator), for every mode of both families.
"""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import demo  # noqa: E402
from conftest import ffmpeg_exe  # noqa: E402
from media import VideoReader, VideoWriter, count_frames, load_image, resize_frame  # noqa: E402

from conftest import PARITY_FOMM as FOMM, PARITY_TPS as TPS  # noqa: E402
from conftest import PARITY_DIR as PARITY  # noqa: E402
SIZE = 64


@pytest.fixture(scope='module', autouse=True)
def need_parity():
    if not PARITY.is_dir():
        pytest.skip(f'the parity configs and checkpoints are not at {PARITY} (../shared is absent)')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------

def moving_frames(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3) frames of a textured blob moving over a gradient."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(seed)
    texture = rng.uniform(0, 1, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
    frames = []
    for t in range(n):
        cx, cy = 0.35 + 0.06 * t, 0.5 + 0.04 * np.sin(t)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)[..., None]
        background = np.stack([x, y, 0.5 * (x + y)], axis=-1)
        frames.append(background * (1 - blob) + texture * blob)
    return (np.clip(np.stack(frames), 0, 1) * 255).round().astype(np.uint8)


def write_video(path, frames, fps=10) -> str:
    with VideoWriter(str(path), fps) as writer:
        writer.write(frames)
    return str(path)


def write_image(path, array: np.ndarray) -> str:
    Image.fromarray(array).save(str(path))
    return str(path)


@pytest.fixture
def media(tmp_path):
    """A 5-frame driving mp4 and an 80x72 (non-square) RGB source png."""
    driving = write_video(tmp_path / 'driving.mp4', moving_frames(5))
    source = write_image(tmp_path / 'source.png', resize_u8(moving_frames(9, seed=1)[8], (72, 80)))
    return source, driving


def resize_u8(frame: np.ndarray, shape) -> np.ndarray:
    return (resize_frame(frame, shape) * 255).round().astype(np.uint8)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y', *args], check=True)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = demo.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def base_args(family, source, driving, result, *extra):
    config, checkpoint = FOMM if family == 'fomm' else TPS
    args = ['--config', config, '--checkpoint', checkpoint, '--source_image', source,
            '--driving_video', driving, '--result_video', result, '--cpu']
    if family == 'tps':
        args += ['--img_shape', f'{SIZE},{SIZE}']   # its config says frame_shape: null (256)
    return args + list(extra)


def read_all(path) -> np.ndarray:
    return np.stack(list(VideoReader(str(path))))


# ----------------------------------------------------------------------------------------------
# Per-frame reference: the networks called directly, one frame at a time
# ----------------------------------------------------------------------------------------------

_MODELS: dict = {}


def networks(family: str) -> dict:
    if family not in _MODELS:
        from modules import build_models
        from loading import load_config
        config, checkpoint = FOMM if family == 'fomm' else TPS
        models = build_models(load_config(str(config)))
        ckpt = torch.load(str(checkpoint), map_location='cpu', weights_only=True)
        for key, model in models.items():
            if key in ckpt:
                model.load_state_dict(ckpt[key])
            model.eval()
        _MODELS[family] = models
    return _MODELS[family]


@torch.no_grad()
def reference_animation(family: str, source: np.ndarray, frames: list[np.ndarray], mode: str,
                        adapt_scale: bool = False, initial_index: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): each frame through kp_detector, normalize_kp and the generator
    (FOMM) or dense motion + inpainting (TPSMM), batch size 1."""
    from animate import normalize_kp
    m = networks(family)

    def tensor(image):
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]

    src = tensor(source)
    kp_source = m['kp_detector'](src)
    kp_initial = m['kp_detector'](tensor(frames[initial_index]))
    out = []
    for frame in frames:
        kp_driving = m['kp_detector'](tensor(frame))
        if mode == 'relative':
            kp_norm = normalize_kp(kp_source, kp_driving, kp_initial,
                                   adapt_movement_scale=adapt_scale or family == 'tps',
                                   use_relative_movement=True, use_relative_jacobian=True)
        elif mode == 'avd':
            kp_norm = m['avd_network'](kp_source, kp_driving)
        else:
            kp_norm = kp_driving
        if family == 'fomm':
            pred = m['generator'](src, kp_driving=kp_norm, kp_source=kp_source)['prediction']
        else:
            motion = m['dense_motion_network'](source_image=src, kp_driving=kp_norm, kp_source=kp_source,
                                               bg_param=None, dropout_flag=False)
            pred = m['inpainting_network'](src, motion)['prediction']
        out.append(pred[0].permute(1, 2, 0).clamp(0, 1).numpy())
    return (np.stack(out) * 255).round().astype(np.uint8)


def decoded_inputs(source_path, driving_path, shape=(SIZE, SIZE)):
    """What the demo animates: the resized source and the decoded, resized driving frames."""
    source = load_image(source_path, size=shape)
    frames = [resize_frame(f, shape) for f in VideoReader(driving_path)]
    return source, frames


def assert_within_one_level(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f'max difference {diff.max()} grey levels (mean {diff.mean():.3f})'


# ----------------------------------------------------------------------------------------------
# Streamed, batched output == per-frame network calls
# ----------------------------------------------------------------------------------------------

MODES = [('fomm', ['--mode', 'standard'], 'standard', False),
         ('fomm', ['--relative'], 'relative', False),
         ('fomm', ['--relative', '--adapt_scale'], 'relative', True),
         ('tps', ['--mode', 'standard'], 'standard', False),
         ('tps', [], 'relative', True),                      # TPSMM's default mode
         ('tps', ['--mode', 'avd'], 'avd', False)]


@pytest.mark.parametrize('family, flags, mode, adapt', MODES,
                         ids=['fomm-standard', 'fomm-relative', 'fomm-relative-adapt',
                              'tps-standard', 'tps-relative', 'tps-avd'])
def test_batched_stream_equals_per_frame_networks(capsys, media, tmp_path, family, flags, mode, adapt):
    source_path, driving_path = media
    result = str(tmp_path / 'out') + '/'                       # lossless PNG frames
    code, out, err = run(capsys, *base_args(family, source_path, driving_path, result, '--batch_size', 4, *flags))
    assert code == 0, err
    assert f'{family} {mode}' in out
    source, frames = decoded_inputs(source_path, driving_path)
    expected = reference_animation(family, source, frames, mode, adapt)
    assert_within_one_level(read_all(result), expected)


@pytest.mark.parametrize('family', ['fomm', 'tps'])
def test_best_frame_is_the_reference_frame(capsys, media, tmp_path, family):
    source_path, driving_path = media
    result = str(tmp_path / 'out') + '/'
    flags = ['--relative'] if family == 'fomm' else []
    code, _, err = run(capsys, *base_args(family, source_path, driving_path, result, '--best_frame', 3,
                                          '--batch_size', 2, *flags))
    assert code == 0, err
    source, frames = decoded_inputs(source_path, driving_path)
    expected = reference_animation(family, source, frames, 'relative', family == 'tps', initial_index=3)
    assert_within_one_level(read_all(result), expected)
    # and it differs from using frame 0, so the option really acts
    assert not np.array_equal(expected, reference_animation(family, source, frames, 'relative', family == 'tps'))


def test_best_frame_out_of_range(capsys, media, tmp_path):
    source, driving = media
    result = tmp_path / 'out.mp4'
    code, _, err = run(capsys, *base_args('fomm', source, driving, result, '--relative', '--best_frame', 7))
    assert code == 2 and '--best_frame 7' in err and 'driving.mp4' in err and err.count('\n') == 1
    assert not result.exists()


# ----------------------------------------------------------------------------------------------
# Output formats: frame count and frame rate of the input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name, fps', [('result.mp4', Fraction(30000, 1001)), ('result.gif', 10),
                                       ('frames/', 12.5)])
def test_output_keeps_frame_count_and_rate(capsys, tmp_path, name, fps):
    driving = write_video(tmp_path / 'in.mp4', moving_frames(5), fps=fps)
    source = write_image(tmp_path / 's.png', moving_frames(1, seed=2)[0])
    result = os.path.join(str(tmp_path / 'new' / 'folder'), name)  # parent folders do not exist yet
    code, _, err = run(capsys, *base_args('fomm', source, driving, result, '--batch_size', 4))
    assert code == 0, err
    reader_in, reader_out = VideoReader(driving), VideoReader(result)
    assert count_frames(result) == count_frames(driving) == 5
    assert reader_out.fps == pytest.approx(reader_in.fps, rel=1e-6)
    assert reader_out.size == (SIZE, SIZE)
    assert not [p for p in os.listdir(os.path.dirname(result.rstrip('/'))) if p.startswith('.')]  # no temporaries


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr naming the file, exit status 2, no output
# ----------------------------------------------------------------------------------------------

def _bad_inputs(tmp_path, kind):
    """(argv pieces to change, the file name the message must contain)."""
    if kind == 'missing_source':
        return {'source': tmp_path / 'nope.png'}, 'nope.png'
    if kind == 'missing_driving':
        return {'driving': tmp_path / 'nope.mp4'}, 'nope.mp4'
    if kind == 'missing_config':
        return {'config': tmp_path / 'nope.yaml'}, 'nope.yaml'
    if kind == 'missing_checkpoint':
        return {'checkpoint': tmp_path / 'nope.pth.tar'}, 'nope.pth.tar'
    if kind == 'empty_driving':
        (tmp_path / 'empty.mp4').write_bytes(b'')
        return {'driving': tmp_path / 'empty.mp4'}, 'empty.mp4'
    if kind == 'truncated_driving':                            # MP4 cut before its index
        data = Path(write_video(tmp_path / 'full.mp4', moving_frames(6))).read_bytes()
        (tmp_path / 'cut.mp4').write_bytes(data[: len(data) // 2])
        return {'driving': tmp_path / 'cut.mp4'}, 'cut.mp4'
    if kind == 'truncated_midstream':                          # decodes a few frames, then fails
        full = tmp_path / 'full.mp4'
        ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=25:duration=0.6', '-c:v', 'libx264',
               '-pix_fmt', 'yuv420p', '-g', '2', '-movflags', '+faststart', str(full))
        data = full.read_bytes()
        (tmp_path / 'midcut.mp4').write_bytes(data[: int(len(data) * 0.6)])
        return {'driving': tmp_path / 'midcut.mp4'}, 'midcut.mp4'
    if kind == 'text_driving':
        (tmp_path / 'notes.mp4').write_text('not a video\n' * 50)
        return {'driving': tmp_path / 'notes.mp4'}, 'notes.mp4'
    if kind == 'text_source':
        (tmp_path / 'photo.png').write_text('not an image\n' * 50)
        return {'source': tmp_path / 'photo.png'}, 'photo.png'
    if kind == 'config_does_not_fit':                           # FOMM config, TPSMM checkpoint
        return {'checkpoint': TPS[1]}, 'tps-public.pth.tar'
    if kind == 'pickled_code':
        torch.save({'kp_detector': {}, 'payload': os.getcwd}, str(tmp_path / 'evil.pth.tar'))
        return {'checkpoint': tmp_path / 'evil.pth.tar'}, 'evil.pth.tar'
    if kind == 'bad_yaml':
        (tmp_path / 'broken.yaml').write_text('model_params: [unclosed\n  common_params: {')
        return {'config': tmp_path / 'broken.yaml'}, 'broken.yaml'
    if kind == 'unsupported_output':
        return {'result': tmp_path / 'out' / 'result.avi'}, 'result.avi'
    raise AssertionError(kind)


BAD = ['missing_source', 'missing_driving', 'missing_config', 'missing_checkpoint', 'empty_driving',
       'truncated_driving', 'truncated_midstream', 'text_driving', 'text_source', 'config_does_not_fit',
       'pickled_code', 'bad_yaml', 'unsupported_output']


@pytest.mark.parametrize('kind', BAD)
def test_bad_input_one_line_no_output(capsys, media, tmp_path, kind):
    source, driving = media
    files = {'config': FOMM[0], 'checkpoint': FOMM[1], 'source': source, 'driving': driving,
             'result': tmp_path / 'out' / 'result.mp4'}
    changed, name = _bad_inputs(tmp_path, kind)
    files.update(changed)
    code, _, err = run(capsys, '--config', files['config'], '--checkpoint', files['checkpoint'],
                       '--source_image', files['source'], '--driving_video', files['driving'],
                       '--result_video', files['result'], '--relative', '--cpu', '--batch_size', 4)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and lines[0].startswith('error: ') and 'Traceback' not in err
    assert not Path(files['result']).exists()
    parent = Path(files['result']).parent
    assert not parent.exists() or not list(parent.iterdir()), 'temporary output left behind'


def test_bad_input_in_a_real_process(tmp_path, media):
    """The script itself (not only main()): status 2, one line, no traceback."""
    source, driving = media
    proc = subprocess.run([sys.executable, str(REPO / 'demo.py'), *base_args('fomm', source, driving,
                           tmp_path / 'r.mp4')[:2], '--checkpoint', str(tmp_path / 'gone.pth.tar'),
                           '--source_image', source, '--driving_video', driving,
                           '--result_video', str(tmp_path / 'r.mp4')], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count('\n') == 0 and 'gone.pth.tar' in proc.stderr, proc.stderr
    assert not (tmp_path / 'r.mp4').exists()


def test_option_errors(capsys, media, tmp_path):
    source, driving = media
    result = tmp_path / 'r.mp4'
    cases = [(['--precision', 'fp16'], 'fp16'),
             (['--mode', 'avd'], 'avd'),
             (['--relative', '--mode', 'standard'], 'contradict'),
             (['--img_shape', 'big'], '--img_shape'),
             (['--batch_size', '0'], '--batch_size'),
             (['--threads', '0'], '--threads')]
    for extra, needle in cases:
        code, _, err = run(capsys, *base_args('fomm', source, driving, result, *extra))
        assert code == 2 and needle in err and err.count('\n') == 1, (extra, err)
    code, _, err = run(capsys, '--source_image', source)                     # nothing else
    assert code == 2 and '--config' in err and '--checkpoint' in err
    code, _, err = run(capsys, '--no_such_option')
    assert code == 2 and err.count('\n') == 1
    assert not result.exists()


# ----------------------------------------------------------------------------------------------
# Awkward but valid inputs
# ----------------------------------------------------------------------------------------------

def test_awkward_images_just_work(capsys, tmp_path):
    driving = write_video(tmp_path / 'd.mp4', moving_frames(2))
    rgb = resize_u8(moving_frames(1, seed=3)[0], (50, 90))      # non-square
    gray16 = (rgb.mean(axis=2) * 257).astype(np.uint16)
    images = {
        'gray.png': write_image(tmp_path / 'gray.png', rgb[..., 0]),
        'rgba.png': write_image(tmp_path / 'rgba.png', np.dstack([rgb, np.full(rgb.shape[:2], 90, np.uint8)])),
        'gray16.png': write_image(tmp_path / 'gray16.png', gray16),     # Pillow mode I;16
        'photo.jpg': write_image(tmp_path / 'photo.jpg', rgb),
        'wide.png': write_image(tmp_path / 'wide.png', rgb),
    }
    Image.fromarray(rgb).convert('P', palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / 'palette.png')
    images['palette.png'] = str(tmp_path / 'palette.png')
    for name, path in images.items():
        result = tmp_path / 'outs' / f'{name}.mp4'
        code, _, err = run(capsys, *base_args('fomm', path, driving, result, '--mode', 'standard'))
        assert code == 0, (name, err)
        assert count_frames(result) == 2


# ----------------------------------------------------------------------------------------------
# Audio, precision, best-frame search
# ----------------------------------------------------------------------------------------------

def test_audio_copied_and_silent_driving_gives_a_note(capsys, media, tmp_path):
    source, silent = media
    result = tmp_path / 'silent.mp4'
    code, _, err = run(capsys, *base_args('fomm', source, silent, result, '--audio'))
    assert code == 0 and result.exists()
    assert 'note:' in err and 'audio' in err
    assert count_frames(result) == 5
    loud = tmp_path / 'loud.mp4'
    ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=48x48:rate=10:duration=0.4', '-f', 'lavfi',
           '-i', 'sine=frequency=440:duration=0.4', '-c:v', 'libx264', '-pix_fmt', 'yuv420p',
           '-c:a', 'aac', '-shortest', str(loud))
    result = tmp_path / 'loud-out.mp4'
    code, _, err = run(capsys, *base_args('fomm', source, loud, result, '--audio', '--relative'))
    assert code == 0, err
    assert VideoReader(str(result)).has_audio and count_frames(result) == count_frames(loud)


@pytest.mark.parametrize('family, mode', [('fomm', ['--relative']), ('tps', ['--mode', 'relative'])])
def test_bf16_on_cpu_runs_close_to_fp32(capsys, media, tmp_path, family, mode):
    # bf16 on the CPU stores convolution weights in bf16 channels-last: same pictures, within rounding
    source, driving = media
    outs = {}
    for precision in ('fp32', 'bf16'):
        result = str(tmp_path / precision) + '/'
        code, _, err = run(capsys, *base_args(family, source, driving, result, *mode, '--precision', precision))
        assert code == 0, err
        outs[precision] = read_all(result).astype(np.float32)
    assert np.abs(outs['bf16'] - outs['fp32']).mean() < 8


def fake_landmarks(image: np.ndarray):
    """A stand-in for face-alignment: 'no face' on dark images, otherwise 68 points whose shape
    (not only position and size, which normalisation removes) follows the image's brightness."""
    level = float(np.mean(image))
    if level < 0.15:
        return None
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([np.cos(angles) * (1 + 3 * level), np.sin(angles) + 0.3 * np.cos(3 * angles)], axis=1) * 40 + 100


def test_find_best_frame_function():
    frames = [np.full((8, 8, 3), v, np.float32) for v in (0.05, 0.3, 0.5, 0.72, 0.9)]
    index, frame = demo.find_best_frame(np.full((8, 8, 3), 0.7, np.float32), iter(frames), fake_landmarks)
    assert index == 3 and np.array_equal(frame, frames[3])
    index, frame = demo.find_best_frame(np.full((8, 8, 3), 0.7, np.float32), iter(frames[:1]), fake_landmarks)
    assert index is None and frame is None                      # no face anywhere
    with pytest.raises(demo.DemoError, match='no face found in the source image'):
        demo.find_best_frame(np.zeros((8, 8, 3), np.float32), iter(frames), fake_landmarks, "'dark.png'")
    # the normalisation removes position and scale
    points = fake_landmarks(np.full((4, 4, 3), 0.5))
    np.testing.assert_allclose(demo.normalize_landmarks(points), demo.normalize_landmarks(points * 3 + 7), atol=1e-12)


def test_find_best_frame_cli(capsys, tmp_path, monkeypatch):
    levels = (0.05, 0.3, 0.5, 0.72, 0.9)
    frames = np.stack([np.full((SIZE, SIZE, 3), round(v * 255), np.uint8) for v in levels])
    frames[:, ::8] = 128                                         # some texture for the encoder
    driving = write_video(tmp_path / 'faces.mp4', frames)
    source = write_image(tmp_path / 'face.png', np.full((SIZE, SIZE, 3), round(0.7 * 255), np.uint8))
    monkeypatch.setattr(demo, 'load_landmark_detector', lambda device, backend='auto': fake_landmarks)
    result = str(tmp_path / 'found') + '/'
    code, _, err = run(capsys, *base_args('fomm', source, driving, result, '--relative', '--find_best_frame'))
    assert code == 0, err
    assert 'best reference frame: 3' in err
    src, decoded = decoded_inputs(source, driving)
    assert_within_one_level(read_all(result), reference_animation('fomm', src, decoded, 'relative', initial_index=3))
    # no face in the source: a clear error, no output
    dark = write_image(tmp_path / 'dark.png', np.zeros((SIZE, SIZE, 3), np.uint8))
    code, _, err = run(capsys, *base_args('fomm', dark, driving, tmp_path / 'x.mp4', '--relative', '--find_best_frame'))
    assert code == 2 and 'no face found in the source image' in err and 'dark.png' in err
    assert not (tmp_path / 'x.mp4').exists()


def test_find_best_frame_without_the_model_says_so(capsys, media, tmp_path, monkeypatch):
    face_alignment = pytest.importorskip('face_alignment')

    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -2] Name or service not known')

    monkeypatch.setattr(face_alignment, 'FaceAlignment', offline)
    from faces.backend import forget_loaded
    forget_loaded()
    source, driving = media
    code, _, err = run(capsys, *base_args('fomm', source, driving, tmp_path / 'x.mp4', '--relative', '--find_best_frame',
                                          '--face_backend', 'face-alignment'))
    forget_loaded()
    assert code == 2 and err.count('\n') == 1
    assert 'face-alignment' in err and '--best_frame N' in err and 'internet' in err
    assert not (tmp_path / 'x.mp4').exists()


# ----------------------------------------------------------------------------------------------
# --example
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def random_example_checkpoint(tmp_path_factory):
    from modules import build_models
    from loading import load_config
    torch.manual_seed(0)
    models = build_models(load_config(str(REPO / demo.EXAMPLE_CONFIG)))
    path = tmp_path_factory.mktemp('ckpt') / 'random-example.pth.tar'
    torch.save({**{k: m.state_dict() for k, m in models.items()}, 'epoch': 0}, str(path))
    return path


def test_example_writes_result_and_side_by_side(capsys, tmp_path, random_example_checkpoint):
    out = tmp_path / 'example'
    code, stdout, err = run(capsys, '--example', '--example_checkpoint', random_example_checkpoint,
                            '--example_dir', out, '--example_frames', 6, '--cpu')
    assert code == 0, err
    assert (out / 'source.png').exists()
    assert count_frames(out / 'driving.mp4') == count_frames(out / 'result.mp4') == 6
    assert count_frames(out / 'side-by-side.mp4') == 6
    sbs = VideoReader(str(out / 'side-by-side.mp4'))
    assert sbs.size == (3 * 64 * 4, 64 * 4)
    assert 'side-by-side.mp4' in stdout and '--source_image my.png' in stdout and 'vox-256.yaml' in stdout


def test_example_inputs_are_deterministic_and_held_out():
    source, driving, expected = demo.example_inputs(num_frames=3)
    source2, driving2, expected2 = demo.example_inputs(num_frames=3)
    assert np.array_equal(source, source2) and np.array_equal(driving, driving2)
    assert np.array_equal(expected, expected2) and np.array_equal(source, expected[0])
    assert source.shape == (64, 64, 3) and driving.shape == expected.shape == (3, 64, 64, 3)
    # another identity drives: the pictures differ everywhere (background included) ...
    assert np.abs(driving.astype(int) - expected.astype(int)).mean() > 10
    # ... while both clips move: neither is a still
    assert np.abs(np.diff(expected.astype(int), axis=0)).mean() > 0.5
    assert np.abs(np.diff(driving.astype(int), axis=0)).mean() > 0.5


def test_example_without_its_checkpoint(capsys, tmp_path):
    code, _, err = run(capsys, '--example', '--example_checkpoint', tmp_path / 'not-yet.pth.tar',
                       '--example_dir', tmp_path / 'ex')
    assert code == 2 and 'not-yet.pth.tar' in err and err.count('\n') == 1
    assert not (tmp_path / 'ex').exists()
    if not (REPO / demo.EXAMPLE_CHECKPOINT).exists():
        code, _, err = run(capsys, '--example', '--example_dir', tmp_path / 'ex')
        assert code == 2 and os.path.basename(demo.EXAMPLE_CHECKPOINT) in err and 'missing' in err
