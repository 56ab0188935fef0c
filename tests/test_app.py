"""app.py in a real browser: Debian's headless Chromium driven through chromedriver (Selenium).

One app server (`python app.py`, the bundled model, --max_video_seconds 5) serves the whole
module; it runs with TMPDIR and its working directory pointing at empty folders, so the last test
can check that it left nothing behind. Inputs come from ../shared/samples: the real photo, the
first 16 (and 100) frames of the real clip, a camera file (.y4m) made from it for Chromium's
fake camera. Screenshots of both tabs are saved under this module's temporary folder (the path
is printed).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, SHARED, num_threads, tiny_config

SAMPLES = SHARED / 'samples'
CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')
MAX_VIDEO_SECONDS = 5          # the full sample clip (6.8 s) is then too long, its first 100 frames (4 s) are not
START_TIMEOUT_S = 120


def _skip_reason() -> str | None:
    if not (CHROMIUM and CHROMEDRIVER):
        return ('Chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver; '
                '.ci/run installs them)')
    try:
        import selenium  # noqa: F401
        import gradio  # noqa: F401
    except ImportError as err:
        return f'{err.name} is not installed (make venv installs requirements.txt)'
    if not SAMPLES.is_dir():
        return f'the real samples are not at {SAMPLES} (../shared is absent)'
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or '')


# ----------------------------------------------------------------------------------------------
# Inputs, the server, the browser
# ----------------------------------------------------------------------------------------------

def first_frames(path: Path, n: int) -> Path:
    """The first n frames of the real clip, with its audio cut to length."""
    from media import VideoReader, VideoWriter
    src = SAMPLES / 'face-driving.mp4'
    with VideoReader(src) as reader, VideoWriter(path, fps=reader.fps, audio_from=src) as writer:
        for i, frame in enumerate(reader):
            if i == n:
                break
            writer.write(frame)
    return path


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('app')


@pytest.fixture(scope='module')
def inputs(work) -> dict[str, Path]:
    from conftest import ffmpeg_exe
    folder = work / 'inputs'
    folder.mkdir()
    clip16 = first_frames(folder / 'clip16.mp4', 16)
    broken = folder / 'broken.mp4'
    broken.write_bytes(clip16.read_bytes()[:len(clip16.read_bytes()) // 2])     # cut before the mp4 index
    not_image = folder / 'notes.png'
    not_image.write_text('this is text, not a picture\n')
    camera = folder / 'camera.y4m'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-y', '-i', str(SAMPLES / 'face-driving.mp4'), '-frames:v', '50',
                    '-vf', 'scale=320:320', '-pix_fmt', 'yuv420p', str(camera)], check=True)
    return {'source': SAMPLES / 'face-source.png', 'clip16': clip16,
            'clip_long': long_clip(folder / 'clip-long.mp4'),
            'too_long': SAMPLES / 'face-driving.mp4', 'broken': broken, 'not_image': not_image, 'camera': camera,
            'wrong_checkpoint': wrong_checkpoint(folder / 'tiny-tps.pth.tar')}


def long_clip(path: Path, n: int = 240, fps: int = 50) -> Path:
    """n frames of the real clip played forward then back, at `fps`: 4.8 s, under the server's
    limit, yet long enough to animate (about 10 s on a quiet 2-core machine) that Cancel arrives
    while the work runs."""
    from media import VideoReader, VideoWriter
    src = SAMPLES / 'face-driving.mp4'
    with VideoReader(src) as reader:
        frames = list(reader)
    frames = (frames + frames[::-1]) * (n // (2 * len(frames)) + 1)
    with VideoWriter(path, fps=fps, audio_from=src) as writer:      # (the request asks for audio)
        for frame in frames[:n]:
            writer.write(frame)
    return path


def wrong_checkpoint(path: Path) -> Path:
    """A TPSMM checkpoint of other network sizes than the served config (random weights)."""
    import torch
    from modules import build_models
    models = build_models(tiny_config('tiny/tps'))
    torch.save({k: m.state_dict() for k, m in models.items()}, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    """`python app.py` in a subprocess, with its own empty TMPDIR and working directory."""

    def __init__(self, work: Path, *options: str):
        self.tmpdir, self.cwd = work / 'server-tmp', work / 'server-cwd'
        self.tmpdir.mkdir()
        self.cwd.mkdir()
        self.log_path = work / 'server.log'
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}/'
        env = {**os.environ, 'TMPDIR': str(self.tmpdir), 'GRADIO_ANALYTICS_ENABLED': 'False',
               'PYTHONUNBUFFERED': '1'}
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen([sys.executable, str(REPO_ROOT / 'app.py'), '--port', str(self.port),
                                      *options],
                                     cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f'app.py exited with {self.proc.returncode}:\n{self.text()}')
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f'app.py did not answer in {START_TIMEOUT_S} s:\n{self.text()}') from None
                time.sleep(0.5)
        self.root = Path(re.search(r'temporary files in (\S+)', self.text()).group(1))

    def text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope='module')
def server(work):
    server = Server(work, '--threads', '1', '--max_video_seconds', str(MAX_VIDEO_SECONDS))
    yield server
    server.stop()


def new_browser(inputs, downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1280,1700',
                '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
                f'--use-file-for-fake-video-capture={inputs["camera"]}'):
        options.add_argument(arg)
    downloads.mkdir(parents=True, exist_ok=True)
    options.add_experimental_option('prefs', {'download.default_directory': str(downloads),
                                              'download.prompt_for_download': False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    return driver


@pytest.fixture(scope='module')
def browser(inputs, work):
    driver = new_browser(inputs, work / 'downloads')
    yield driver
    driver.quit()


@pytest.fixture(scope='module')
def screens(work) -> Path:
    folder = work / 'screenshots'
    folder.mkdir()
    print(f'\nscreenshots: {folder}')
    return folder


# ----------------------------------------------------------------------------------------------
# Page helpers
# ----------------------------------------------------------------------------------------------

def wait(condition, timeout: float = 60, what=''):
    """`what`: text for the timeout message, or a function giving it then (to show the page's state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what() if callable(what) else what}')
        time.sleep(0.2)


