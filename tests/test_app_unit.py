"""app.py's parts that need no browser: the controls as demo.py options, models, sessions.

(tests/test_app.py drives the whole app in Chromium.)
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip('gradio', reason='gradio is not installed (make venv installs requirements.txt)')

import app  # noqa: E402
import demo  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

SERVED = app.ModelFiles(str(REPO_ROOT / demo.EXAMPLE_CONFIG), str(REPO_ROOT / demo.EXAMPLE_CHECKPOINT))


@pytest.mark.parametrize('options, family, argv', [
    (app.AnimateOptions(), 'tps', ['--mode', 'relative', '--audio']),
    (app.AnimateOptions(adapt_scale=True, audio=False), 'tps', ['--mode', 'relative']),
    (app.AnimateOptions(adapt_scale=True), 'fomm', ['--mode', 'relative', '--adapt_scale', '--audio']),
    (app.AnimateOptions(mode='standard', reference=app.REF_NUMBER, frame=7, audio=False), 'fomm',
     ['--mode', 'standard', '--best_frame', '7']),
    (app.AnimateOptions(reference=app.REF_BEST, audio=False), 'tps', ['--mode', 'relative', '--find_best_frame']),
    (app.AnimateOptions(audio=False, crop=True), 'tps', ['--mode', 'relative', '--crop']),
    (app.AnimateOptions(audio=False, smooth=True), 'fomm', ['--mode', 'relative', '--smooth']),
])
def test_controls_are_demo_options(options, family, argv):
    assert options.demo_argv(family) == argv
    demo.parse_args(['--config', 'c', '--checkpoint', 'k'] + argv)      # demo.py accepts them


def test_default_options_per_family():
    assert app.default_options('fomm') == app.AnimateOptions(mode='relative', adapt_scale=True)
    assert app.default_options('tps') == app.AnimateOptions(mode='relative', adapt_scale=False)


def test_models_served_model_without_avd_and_cache(tmp_path):
    models = app.Models(SERVED, 'cpu', keep=1)
    served = models.get(SERVED)
    assert models.get(SERVED) is served
    assert app.modes_of(served) == ('standard', 'relative')       # the bundled checkpoint has no AVD network
    copy = tmp_path / 'copy.pth.tar'
    copy.write_bytes(open(SERVED.checkpoint, 'rb').read())
    other = app.ModelFiles(SERVED.config, str(copy))
    assert models.get(other) is not served
    third = app.ModelFiles(SERVED.config, str(tmp_path / 'third.pth.tar'))
    (tmp_path / 'third.pth.tar').write_bytes(copy.read_bytes())
    models.get(third)
    assert len(models._cache) == 2                               # served + the last other (keep=1)
    assert models.get(SERVED) is served
    with pytest.raises(app.AppError, match='no such file on the machine running the app'):
        models.get(app.ModelFiles(SERVED.config, str(tmp_path / 'missing.pth.tar')))


def test_square_crop():
    frame = np.arange(4 * 6 * 3).reshape(4, 6, 3)
    assert np.array_equal(app.square_crop(frame), frame[:, 1:5])
    assert app.square_crop(frame.transpose(1, 0, 2)).shape == (4, 4, 3)


def test_session_cancel_and_close(tmp_path):
    session = app.Session(str(tmp_path / 's'))
    started, stop_seen = threading.Event(), []

    def work():
        with session.new_job() as job:
            (tmp_path / 's').mkdir()
            started.set()
            stop_seen.append(job.cancel.wait(10))

    thread = threading.Thread(target=work)
    thread.start()
    assert started.wait(10)
    session.close()                      # cancels the job, waits for it, removes the folder
    thread.join()
    assert stop_seen == [True] and not (tmp_path / 's').exists()
    with pytest.raises(app.gr.Error):
        with session.new_job():
            pass


def test_live_smoothing_filters_the_stream_and_keeps_the_reference(tmp_path, monkeypatch):
    """Live tab's "Smooth motion": off, camera frames animate as they are; on, the first frame is
    unchanged and later ones are filtered; switching it keeps the reference frame."""
    import itertools
    import types
    from PIL import Image
    # A camera frame every 40 ms (two clock readings per frame), however slow this machine is.
    ticks = itertools.count()
    monkeypatch.setattr(app, 'time', types.SimpleNamespace(perf_counter=lambda: 0.02 * next(ticks)))
    page = app.App.__new__(app.App)
    animator = app.Models(SERVED, 'cpu').get(SERVED)
    example = demo.example_inputs(num_frames=6)
    source = str(tmp_path / 'source.png')
    Image.fromarray(example.source).save(source)

    def stream(smooth_each: list[bool]) -> tuple[list[np.ndarray], app.LiveState]:
        live = app.LiveState(str(tmp_path / f'live-{len(list(tmp_path.iterdir()))}'))
        frames = []
        for frame, smooth in zip(example.driving, smooth_each):
            path, _ = page.animate_live(live, animator, frame, source, False, smooth)
            frames.append(np.asarray(Image.open(path)).astype(int))
        return frames, live

    plain, _ = stream([False] * 6)
    smooth, live = stream([True] * 6)
    assert np.array_equal(smooth[0], plain[0])
    assert all(np.abs(s - p).mean() > 0.1 for s, p in zip(smooth[2:], plain[2:]))
    switched, live = stream([False, False, False, True, True, True])
    assert live.references == 1 and live.smooth
    assert np.array_equal(switched[2], plain[2]) and np.abs(switched[5] - plain[5]).mean() > 0.1


def test_page_message_of_a_checkpoint_that_does_not_fit():
    """The page gets the first mismatch and the hint, not hundreds of keys; temporary paths shortened."""
    from loading.checkpoint import CheckpointError
    page = app.App.__new__(app.App)
    page.root = '/tmp/app-root'
    err = CheckpointError('/tmp/app-root/ab12/x.pth does not fit with config c.yaml:\n  - kp_detector: 336 missing keys\n'
                          '  - dense_motion_network: 4 unexpected keys\n  - inpainting_network: 77 shape mismatches\n'
                          ' The checkpoint is TPSMM, num_tps=2. No bundled config fits it exactly.')
    assert page.message(err) == ('x.pth does not fit with config c.yaml: - kp_detector: 336 missing keys (and 2 more) '
                                 'The checkpoint is TPSMM, num_tps=2. No bundled config fits it exactly.')


def test_int8_models_give_each_video_its_own_calibration(tmp_path, monkeypatch):
    """app.py --precision int8: Animators are shared by every session, and int8 calibrates per
    video (as demo.py). Two videos animated at once, batch by batch in turn, must each give what
    it gives alone: without quantized copies per video, the second calibration would replace the
    first's mid-stream."""
    monkeypatch.setenv('KEYPOINT_ANIMATION_CACHE', str(tmp_path / 'cache'))
    fp32 = app.Models(SERVED, 'cpu').get(SERVED)
    assert fp32.for_one_video() is fp32
    animator = app.Models(SERVED, 'cpu', precision='int8').get(SERVED)
    assert animator.precision == 'int8'
    twin = animator.for_one_video()
    assert twin.int8 is not animator.int8 and twin.models is animator.models

    example = demo.example_inputs(num_frames=16)
    videos = [example.driving, np.ascontiguousarray(example.expected[:, ::-1])]     # two drivers, unalike
    batches = [[video[i:i + 4] for i in range(0, len(video), 4)] for video in videos]

    def animate(each: app.Animator, video: int):
        return each.animate(example.source, iter(batches[video]), mode='relative')

    alone = [np.concatenate(list(animate(animator.for_one_video(), v))) for v in (0, 1)]
    together = [[], []]
    streams = [animate(animator.for_one_video(), v) for v in (0, 1)]
    for step in range(len(batches[0])):
        for v in (0, 1):
            together[v].append(next(streams[v]))
    for v in (0, 1):
        np.testing.assert_array_equal(np.concatenate(together[v]), alone[v])
    shared = [animate(animator, v) for v in (0, 1)]             # what sharing one graph would give
    mixed = [[], []]
    for step in range(len(batches[0])):
        for v in (0, 1):
            mixed[v].append(next(shared[v]))
    assert not np.array_equal(np.concatenate(mixed[0]), alone[0])


