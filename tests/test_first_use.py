"""A new user's first commands (issue 25): bundled configs from any folder, the demo's closing hint,
no command writing over one of its inputs, SIGTERM cleaning up as Ctrl-C does, and the messages
around --result_size and refused checkpoints.

Runs on the bundled small model (checkpoints/, 64x64): no ../shared needed except where said.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, SHARED

import demo  # noqa: E402
from media import VideoReader, VideoWriter  # noqa: E402

CONFIG = 'config/synthetic/tps-64-small.yaml'              # as README names it: relative to the repository
CHECKPOINT = str(REPO_ROOT / 'checkpoints' / 'synthetic-tps-64-small.pth.tar')
SAMPLES = SHARED / 'samples'


def env_for_this_checkout() -> dict:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONPATH'] = str(REPO_ROOT)       # this checkout, whether or not it is the installed one
    return env


def frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def media(tmp_path):
    """(source png, 3-frame driving mp4) at 64x64."""
    from PIL import Image
    source = tmp_path / 'source.png'
    Image.fromarray(frames(1, seed=1)[0]).save(source)
    driving = tmp_path / 'driving.mp4'
    with VideoWriter(str(driving), fps=10) as writer:
        writer.write(frames(3))
    return str(source), str(driving)


def run_demo(capsys, *argv) -> tuple[int, str, str]:
    code = demo.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------------------------
# 1. README's commands from another folder
# ----------------------------------------------------------------------------------------------

def test_bundled_config_is_found_from_another_folder(tmp_path, media):
    """README's Python example and `kpanim-demo --config config/...` run from any folder."""
    source, driving = media
    code = ('import demo, sys\n'
            'from animate import Animator\n'
            f'Animator.from_files({CONFIG!r}, {CHECKPOINT!r})\n'
            f'sys.exit(demo.main(["--config", {CONFIG!r}, "--checkpoint", {CHECKPOINT!r}, "--source_image", '
            f'{source!r}, "--driving_video", {driving!r}, "--result_video", "out.mp4", "--cpu", "--quiet"]))\n')
    done = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env_for_this_checkout(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'out.mp4').is_file()
    said = [line for line in done.stderr.splitlines() if 'bundled' in line]
    assert len(said) == 1 and CONFIG in said[0], done.stderr          # said once, though loaded twice


def test_a_missing_config_is_still_an_error(capsys, tmp_path, media):
    source, driving = media
    code, _, err = run_demo(capsys, '--config', 'config/no-such.yaml', '--checkpoint', CHECKPOINT,
                            '--source_image', source, '--driving_video', driving, '--result_video',
                            tmp_path / 'r.mp4', '--cpu')
    assert code == 2 and 'config/no-such.yaml' in err and err.count('\n') == 1


def test_closing_hint_names_a_python_that_has_torch(tmp_path, monkeypatch):
    """After `make demo` the shell's `python` is the system one, without torch: the hint must name
    the interpreter that ran the demo."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'python').write_text('#!/bin/sh\nexit 1\n')
    (fake / 'python').chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake}{os.pathsep}{os.environ.get("PATH", "")}')
    hint = demo.official_example()
    python = hint.split()[0]
    assert python != 'python'
    assert os.path.samefile(python, sys.executable)
    monkeypatch.setenv('PATH', f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}')
    assert demo.official_example().startswith('python ')


# ----------------------------------------------------------------------------------------------
# 2. No command writes over one of its inputs
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('how', ['same_path', 'other_spelling', 'symlink', 'hard_link', 'frame_folder',
                                 'folder_holding_source'])
def test_demo_never_writes_over_an_input(capsys, tmp_path, media, how):
    source, driving = media
    target = driving
    if how == 'other_spelling':
        result = str(Path(driving).parent / '.' / 'sub' / '..' / Path(driving).name)
        (Path(driving).parent / 'sub').mkdir()
    elif how == 'symlink':
        result = str(tmp_path / 'link.mp4')
        os.symlink(driving, result)
    elif how == 'hard_link':
        result = str(tmp_path / 'hard.mp4')
        os.link(driving, result)
    elif how == 'frame_folder':           # a folder of PNG frames as the driving video, written over
        driving = target = str(tmp_path / 'frames')
        with VideoWriter(driving + os.sep, fps=10) as writer:
            writer.write(frames(3))
        result = driving + os.sep
    elif how == 'folder_holding_source':  # a folder output is replaced whole
        target = source
        result = str(tmp_path) + os.sep
    else:
        result = driving
    before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
    code, out, err = run_demo(capsys, '--config', CONFIG, '--checkpoint', CHECKPOINT, '--source_image', source,
                              '--driving_video', driving, '--result_video', result, '--cpu', '--quiet')
    assert code == 2, (out, err)
    assert err.startswith('error: --result_video') and err.count('\n') == 1, err
    assert target in err
    assert {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()} == before


def test_crop_video_refuses_an_output_folder_holding_an_input(tmp_path, capsys):
    import crop_video
    data = tmp_path / 'data' / 'train'
    data.mkdir(parents=True)
    video = data / 'a_1.mp4'
    with VideoWriter(str(video), fps=10) as writer:
        writer.write(frames(4))
    before = video.read_bytes()
    code = crop_video.main(['--inp', str(video), '--out', str(tmp_path / 'data'), '--quiet'])
    err = capsys.readouterr().err
    assert code == 2 and '--out' in err and 'a_1.mp4' in err, err
    assert video.read_bytes() == before and not (tmp_path / 'data' / 'manifest.csv').exists()


def test_evaluate_refuses_to_write_its_scores_over_a_video(tmp_path, capsys):
    import evaluate
    for side in ('real', 'fake'):
        (tmp_path / side).mkdir()
        with VideoWriter(str(tmp_path / side / 'v.mp4'), fps=10) as writer:
            writer.write(frames(3))
    before = (tmp_path / 'fake' / 'v.mp4').read_bytes()
    code = evaluate.main(['--real', str(tmp_path / 'real'), '--fake', str(tmp_path / 'fake'),
                          '--out', str(tmp_path / 'fake' / 'v.mp4'), '--no_identity'])
    err = capsys.readouterr().err
    assert code == 2 and 'v.mp4' in err and err.count('\n') == 1, err
    assert (tmp_path / 'fake' / 'v.mp4').read_bytes() == before


def test_reconstruction_and_animate_refuse_a_log_dir_over_the_data(tmp_path):
    """run.py --mode reconstruction writes <log_dir>/reconstruction/png/<video>.png: with the data
    set's strips in that very folder they would be replaced."""
    import animate
    import reconstruction
    strips = tmp_path / 'run' / 'reconstruction' / 'png'
    strips.mkdir(parents=True)
    (strips / 'v.png').write_bytes(b'strip')

    class Data:
        root_dir = str(strips)

        def __len__(self):
            return 1

    with pytest.raises(ValueError, match='overlap'):
        reconstruction.reconstruction({}, {}, Data(), str(tmp_path / 'run'), 'cpu', CHECKPOINT)
    with pytest.raises(ValueError, match='overlap'):
        animate.animate_dataset({'dataset_params': {'root_dir': str(tmp_path / 'run')}}, {},
                                str(tmp_path / 'run'), 'cpu', CHECKPOINT)
    assert (strips / 'v.png').read_bytes() == b'strip'


