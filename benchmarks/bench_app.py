"""app.py in headless Chromium: Live-tab frames/s, and the Animate tab's time against demo.py.

    python benchmarks/bench_app.py live [--seconds 20] [--models bundled fomm-vox-256 tps-vox-256]
    python benchmarks/bench_app.py animate [--frames 100] [--repeat 5]
    (wrap in `flock /tmp/bench.lock ...` on a shared machine; both need Chromium and ../shared/samples)

live: for each model an app server serves it (`--threads`, default 1), Chromium's fake camera plays
the real clip (320x320) into the Live tab, and after the first output frame the page is watched
for `--seconds`: frames/s as the browser shows them (distinct output images per second) and the
server's own figure (output frames/s and model ms/frame, median of the samples). vox-256 models
get random weights (a checkpoint built from the config in a temporary folder): the speed is that
of the real model, the pictures are meaningless.

animate: one app server (bundled model) and one browser page holding the real photo and the first
`--frames` frames of the real clip; `--repeat` times, alternating, (A) press Animate and wait for
the result in the page, (B) run `python demo.py` on the same inputs with the same options as a
new process. Prints medians of: A's time from the click to the result shown, the animation loop
inside it (demo.animate_files' own figure from the server's log), B's whole-process time and its
loop. The app's extra work per request: probing the video, writing the side-by-side video, the
queue and the page; it keeps the model loaded between requests, demo.py loads it every time.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests'), str(REPO / 'benchmarks')]

from demo_runs import random_checkpoint  # noqa: E402
from test_app import SAMPLES, Server, find, first_frames, new_browser, open_app, text_of, upload, wait  # noqa: E402

LOOP = re.compile(r'animation ([0-9.]+) s')
MODELS = {'bundled': 'config/synthetic/tps-64-small.yaml', 'fomm-vox-256': 'config/fomm/vox-256.yaml',
          'tps-vox-256': 'config/tps/vox-256.yaml'}


COUNT_FRAMES = """
window.liveFrames = [];
const seen = new Set();
new MutationObserver(() => {
    const img = document.querySelector('#live-output img');
    if (img && img.src && !seen.has(img.src)) { seen.add(img.src); window.liveFrames.push(performance.now()); }
}).observe(document.querySelector('#live-output'), {subtree: true, childList: true, attributes: true});
"""


def camera_file(folder: Path) -> Path:
    from imageio_ffmpeg import get_ffmpeg_exe as ffmpeg_exe
    path = folder / 'camera.y4m'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-y', '-i', str(SAMPLES / 'face-driving.mp4'), '-frames:v', '100',
                    '-vf', 'scale=320:320', '-pix_fmt', 'yuv420p', str(path)], check=True)
    return path


def measure_live(name: str, folder: Path, camera: Path, seconds: float, threads: int) -> dict:
    from selenium.webdriver.common.by import By
    config = REPO / MODELS[name]
    checkpoint = REPO / 'checkpoints/synthetic-tps-64-small.pth.tar' if name == 'bundled' \
        else Path(random_checkpoint(str(config), str(folder / 'random.pth.tar')))
    server = Server(folder, '--config', str(config), '--checkpoint', str(checkpoint), '--threads', str(threads))
    browser = new_browser({'camera': camera}, folder / 'downloads')
    try:
        open_app(browser, server)
        next(b for b in browser.find_elements(By.CSS_SELECTOR, 'button[role=tab]') if b.text == 'Live').click()
        upload(browser, 'live-source', SAMPLES / 'face-source.png')
        wait(lambda: find(browser, '#live-source img'), 30, 'the source image')
        wait(lambda: find(browser, '#camera [title="grant webcam access"] button'), 30, 'the camera')[0].click()
        wait(lambda: find(browser, '#camera button[aria-label="capture photo"]'), 30, 'record')[0].click()
        wait(lambda: find(browser, '#live-output img[src]'), 300, 'the first output frame')
        # The page counts its own new output images (no WebDriver round trip per frame).
        browser.execute_script(COUNT_FRAMES)
        samples = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            found = re.search(r'([0-9.]+) output frames/s · model (\d+) ms/frame', text_of(browser, 'live-status'))
            if found:
                samples.append((float(found.group(1)), float(found.group(2))))
            time.sleep(0.5)
        shown = browser.execute_script('return window.liveFrames')
    finally:
        browser.quit()
        server.stop()
    return {'browser_fps': (len(shown) - 1) / ((shown[-1] - shown[0]) / 1000) if len(shown) > 1 else 0.0,
            'server_fps': statistics.median(s[0] for s in samples),
            'model_ms': statistics.median(s[1] for s in samples)}


def run_live(args, work: Path) -> None:
    camera = camera_file(work)
    print(f'Live tab, {args.seconds:g} s per model, --threads {args.threads}, camera 320x320 from the real clip')
    for name in args.models:
        folder = work / name
        folder.mkdir()
        r = measure_live(name, folder, camera, args.seconds, args.threads)
        print(f"  {name:14s} {r['browser_fps']:5.1f} frames/s shown in the page; server: "
              f"{r['server_fps']:5.1f} output frames/s, model {r['model_ms']:.0f} ms/frame (medians)", flush=True)


def run_animate(args, work: Path) -> None:
    import demo
    driving = first_frames(work / f'clip{args.frames}.mp4', args.frames)
    source = SAMPLES / 'face-source.png'
    server = Server(work, '--threads', str(args.threads))
    browser = new_browser({'camera': driving}, work / 'downloads')
    app_total, app_loop, demo_total, demo_loop = [], [], [], []
    cmd = [sys.executable, str(REPO / 'demo.py'), '--config', str(REPO / demo.EXAMPLE_CONFIG),
           '--checkpoint', str(REPO / demo.EXAMPLE_CHECKPOINT), '--source_image', str(source),
           '--driving_video', str(driving), '--result_video', str(work / 'demo.mp4'), '--mode', 'relative',
           '--audio', '--threads', str(args.threads), '--quiet']
    try:
        open_app(browser, server)
        upload(browser, 'source', source)
        upload(browser, 'driving', driving)
        wait(lambda: driving.name in text_of(browser, 'driving-info'), 30, 'the upload')
        def result_src():
            video = find(browser, '#result video[src]')
            return video[0].get_attribute('src') if video else None

        for i in range(args.repeat):
            log_before, shown = len(LOOP.findall(server.text())), result_src()
            start = time.perf_counter()
            find(browser, '#animate')[0].click()
            wait(lambda: result_src() not in (None, shown), 600, 'the result')     # each run has its own folder
            app_total.append(time.perf_counter() - start)
            app_loop.append(float(LOOP.findall(server.text())[log_before]))
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            demo_total.append(time.perf_counter() - start)
            demo_loop.append(float(LOOP.search(out).group(1)))
            print(f'  run {i + 1}: app {app_total[-1]:.2f} s (loop {app_loop[-1]:.2f}), '
                  f'demo.py {demo_total[-1]:.2f} s (loop {demo_loop[-1]:.2f})', flush=True)
    finally:
        browser.quit()
        server.stop()
    med = statistics.median
    print(f'Animate tab vs demo.py, bundled model, real photo + first {args.frames} frames, relative, audio, '
          f'--threads {args.threads}, medians of {args.repeat} alternating runs:')
    print(f'  app: click to result shown {med(app_total):.2f} s, its animation loop {med(app_loop):.2f} s, '
          f'overhead {med(np.subtract(app_total, app_loop)):.2f} s')
    print(f'  demo.py: whole process {med(demo_total):.2f} s, its animation loop {med(demo_loop):.2f} s')
    print(f'  app request / demo.py process: {med(app_total) / med(demo_total):.2f}; '
          f'app loop / demo loop: {med(app_loop) / med(demo_loop):.2f}')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('what', choices=('live', 'animate'))
    p.add_argument('--models', nargs='+', choices=sorted(MODELS), default=list(MODELS))
    p.add_argument('--seconds', type=float, default=20)
    p.add_argument('--frames', type=int, default=100)
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='bench-app-') as tmp:
        (run_live if args.what == 'live' else run_animate)(args, Path(tmp))
    return 0


if __name__ == '__main__':
    sys.exit(main())