def find(driver, css: str):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def open_app(driver, server) -> None:
    driver.get(server.url)
    wait(lambda: find(driver, '#source input[type=file]'), what='the page')


def upload(driver, elem_id: str, path: Path) -> None:
    """Upload a file into a component, replacing what it holds (a file box shows no input then)."""
    if not find(driver, f'#{elem_id} input[type=file]'):
        find(driver, f'#{elem_id} button[aria-label=Clear]')[0].click()
    wait(lambda: find(driver, f'#{elem_id} input[type=file]'), 10, f'the upload input of #{elem_id}')[0] \
        .send_keys(str(path))


def text_of(driver, elem_id: str) -> str:
    found = find(driver, f'#{elem_id}')
    return found[0].text if found else ''


def toasts(driver) -> list[str]:
    return [e.text for e in find(driver, '[data-testid=toast-text]')]


def close_toasts(driver) -> None:
    for button in find(driver, '[data-testid=toast-close]'):
        try:
            button.click()
        except Exception:   # noqa: BLE001 - a toast that closed itself meanwhile
            pass
    wait(lambda: not find(driver, '[data-testid=toast-text]'), 15, 'the messages to close')


def expect_message(driver, pattern: str) -> str:
    """Exactly one message in the page, matching `pattern`; closed afterwards."""
    found = wait(lambda: toasts(driver), 60, f'a message matching {pattern!r}')
    time.sleep(0.5)                       # a second message would arrive with the first
    found = toasts(driver)
    assert len(found) == 1 and re.search(pattern, found[0]), found
    close_toasts(driver)
    return found[0]


def set_radio(driver, elem_id: str, value: str) -> None:
    for label in find(driver, f'#{elem_id} label'):
        if label.text.strip() == value:
            label.click()
            return
    raise AssertionError(f'no choice {value!r} in #{elem_id}')


def set_checkbox(driver, elem_id: str, on: bool) -> None:
    box = find(driver, f'#{elem_id} input[type=checkbox]')[0]
    if box.is_selected() != on:
        box.click()