# ----------------------------------------------------------------------------------------------
# 3. SIGTERM cleans up as Ctrl-C does
# ----------------------------------------------------------------------------------------------

def debris(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob('*') if '.part' in p.name)


def test_sigterm_mid_run_leaves_no_partial_files(tmp_path):
    out = tmp_path / 'example'
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / 'demo.py'), '--example', '--example_dir', str(out),
                             '--example_frames', '200', '--quiet', '--threads', '1'],
                            cwd=tmp_path, env=env_for_this_checkout(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and debris(out)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and debris(out), 'the demo ended (or never started writing) before the signal'
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert debris(out) == [], err
    assert 'Traceback' not in err and 'terminated' in err


# ----------------------------------------------------------------------------------------------
# 6. Messages
# ----------------------------------------------------------------------------------------------

def test_result_size_is_checked_without_crop(capsys, tmp_path, media):
    source, driving = media
    base = ['--config', CONFIG, '--checkpoint', CHECKPOINT, '--source_image', source, '--driving_video', driving,
            '--cpu', '--quiet']
    code, _, err = run_demo(capsys, *base, '--result_video', tmp_path / 'a.mp4', '--result_size', '100,abc')
    assert code == 2 and '--result_size' in err and err.count('\n') == 1, err
    assert not (tmp_path / 'a.mp4').exists()
    code, out, err = run_demo(capsys, *base, '--result_video', tmp_path / 'b.mp4', '--result_size', '100,100')
    assert code == 0 and '--result_size 100,100 only applies with --crop' in err, err
    assert 'wrote' in out and '64x64' in out


def test_closing_line_names_the_size_written(tmp_path):
    assert demo.describe_output_size('r.mp4', (64, 64), (64, 64)) == '64x64'
    padded = demo.describe_output_size('r.mp4', (203, 301), (64, 64))
    assert padded.startswith('302x204 (301x203 padded') and 'animated at 64x64' in padded
    assert demo.describe_output_size('r.gif', (203, 301), (64, 64)).startswith('301x203,')


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f'the real samples are not at {SAMPLES} (../shared is absent)')
def test_crop_with_an_odd_result_size_says_what_it_wrote(capsys, tmp_path):
    """--crop writes the photo's size (or --result_size): the closing line names that size, and an
    odd one padded to even sides for H.264 says so."""
    driving = tmp_path / 'face.mp4'
    with VideoReader(str(SAMPLES / 'face-driving.mp4')) as reader, VideoWriter(str(driving), fps=25) as writer:
        for index, frame in enumerate(reader):
            if index == 3:
                break
            writer.write(frame[None])
    result = tmp_path / 'r.mp4'
    code, out, err = run_demo(capsys, '--config', CONFIG, '--checkpoint', CHECKPOINT, '--source_image',
                              SAMPLES / 'face-source.png', '--driving_video', driving, '--result_video', result,
                              '--crop', '--result_size', '301,203', '--face_backend', 'dlib', '--cpu', '--quiet')
    assert code == 0, err
    assert '204x302 (203x301 padded' in out and 'animated at 64x64' in out, out      # W x H: H,W is 301,203
    with VideoReader(str(result)) as reader:
        assert (reader.width, reader.height) == (204, 302)


def test_refused_checkpoint_says_what_is_safe(tmp_path):
    from loading.checkpoint import CheckpointError, read_checkpoint
    path = tmp_path / 'evil.pth.tar'
    torch.save({'kp_detector': {}, 'payload': os.getcwd}, str(path))
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    message = str(caught.value)
    assert 'refused' in message and 'state_dict()' in message and 'getcwd' in message
    assert 'weights_only' not in message and 'Re-running' not in message     # PyTorch's unsafe hint