def test_app_refuses_a_precision_the_device_cannot_run(capsys, monkeypatch):
    import os
    import tempfile
    # main() makes its own temporary folder the process's (and removes it): put them back after.
    monkeypatch.setattr(tempfile, 'tempdir', tempfile.tempdir)
    for name in ('TMPDIR', 'GRADIO_TEMP_DIR'):
        monkeypatch.setenv(name, os.environ.get(name, tempfile.gettempdir()))
    assert app.main(['--precision', 'fp16', '--device', 'cpu']) == 2
    assert 'needs a CUDA GPU' in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Issue 25: a photo without a face, a truncated upload, the terminal's first line
# ----------------------------------------------------------------------------------------------

def _page(tmp_path) -> 'app.App':
    return app.App(SERVED, str(tmp_path / 'root'), 'cpu', concurrency=1)


def test_crop_on_a_photo_without_a_face_is_one_page_message(tmp_path):
    """demo.py says it in one line; the page must show that line, not Gradio's generic error."""
    from PIL import Image
    from media import VideoWriter
    photo = tmp_path / 'wall.png'
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(photo)
    driving = tmp_path / 'driving.mp4'
    with VideoWriter(str(driving), fps=10) as writer:
        writer.write(np.full((3, 64, 64, 3), 90, np.uint8))
    page = _page(tmp_path)
    with pytest.raises(app.gr.Error) as caught:
        page.animate(str(photo), str(driving), app.SERVED, '', '', 'relative', False, app.REF_FIRST, 0, False,
                     True, False, request=None, progress=lambda *a, **k: None)     # crop on, smooth off
    assert 'no face found' in caught.value.message and 'wall.png' in caught.value.message


def test_a_truncated_upload_is_refused_at_once(tmp_path):
    """A video cut off near its end passes a first-frame probe: the upload check reads its end too."""
    import subprocess
    from conftest import ffmpeg_exe
    full = tmp_path / 'full.mp4'
    subprocess.run([ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
                    'testsrc=size=64x64:rate=25:duration=0.6', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-g', '2',
                    '-movflags', '+faststart', str(full)], check=True)
    data = full.read_bytes()
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(data[: int(len(data) * 0.6)])
    page = _page(tmp_path)
    assert 'cut.mp4' not in page.check_video(str(full)) and 'full.mp4' in page.check_video(str(full))
    with pytest.raises(app.gr.Error) as caught:
        page.check_video(str(cut))
    assert 'cut.mp4' in caught.value.message


def test_the_terminal_line_is_plain_text(capsys, monkeypatch):
    import os
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', tempfile.tempdir)
    for name in ('TMPDIR', 'GRADIO_TEMP_DIR'):
        monkeypatch.setenv(name, os.environ.get(name, tempfile.gettempdir()))

    def stop(self):                # instead of serving: main() prints its line first
        raise KeyboardInterrupt
    monkeypatch.setattr(app.App, 'build', stop)
    assert app.main(['--device', 'cpu']) == 130
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line.startswith('serving TPSMM, 64x64') and '*' not in line and '`' not in line, line