def press_animate(driver) -> None:
    find(driver, '#animate')[0].click()


def wait_done(driver, timeout: float = 120) -> str:
    wait(lambda: text_of(driver, 'status').startswith('Done') or toasts(driver), timeout, 'the result')
    assert not toasts(driver), toasts(driver)
    wait(lambda: find(driver, '#result video[src]') and find(driver, '#download a[data-testid=download-link]'),
         30, 'the result video and its download link')
    return text_of(driver, 'status')


def assert_plays(driver, elem_id: str, width: int, seconds: float, audio: bool) -> None:
    """The page's player decodes the video (and its sound): Chromium has read frames of it."""
    video = find(driver, f'#{elem_id} video')[0]
    state = 'const v = arguments[0]; return [v.readyState, v.videoWidth, v.duration, v.webkitAudioDecodedByteCount]'
    wait(lambda: driver.execute_script(state, video)[0] >= 2, 30, f'#{elem_id} to load')
    driver.execute_script('arguments[0].muted = true; arguments[0].play()', video)

    def decoded():
        found = driver.execute_script(state, video)
        return found if found[3] > 0 or not audio else None
    _, video_width, duration, _ = wait(decoded, 30, f'#{elem_id} to decode its sound')
    assert video_width == width and duration == pytest.approx(seconds, abs=0.05)


def download(driver, dest: Path) -> Path:
    """Click the result's download link; the file Chromium saved, moved to `dest`."""
    folder = driver.downloads
    before = set(folder.iterdir())
    driver.execute_cdp_cmd('Page.setDownloadBehavior', {'behavior': 'allow', 'downloadPath': str(folder)})
    find(driver, '#download a[data-testid=download-link]')[0].click()

    def saved():
        new = [p for p in set(folder.iterdir()) - before if not p.name.endswith('.crdownload')]
        return new[0] if new and new[0].stat().st_size > 0 else None
    path = wait(saved, 30, 'the download')
    time.sleep(0.3)
    return Path(shutil.move(str(path), dest))


def demo_result(out: Path, source: Path, driving: Path, *options: str) -> Path:
    """What `python demo.py` writes for these inputs (in-process, one thread as the server)."""
    import demo
    with num_threads(1):
        assert demo.main(['--config', str(REPO_ROOT / demo.EXAMPLE_CONFIG),
                          '--checkpoint', str(REPO_ROOT / demo.EXAMPLE_CHECKPOINT), '--source_image', str(source),
                          '--driving_video', str(driving), '--result_video', str(out), '--quiet', '--cpu',
                          *options]) == 0
    return out


def assert_same_video(actual: Path, expected: Path, frames: int, fps: float, audio: bool) -> None:
    from media import VideoReader
    with VideoReader(actual) as a, VideoReader(expected) as e:
        assert a.fps == pytest.approx(fps) and a.has_audio == audio
        got, want = np.stack(list(a)), np.stack(list(e))
    assert len(got) == frames and got.shape == want.shape
    assert np.array_equal(got, want), f'frames differ: max |diff| {np.abs(got.astype(int) - want).max()}'
    assert actual.read_bytes() == expected.read_bytes()       # same encoder, same settings: same file


@pytest.fixture(scope='module')
def reference(work, inputs) -> Path:
    """demo.py's result for the real photo and the first 16 frames: relative (TPSMM's default), audio."""
    return demo_result(work / 'demo-relative-audio.mp4', inputs['source'], inputs['clip16'], '--audio')


# ----------------------------------------------------------------------------------------------
# Tests (in order: they share one server and one browser)
# ----------------------------------------------------------------------------------------------

