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
    it gives alone: without a graph per video, the second calibration would replace the first's
    mid-stream."""
    pytest.importorskip('onnxruntime')
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