def test_animate_equals_demo(server, browser, inputs, reference, work, screens):
    open_app(browser, server)
    upload(browser, 'source', inputs['source'])
    upload(browser, 'driving', inputs['clip16'])
    wait(lambda: 'clip16.mp4' in text_of(browser, 'driving-info'), 30, 'the driving video description')
    assert 'with audio' in text_of(browser, 'driving-info')
    press_animate(browser)
    wait(lambda: re.search(r'\d+/16 frames', text_of(browser, 'result')), 60, 'progress: frames done/total')
    status = wait_done(browser)
    assert re.match(r'Done: 16 frames at 25 fps, animated at 64x64, .* frames/s', status), status
    assert_plays(browser, 'result', width=64, seconds=0.64, audio=True)
    assert_plays(browser, 'side-by-side', width=3 * 64, seconds=0.64, audio=True)
    browser.save_screenshot(str(screens / 'animate.png'))
    result = download(browser, work / 'app-relative-audio.mp4')
    assert_same_video(result, reference, frames=16, fps=25, audio=True)


def test_bad_inputs_show_one_message_then_a_good_request_works(server, browser, inputs, reference, work):
    open_app(browser, server)
    upload(browser, 'source', inputs['not_image'])
    expect_message(browser, r"cannot read image 'notes\.png': not an image file")
    upload(browser, 'driving', inputs['broken'])
    expect_message(browser, r"cannot read video 'broken\.mp4': .*truncated")
    upload(browser, 'driving', inputs['too_long'])
    expect_message(browser, r"'face-driving\.mp4' is 6\.8 s long; this app accepts up to 5 s")
    # Animate with them anyway: the same messages, from the request itself.
    press_animate(browser)
    expect_message(browser, r"cannot read image 'notes\.png'")
    upload(browser, 'source', inputs['source'])
    press_animate(browser)
    expect_message(browser, r"'face-driving\.mp4' is 6\.8 s long")
    # A checkpoint typed in that does not fit the (served) config.
    set_radio(browser, 'model-choice', 'Another config and checkpoint on this machine')
    field = wait(lambda: find(browser, '#model-checkpoint textarea, #model-checkpoint input'),
                 what='the checkpoint field')[0]
    field.clear()
    field.send_keys(str(inputs['wrong_checkpoint']))
    wait(lambda: find(browser, '#model-load'), what='the Load model button')[0].click()
    expect_message(browser, r"tiny-tps\.pth\.tar does not fit with config .*tps-64-small\.yaml")
    upload(browser, 'driving', inputs['clip16'])
    press_animate(browser)
    expect_message(browser, r'tiny-tps\.pth\.tar does not fit')
    # Back to the served model: a good request succeeds, and the server kept running throughout.
    set_radio(browser, 'model-choice', 'Served model (synthetic-tps-64-small.pth.tar)')
    press_animate(browser)
    wait_done(browser)
    assert_same_video(download(browser, work / 'app-after-errors.mp4'), reference, frames=16, fps=25, audio=True)
    assert server.proc.poll() is None


def test_cancel_stops_the_work(server, browser, inputs):
    open_app(browser, server)
    upload(browser, 'source', inputs['source'])
    upload(browser, 'driving', inputs['clip_long'])
    wait(lambda: 'clip-long.mp4' in text_of(browser, 'driving-info'), 30, 'the driving video description')
    press_animate(browser)
    wait(lambda: re.search(r'\d+/240 frames', text_of(browser, 'result')), 60, 'the animation to start')
    find(browser, '#cancel')[0].click()
    status = wait(lambda: re.match(r'Cancelled after (\d+) of 240 frames; nothing was written\.',
                                   text_of(browser, 'status')), 30,
                  lambda: f'the cancellation (the status says {text_of(browser, "status")!r})')
    assert int(status.group(1)) < 240
    # The work stopped: the run's folder is empty (the writers' temporary files are gone), no
    # result was written, and the server process uses no more CPU time.
    run = max(server.root.glob('sessions/*/run-*'), key=lambda p: p.stat().st_mtime)
    assert not list(run.iterdir()), list(run.iterdir())
    assert f'{run}/result.mp4' not in server.text()
    busy = cpu_seconds(server.proc.pid)
    time.sleep(2)
    assert cpu_seconds(server.proc.pid) - busy < 0.5, 'the server is still computing after Cancel'


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def test_two_sessions_at_once(server, browser, inputs, reference, work):
    """Two pages animate at the same time (the queue runs 2 at once): each gets its own, correct result."""
    import demo
    example = work / 'example'
    _, example_source, example_driving = demo.write_example_inputs(str(example), 64)
    expected_b = demo_result(work / 'demo-example-standard.mp4', Path(example_source), Path(example_driving),
                             '--mode', 'standard')
    other = new_browser(inputs, work / 'downloads-b')
    try:
        open_app(browser, server)
        open_app(other, server)
        upload(browser, 'source', inputs['source'])
        upload(browser, 'driving', inputs['clip16'])
        find(other, '#example')[0].click()
        wait(lambda: 'driving.mp4' in text_of(other, 'driving-info'), 60, 'the example inputs')
        set_radio(other, 'mode', 'standard')
        set_checkbox(other, 'audio', False)
        wait(lambda: 'clip16.mp4' in text_of(browser, 'driving-info'), 30, 'the driving video description')
        press_animate(other)
        press_animate(browser)
        wait_done(browser)
        wait_done(other)
        assert_same_video(download(browser, work / 'app-a.mp4'), reference, frames=16, fps=25, audio=True)
        assert_same_video(download(other, work / 'app-b.mp4'), expected_b, frames=64, fps=25, audio=False)
        sessions = set(server.root.glob('sessions/*'))
        assert len(sessions) >= 2
    finally:
        other.quit()
    # Closing a page ends its session: its folder goes.
    wait(lambda: len(set(server.root.glob('sessions/*'))) < len(sessions), 60, "the closed page's session folder to go")


def test_live_tab_animates_the_camera(server, browser, inputs, screens):
    from PIL import Image
    from selenium.webdriver.common.by import By
    open_app(browser, server)
    next(b for b in browser.find_elements(By.CSS_SELECTOR, 'button[role=tab]') if b.text == 'Live').click()
    upload(browser, 'live-source', inputs['source'])
    wait(lambda: find(browser, '#live-source img'), 30, 'the live source image')
    wait(lambda: find(browser, '#camera [title="grant webcam access"] button'), 30, 'the camera button')[0].click()
    wait(lambda: find(browser, '#camera button[aria-label="capture photo"]'), 30, 'the record button')[0].click()
    seen: dict[str, np.ndarray] = {}

    def frames_seen():
        img = find(browser, '#live-output img')
        src = img[0].get_attribute('src') if img else None
        if src and src not in seen:
            seen[src] = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src).read())).convert('RGB'), float)
        return len(seen) >= 6
    wait(frames_seen, 90, 'six live output frames')
    status = text_of(browser, 'live-status')
    fps = float(re.search(r'([0-9.]+) output frames/s', status).group(1))
    assert fps > 0, status
    browser.save_screenshot(str(screens / 'live.png'))
    frames = list(seen.values())
    assert all(f.shape == frames[0].shape for f in frames)
    changes = [np.abs(a - b).mean() for a, b in zip(frames, frames[1:])]
    assert max(changes) > 1.0, f'the live output does not change over time: mean |diff| {changes}'
    reference = int(re.search(r'reference frame #(\d+)', status).group(1))
    find(browser, '#reset')[0].click()
    wait(lambda: f'reference frame #{reference + 1}' in text_of(browser, 'live-status'), 30, 'a new reference frame')
    print(f'live tab: {status}')


def test_nothing_left_behind(server, browser):
    """The app wrote only under its own temporary folder, and removes it when it stops."""
    assert server.root.parent == server.tmpdir and server.root.is_dir()
    assert [p.name for p in server.tmpdir.iterdir()] == [server.root.name], list(server.tmpdir.iterdir())
    assert not any(server.cwd.iterdir()), list(server.cwd.iterdir())
    browser.get('about:blank')
    assert server.stop() in (0, 130), server.text()
    assert not any(server.tmpdir.iterdir()), list(server.tmpdir.iterdir())
    assert not any(server.cwd.iterdir()), list(server.cwd.iterdir())
    # No traceback through the project's code (Gradio logs some of its own, e.g. an event stream
    # asked for after its page's session ended).
    ours = re.findall(rf'File "{re.escape(str(REPO_ROOT))}/(?!\.venv/)[^"]+"', server.text())
    assert not ours, server.text()
