"""A local browser app: animate a photo with a driving video, or live with a webcam (Gradio).

    python app.py                       # the bundled small TPSMM model, http://127.0.0.1:7860
    python app.py --config config/fomm/vox-256.yaml --checkpoint vox-cpk.pth.tar --port 8000

Animate tab: upload a source image and a driving video (or press "Use example inputs"), pick the
options demo.py has, press Animate. The work goes through demo.py itself (`demo.animate_files`:
the same option checks, `animate.Animator`, `demo.run_animation` and `media.VideoWriter`), so
the result is the file `python demo.py` writes for the same inputs and options. The page shows
frames done / total and frames/s while it runs; Cancel stops the work at the next frame and
leaves nothing behind.

Live tab: a browser camera drives the source image frame by frame with relative motion; the
reference frame is the first one after Record (or after a pause), or the one at "Reset reference".
"Smooth motion" (both tabs, off by default) is demo.py --smooth: the driving keypoints are smoothed
over time with a causal One-Euro filter; live, at the camera frames' own arrival times.

Model: the served one (--config / --checkpoint, loaded at start), or another config and
checkpoint typed in as paths on the machine running the app. Checkpoints are never uploaded.

Options
  --config PATH, --checkpoint PATH   the served model (default: the bundled small TPSMM model,
                          config/synthetic/tps-64-small.yaml + checkpoints/synthetic-tps-64-small.pth.tar)
  --host HOST             address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 lets
                          others on the network in, and they can then load any checkpoint path on it)
  --port N                port (default 7860)
  --device DEV            torch device (default cuda when available, else cpu)
  --threads N             CPU threads for torch (default: torch's choice)
  --precision P           fp32 (default) | int8 (CPU) | bf16 | fp16 (CUDA): as demo.py --precision,
                          for every model the app loads. With int8 each Animate request is
                          calibrated on its own first driving frames, as demo.py does (same file),
                          and each Live reference on its first frame (ranges cached per input).
  --concurrency N         animations processed at once (default 2); more requests wait in
                          Gradio's queue, which shows their place. Live streams have their own
                          limit of N.
  --max_video_seconds S   longest driving video accepted (default 120)
  --detector D            dlib's face detector for "Crop the face": as demo.py --detector (hog,
                          the default, looks again at 2x and 4x size where it finds no face)

Files: everything the app writes is under one temporary folder (printed at start), removed on
exit: Gradio's upload cache (files older than an hour are pruned every 30 minutes) and one folder
per browser session for its results and live frames, removed when the page is closed.
"""
import argparse
import collections
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)



def private_temp_root() -> str:
    """A new folder for everything the app writes, made the process's temporary folder (TMPDIR,
    tempfile, and Gradio's GRADIO_TEMP_DIR for uploads). main() removes it on exit."""
    root = tempfile.mkdtemp(prefix='image-animation-app-')
    os.environ['GRADIO_TEMP_DIR'] = os.environ['TMPDIR'] = root
    tempfile.tempdir = root
    return root


# Run as a program, the folder is made before gradio and torch are imported: both create folders
# in the temporary folder as they load. Imported as a module, main() makes it.
TEMP_ROOT = private_temp_root() if __name__ == '__main__' else None

import gradio as gr  # noqa: E402

import demo  # noqa: E402
from animate import Animator, MODES, to_tensor, to_uint8  # noqa: E402
from faces.backend import FaceModelError, NoFaceError  # noqa: E402
from loading.checkpoint import CheckpointError  # noqa: E402
from modules.config import ConfigError  # noqa: E402
from media import MediaError, VideoReader, VideoWriter, load_image, resize_frame  # noqa: E402
from modules.temporal_filter import KeypointSmoother, OneEuroParams  # noqa: E402

DEFAULT_PORT = 7860
DEFAULT_CONCURRENCY = 2
DEFAULT_MAX_VIDEO_SECONDS = 120.0
EXAMPLE_FRAMES = 64
LIVE_DISPLAY_HEIGHT = 256        # small models' live output is enlarged (nearest) to about this height
LIVE_STREAM_EVERY_S = 0.04       # the browser sends a camera frame at most every 40 ms (25 fps)
LIVE_RESTART_GAP_S = 2.0         # a pause this long in the camera stream starts a new reference
LIVE_FILES_KEPT = 30             # live output frames kept on disk per session (the page shows the last)
LIVE_FPS_WINDOW = 20             # output fps over the last this many frames
CACHE_PRUNE = (1800, 3600)       # Gradio's delete_cache: every 30 min, files older than an hour

# Errors about the request's inputs: one message in the page (a photo without a face with --crop
# included), never Gradio's generic "error".
USER_ERRORS = (MediaError, ConfigError, CheckpointError, demo.DemoError, FaceModelError, NoFaceError)

SERVED, OTHER = 'served', 'other'
REF_FIRST, REF_BEST, REF_NUMBER = 'first frame', 'best match (face landmarks)', 'frame number'


class AppError(Exception):
    """A problem with a request, shown in the page as one message."""


class Cancelled(Exception):
    """The user pressed Cancel."""


def page_error(message: str) -> gr.Error:
    """An error for the page: one message there, one line (no traceback) in the server's log."""
    print(f'request refused: {message}', file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


# ----------------------------------------------------------------------------------------------
# Animation options: the page's controls as demo.py's command line
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class AnimateOptions:
    """The Animate tab's controls. `demo_argv` is the only place that maps them to demo.py's
    options; another demo.py option is one field here, one line in `demo_argv`, and one control
    in `App.animate_controls` (as `crop` was)."""
    mode: str = 'relative'
    adapt_scale: bool = False
    reference: str = REF_FIRST
    frame: int = 0
    audio: bool = True
    crop: bool = False
    smooth: bool = False

    def demo_argv(self, family: str) -> list[str]:
        argv = ['--mode', self.mode]
        if self.adapt_scale and family == 'fomm':     # TPSMM's relative mode always adapts the scale
            argv.append('--adapt_scale')
        if self.reference == REF_BEST:
            argv.append('--find_best_frame')
        elif self.reference == REF_NUMBER:
            argv += ['--best_frame', str(self.frame)]
        if self.audio:
            argv.append('--audio')
        if self.crop:
            argv.append('--crop')
        if self.smooth:
            argv.append('--smooth')
        return argv


def default_options(family: str) -> AnimateOptions:
    """TPSMM: relative (demo.py's default); FOMM: relative with adapted scale, the combination the
    FOMM authors recommend for animating another person (demo.py keeps the reference's standard)."""
    return AnimateOptions(mode='relative', adapt_scale=family == 'fomm')


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelFiles:
    config: str
    checkpoint: str

    def key(self) -> tuple:
        stamps = tuple(os.stat(p).st_mtime_ns if os.path.exists(p) else None for p in (self.config, self.checkpoint))
        return (os.path.abspath(self.config), os.path.abspath(self.checkpoint), stamps)


def modes_of(animator: Animator) -> tuple[str, ...]:
    """The motion modes a loaded model offers (TPSMM's avd only with an AVD network in the checkpoint)."""
    loaded = getattr(animator, 'loaded_networks', animator.models.keys())
    return tuple(m for m in MODES[animator.family] if m != 'avd' or 'avd_network' in loaded)


class Models:
    """Animators built once per model files: the served model stays loaded, the last `keep` other
    models typed into the page too. Animators are shared by all sessions (inference only)."""

    def __init__(self, served: ModelFiles, device, keep: int = 2, precision: str = 'fp32'):
        self.served = served
        self.device = device
        self.keep = keep
        self.precision = precision
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple, Animator] = collections.OrderedDict()

    def get(self, files: ModelFiles) -> Animator:
        for path, what in ((files.config, 'config'), (files.checkpoint, 'checkpoint')):
            if not path:
                raise AppError(f'type the path of a {what} file on this machine')
            if not os.path.isfile(path):
                raise AppError(f'{what} {path!r}: no such file on the machine running the app')
        key = files.key()
        with self._lock:
            if key not in self._cache:
                self._cache[key] = Animator.from_files(files.config, files.checkpoint, device=self.device,
                                                       precision=self.precision)
                served = self.served.key()
                others = [k for k in self._cache if k != served]     # oldest first
                for old in others[:max(0, len(others) - self.keep)]:
                    del self._cache[old]
            self._cache.move_to_end(key)
            return self._cache[key]

    @staticmethod
    def describe(animator: Animator, files: ModelFiles, markdown: bool = True) -> str:
        """The model in one line: Markdown for the page, plain text (markdown=False) for the terminal."""
        name = 'FOMM' if animator.family == 'fomm' else 'TPSMM'
        h, w = animator.frame_size
        modes = ', '.join(modes_of(animator))
        bold, code = ('**', '`') if markdown else ('', '')
        return (f'{bold}{name}{bold}, {w}x{h}, {animator.precision}, modes: {modes} · {code}{files.config}{code} · '
                f'{code}{files.checkpoint}{code}')


# ----------------------------------------------------------------------------------------------
# Sessions: one temporary folder and one running job per browser page
# ----------------------------------------------------------------------------------------------

class Job:
    def __init__(self, folder: str):
        self.folder = folder
        self.cancel = threading.Event()


class LiveState:
    """The Live tab's per-session state: the prepared source and reference, timing, frame files."""

    def __init__(self, folder: str):
        self.folder = folder
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.prepared: dict | None = None
        self.animator = None          # the Animator `prepared` belongs to (its own with int8)
        self.smooth = False           # whether `prepared` holds a keypoint filter
        self.reset = False
        self.last_frame_at = 0.0
        self.done_at: collections.deque[float] = collections.deque(maxlen=LIVE_FPS_WINDOW)
        self.count = 0
        self.references = 0
        self.files: collections.deque[str] = collections.deque()

    def write(self, frame: np.ndarray) -> str:
        """Save an output frame for the page (JPEG), keeping the last LIVE_FILES_KEPT on disk."""
        from PIL import Image
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, f'{self.count:07d}.jpg')
        Image.fromarray(frame).save(path, quality=92)
        self.count += 1
        self.files.append(path)
        while len(self.files) > LIVE_FILES_KEPT:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.files.popleft())
        return path


class Session:
    def __init__(self, folder: str):
        self.folder = folder
        self.runs = 0
        self.job: Job | None = None
        self.idle = threading.Condition()
        self.running = 0
        self.live = LiveState(os.path.join(folder, 'live'))
        self.closed = False

    @contextlib.contextmanager
    def new_job(self):
        with self.idle:
            if self.closed:
                raise page_error("this page's session has ended; reload the page")
            if self.job is not None:
                self.job.cancel.set()        # a new Animate in the same page replaces the old one
            self.runs += 1
            job = self.job = Job(os.path.join(self.folder, f'run-{self.runs}'))
            self.running += 1
        try:
            yield job
        finally:
            with self.idle:
                self.running -= 1
                if self.job is job:
                    self.job = None
                self.idle.notify_all()

    def cancel(self) -> None:
        """Ask the running job, if any, to stop at its next frame."""
        with self.idle:
            if self.job is not None:
                self.job.cancel.set()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the running job, wait for it and for a live frame in progress, remove the folder."""
        self.closed = True
        self.cancel()
        with self.idle:
            self.idle.wait_for(lambda: self.running == 0, timeout=timeout)
        with self.live.lock:
            shutil.rmtree(self.folder, ignore_errors=True)


class Sessions:
    def __init__(self, root: str):
        self.root = root
        self._lock = threading.Lock()
        self._items: dict[str, Session] = {}
        self._closed = False

    @staticmethod
    def _id(request: gr.Request | None) -> str:
        raw = getattr(request, 'session_hash', None) or 'local'
        return re.sub(r'[^A-Za-z0-9_-]', '_', raw)[:64]

    def get(self, request: gr.Request | None) -> Session:
        sid = self._id(request)
        with self._lock:
            if self._closed:
                raise page_error('the app is shutting down')
            if sid not in self._items:
                self._items[sid] = Session(os.path.join(self.root, sid))
            return self._items[sid]

    def close(self, request: gr.Request | None) -> None:
        with self._lock:
            session = self._items.pop(self._id(request), None)
        if session is not None:
            session.close()

    def close_all(self) -> None:
        with self._lock:
            sessions, self._items, self._closed = list(self._items.values()), {}, True
        for session in sessions:
            session.close(timeout=10)


# ----------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------

def upload_path(payload: Any) -> str | None:
    """The server-side path of an uploaded file (a Gradio FileData dict or a plain path)."""
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get('path')
    return str(payload)


def square_crop(frame: np.ndarray) -> np.ndarray:
    """The centred square of a camera frame (H, W, 3): the models animate square frames."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frame[top:top + side, left:left + side]


class App:
    def __init__(self, served: ModelFiles, root: str, device, max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
                 concurrency: int = DEFAULT_CONCURRENCY, precision: str = 'fp32', detector: str = 'hog'):
        self.root = root
        self.detector = detector
        self.device = device
        self.max_video_seconds = max_video_seconds
        self.concurrency = concurrency
        self.precision = precision
        self.models = Models(served, device, precision=precision)
        self.sessions = Sessions(os.path.join(root, 'sessions'))
        self._example_lock = threading.Lock()
        self.served_animator = self.models.get(served)        # fail at start, not in the first request

    # -- messages --------------------------------------------------------------------------------

    def message(self, err: BaseException) -> str:
        """One line for the page; files in the app's temporary folder are named by their file name.

        A checkpoint that does not fit its config lists every mismatch, one per line (hundreds of
        keys): the page gets the first line, the first mismatch and the closing hint."""
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        problems = [line for line in lines[1:] if line.startswith('- ')]
        if isinstance(err, CheckpointError) and len(problems) > 1:
            rest = [line for line in lines[1:] if not line.startswith('- ')]
            lines = [lines[0], f'{problems[0]} (and {len(problems) - 1} more)', *rest]
        text = demo.one_line(Exception('\n'.join(lines)))
        return re.sub(re.escape(self.root) + r'[^\'"\s]*/', '', text)

    @contextlib.contextmanager
    def page_errors(self):
        """Turn a user-facing error into one message in the page (gr.Error); the server goes on."""
        try:
            yield
        except gr.Error:
            raise
        except (*USER_ERRORS, AppError) as err:
            raise page_error(self.message(err)) from None

    # -- model -----------------------------------------------------------------------------------

    def model_files(self, which: str, config: str, checkpoint: str) -> ModelFiles:
        if which == SERVED:
            return self.models.served
        return ModelFiles((config or '').strip(), (checkpoint or '').strip())

    def load_model(self, which: str, config: str, checkpoint: str):
        """Model radio / Load button: load (or find) the model, show what it is, fit the controls."""
        with self.page_errors():
            files = self.model_files(which, config, checkpoint)
            animator = self.models.get(files)
        options = default_options(animator.family)
        return (self.models.describe(animator, files),
                gr.update(choices=list(modes_of(animator)), value=options.mode),
                gr.update(value=options.adapt_scale, interactive=animator.family == 'fomm'),
                gr.update(value=options.adapt_scale, interactive=animator.family == 'fomm'))

    # -- inputs ------------------------------------------------------------------------------------

    def check_image(self, payload) -> None:
        """Upload of a source image: a file that is not a readable image is one message at once."""
        path = upload_path(payload)
        if path is not None:
            with self.page_errors():
                load_image(path)

    def probe_video(self, path: str) -> VideoReader:
        """Open the driving video (decodes the first frame and checks its end) and apply the length limit."""
        reader = VideoReader(path, strict=True)
        try:
            reader.check_tail()       # a file cut off near its end is refused now, as demo.py refuses it
        except BaseException:
            reader.close()
            raise
        seconds = reader.duration
        if seconds is None and reader.estimated_num_frames is not None:
            seconds = reader.estimated_num_frames / reader.fps
        if seconds is not None and seconds > self.max_video_seconds + 0.5 / reader.fps:
            reader.close()
            raise AppError(f'the driving video {os.path.basename(path)!r} is {seconds:.1f} s long; this app '
                           f'accepts up to {self.max_video_seconds:g} s (app.py --max_video_seconds)')
        return reader

    def check_video(self, payload) -> str:
        """Upload of a driving video: a broken or too long one is one message at once; a good one
        is described."""
        path = upload_path(payload)
        if path is None:
            return ''
        with self.page_errors():
            reader = self.probe_video(path)
        reader.close()
        length = f', {reader.duration:.1f} s' if reader.duration else ''
        sound = 'with audio' if reader.has_audio else 'no audio'
        return f'`{os.path.basename(path)}`: {reader.width}x{reader.height}, {reader.fps:g} fps{length}, {sound}'

    def example_inputs(self):
        """demo.py --example's generated source image and driving video (made once per app)."""
        folder = os.path.join(self.root, 'example')
        with self._example_lock:
            source, driving = os.path.join(folder, 'source.png'), os.path.join(folder, 'driving.mp4')
            if not (os.path.isfile(source) and os.path.isfile(driving)):
                _, source, driving = demo.write_example_inputs(folder, EXAMPLE_FRAMES)
        return source, driving

    # -- Animate ---------------------------------------------------------------------------------

    def animate(self, source, driving, which, config, checkpoint, mode, adapt_scale, reference, frame, audio, crop,
                smooth, request: gr.Request, progress=gr.Progress()):
        """The Animate button. Inputs arrive unprocessed (preprocess=False) so that a bad upload is
        reported here, in demo.py's words, rather than as Gradio's generic error."""
        session = self.sessions.get(request)
        source_path, driving_path = upload_path(source), upload_path(driving)
        options = AnimateOptions(mode=mode, adapt_scale=bool(adapt_scale), reference=reference,
                                 frame=int(frame or 0), audio=bool(audio), crop=bool(crop), smooth=bool(smooth))
        with session.new_job() as job, self.page_errors():
            if source_path is None:
                raise AppError('upload a source image first (or press "Use example inputs")')
            if driving_path is None:
                raise AppError('upload a driving video first (or press "Use example inputs")')
            load_image(source_path)          # its problem first, as demo.py reports it
            files = self.model_files(which, config, checkpoint)
            progress(0, desc='Loading the model')
            animator = self.models.get(files)
            if mode not in modes_of(animator):
                raise AppError(f'mode {mode!r} is not available with {os.path.basename(files.checkpoint)!r} '
                               f'(modes: {", ".join(modes_of(animator))})')
            try:
                stats = self.run_job(job, animator, files, source_path, driving_path, options, progress)
            except Cancelled as stop:
                return None, None, None, f'Cancelled after {stop}; nothing was written.'
        result, sbs = (os.path.join(job.folder, name) for name in ('result.mp4', 'side-by-side.mp4'))
        h, w = animator.frame_size
        status = (f"Done: {stats['frames']} frames at {stats['fps']:g} fps, animated at {w}x{h}, "
                  f"{stats['seconds']:.1f} s ({stats['frames'] / max(stats['seconds'], 1e-9):.1f} frames/s).")
        return result, sbs, result, status

    def run_job(self, job: Job, animator: Animator, files: ModelFiles, source_path: str, driving_path: str,
                options: AnimateOptions, progress) -> dict:
        """demo.py's animation of one request into the job's folder, with the side-by-side beside it."""
        reader = self.probe_video(driving_path)
        reader.close()
        if options.audio and not reader.has_audio:
            gr.Warning(f'the driving video {os.path.basename(driving_path)!r} has no audio track; '
                       'the result is silent')
        result = os.path.join(job.folder, 'result.mp4')
        argv = ['--config', files.config, '--checkpoint', files.checkpoint, '--source_image', source_path,
                '--driving_video', driving_path, '--result_video', result, '--device', str(self.device),
                '--precision', self.precision, '--detector', self.detector, '--quiet',
                *options.demo_argv(animator.family)]
        args = demo.parse_args(argv)
        total = reader.num_frames or reader.estimated_num_frames or 0
        limit = int(self.max_video_seconds * reader.fps) + 1
        done, first, src = 0, None, {}        # first: (time, frames) at the first batch, for frames/s
        audio_from = driving_path if options.audio and reader.has_audio else None

        def on_batch(driving_batch: np.ndarray, result_batch: np.ndarray) -> None:
            nonlocal done, first
            done += len(result_batch)
            if job.cancel.is_set():
                raise Cancelled(f'{done} of {max(total, done)} frames')
            if done > limit:
                raise AppError(f'the driving video {os.path.basename(driving_path)!r} is longer than '
                               f'{self.max_video_seconds:g} s (app.py --max_video_seconds)')
            shape = driving_batch.shape[1:3]
            if shape not in src:
                src[shape] = load_image(source_path, size=shape)
            # At the animation size: the page's player scales it (demo.py --example's x4 costs
            # the bundled model half its speed in encoding).
            sbs.write(demo.side_by_side(src[shape], driving_batch, result_batch, zoom=1))
            now = time.perf_counter()
            first = first or (now, done)
            rate = f'{(done - first[1]) / (now - first[0]):.1f} frames/s' if now > first[0] else 'started'
            progress((done, max(total, done)), desc=f'Animating: {rate}', unit='frames')

        if job.cancel.is_set():
            raise Cancelled('0 frames')
        with VideoWriter(os.path.join(job.folder, 'side-by-side.mp4'), fps=reader.fps, audio_from=audio_from) as sbs:
            return demo.animate_files(args, config_path=files.config, checkpoint_path=files.checkpoint,
                                      on_batch=on_batch, animator=animator.for_one_video())

    def cancel(self, request: gr.Request) -> None:
        # No output: the running job writes the status line itself ("Cancelled after N of M frames")
        # when it stops at its next frame. A "Cancelling…" written from here could reach the page
        # after that line and stay (the browser test saw it in about 1 run in 10).
        self.sessions.get(request).cancel()

    # -- Live --------------------------------------------------------------------------------------

    def live_frame(self, frame, source, which, config, checkpoint, adapt_scale, smooth, request: gr.Request):
        """One camera frame in, one animated frame out (relative motion to the reference frame)."""
        if frame is None:
            return gr.skip(), gr.skip()
        if source is None:
            return None, 'Choose a source image above (or press "Use example source").'
        session = self.sessions.get(request)
        live = session.live
        if not live.lock.acquire(blocking=False):      # still busy with the previous frame: drop this one
            return gr.skip(), gr.skip()
        try:
            if session.closed:
                return gr.skip(), gr.skip()
            with self.page_errors():
                files = self.model_files(which, config, checkpoint)
                animator = self.models.get(files)
                return self.animate_live(live, animator, frame, source, bool(adapt_scale), bool(smooth))
        finally:
            live.lock.release()

    def animate_live(self, live: LiveState, animator: Animator, frame: np.ndarray, source: str, adapt: bool,
                     smooth: bool = False):
        start = time.perf_counter()
        driving = resize_frame(square_crop(np.asarray(frame)[..., :3]), animator.frame_size)
        key = (id(animator), source, adapt)
        new_reference = live.reset or live.key != key or start - live.last_frame_at > LIVE_RESTART_GAP_S
        if new_reference:
            image = load_image(source, size=animator.frame_size)
            live.animator = animator.for_one_video()     # int8: this stream's own calibration
            live.prepared = live.animator.prepare(image, driving, 'relative', adapt)
            live.key, live.reset = key, False
            live.references += 1
            live.done_at.clear()
        if new_reference or live.smooth != smooth:
            # Turning smoothing on or off keeps the reference frame: only the filter starts anew.
            live.prepared['smoother'] = KeypointSmoother(OneEuroParams(), 1 / LIVE_STREAM_EVERY_S) if smooth else None
            live.smooth = smooth
        # The filter's time step is the camera frames' own spacing: frames come when they come.
        pred = live.animator.animate_batch(live.prepared, to_tensor(driving, animator.device),
                                           times=[start])   # (1, 3, H, W)
        image = to_uint8(pred.permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy())[0]
        zoom = max(1, LIVE_DISPLAY_HEIGHT // image.shape[0])     # small models: enlarged for the page
        path = live.write(image.repeat(zoom, axis=0).repeat(zoom, axis=1))
        now = time.perf_counter()
        live.last_frame_at = now
        live.done_at.append(now)
        times = live.done_at
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        status = (f'**{fps:.1f} output frames/s** · model {1000 * (now - start):.0f} ms/frame · '
                  f'{live.count} frames · reference frame #{live.references}')
        return path, status

    def reset_reference(self, request: gr.Request):
        self.sessions.get(request).live.reset = True
        return 'The next camera frame becomes the reference.'

    def close_session(self, request: gr.Request):
        self.sessions.close(request)

    # -- page --------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        served = self.models.served
        family = self.served_animator.family
        options = default_options(family)
        modes = modes_of(self.served_animator)
        with gr.Blocks(title='Image animation (FOMM / TPSMM)', delete_cache=CACHE_PRUNE,
                       analytics_enabled=False) as page:
            gr.Markdown('## Image animation: FOMM and TPSMM\nA still photo moves as the driving video '
                        '(or your camera) does.')
            with gr.Group():
                which = gr.Radio([(f'Served model ({os.path.basename(served.checkpoint)})', SERVED),
                                  ('Another config and checkpoint on this machine', OTHER)],
                                 value=SERVED, label='Model', elem_id='model-choice')
                with gr.Row(visible=False) as other_row:
                    config = gr.Textbox(label='Config path (on the machine running the app)', value=served.config,
                                        elem_id='model-config')
                    checkpoint = gr.Textbox(label='Checkpoint path (never uploaded)', value=served.checkpoint,
                                            elem_id='model-checkpoint')
                    load = gr.Button('Load model', elem_id='model-load', scale=0)
                model_info = gr.Markdown(self.models.describe(self.served_animator, served), elem_id='model-info')
            model = [which, config, checkpoint]
            with gr.Tabs():
                with gr.Tab('Animate', id='animate', elem_id='tab-animate'):
                    mode, adapt = self.animate_tab(model, family, modes, options)
                with gr.Tab('Live', id='live', elem_id='tab-live'):
                    live_adapt = self.live_tab(model, family, options)
            which.change(lambda w: gr.update(visible=w == OTHER), which, other_row, queue=False)
            for event in (which.change, load.click):
                event(self.load_model, model, [model_info, mode, adapt, live_adapt], concurrency_limit=None)
            page.unload(self.close_session)
        return page

    def animate_tab(self, model: list, family: str, modes: tuple[str, ...], options: AnimateOptions):
        with gr.Row():
            source = gr.Image(label='Source image', type='filepath', sources=['upload', 'clipboard'],
                              elem_id='source', height=320)
            with gr.Column():
                # A file box, not gr.Video: the browser's player would add its own "not playable"
                # error for broken files and for good videos it cannot play (AVI, MKV, ...).
                driving = gr.File(label='Driving video', file_types=['video', '.gif'], elem_id='driving', height=240)
                driving_info = gr.Markdown(elem_id='driving-info')
        example = gr.Button('Use example inputs (a generated pair for the bundled model)', elem_id='example',
                            size='sm')
        controls = self.animate_controls(family, modes, options)
        with gr.Row():
            run = gr.Button('Animate', variant='primary', elem_id='animate')
            stop = gr.Button('Cancel', variant='stop', elem_id='cancel')
        status = gr.Markdown(elem_id='status')
        with gr.Row():
            result = gr.Video(label='Result', elem_id='result', interactive=False, height=320)
            sbs = gr.Video(label='Source | driving | result', elem_id='side-by-side', interactive=False, height=320)
        download = gr.File(label='Download the result', elem_id='download', interactive=False)

        source.upload(self.check_image, source, None, preprocess=False, concurrency_limit=None)
        driving.change(self.check_video, driving, driving_info, preprocess=False, concurrency_limit=None)
        example.click(self.example_inputs, None, [source, driving], concurrency_limit=None)
        run.click(self.animate, [source, driving, *model, *controls], [result, sbs, download, status],
                  preprocess=False, concurrency_limit=self.concurrency, concurrency_id='animate',
                  show_progress_on=[result])
        stop.click(self.cancel, None, None, queue=False)
        return controls[0], controls[1]

    def animate_controls(self, family: str, modes: tuple[str, ...], options: AnimateOptions) -> list:
        """The option controls, in AnimateOptions' field order (mode, adapt_scale, reference, frame,
        audio, crop, smooth)."""
        with gr.Accordion('Options (as demo.py)', open=True):
            with gr.Row():
                mode = gr.Radio(list(modes), value=options.mode, label='Motion', elem_id='mode',
                                info='relative: the source moves as the driving video moves from its reference '
                                     'frame; standard: takes the driving keypoints as they are; avd: TPSMM\'s '
                                     'AVD network (needs a checkpoint with one)')
                adapt = gr.Checkbox(value=options.adapt_scale, label='Adapt movement scale (FOMM relative)',
                                    interactive=family == 'fomm', elem_id='adapt')
            with gr.Row():
                reference = gr.Radio([REF_FIRST, REF_BEST, REF_NUMBER], value=options.reference,
                                     label='Reference frame (relative mode)', elem_id='reference')
                frame = gr.Number(value=0, precision=0, minimum=0, label='Frame number', elem_id='frame')
                audio = gr.Checkbox(value=options.audio, label="Copy the driving video's audio", elem_id='audio')
                crop = gr.Checkbox(value=options.crop, label='Crop the face (demo.py --crop)', elem_id='crop',
                                   info='a whole photo: its face is animated and pasted back; the driving '
                                        'face is followed')
                smooth = smooth_checkbox(options.smooth, 'smooth')
        return [mode, adapt, reference, frame, audio, crop, smooth]

    def live_tab(self, model: list, family: str, options: AnimateOptions):
        gr.Markdown('Press the camera button, allow the camera, then Record. The first frame (or the one '
                    'after **Reset reference**) is the reference: look at the camera as the photo does.')
        with gr.Row():
            source = gr.Image(label='Source image', type='filepath', sources=['upload', 'clipboard'],
                              elem_id='live-source', height=300)
            camera = gr.Image(label='Camera', sources=['webcam'], streaming=True, type='numpy',
                              elem_id='camera', height=300)
            output = gr.Image(label='Animated', elem_id='live-output', interactive=False, height=300)
        with gr.Row():
            reset = gr.Button('Reset reference', elem_id='reset')
            example = gr.Button('Use example source', elem_id='live-example', size='sm')
            adapt = gr.Checkbox(value=options.adapt_scale, label='Adapt movement scale (FOMM)',
                                interactive=family == 'fomm', elem_id='live-adapt')
            smooth = smooth_checkbox(options.smooth, 'live-smooth')
        status = gr.Markdown(elem_id='live-status')
        source.upload(self.check_image, source, None, preprocess=False, concurrency_limit=None)
        example.click(lambda: self.example_inputs()[0], None, source, concurrency_limit=None)
        camera.stream(self.live_frame, [camera, source, *model, adapt, smooth], [output, status],
                      stream_every=LIVE_STREAM_EVERY_S, concurrency_limit=self.concurrency, concurrency_id='live',
                      show_progress='hidden')
        reset.click(self.reset_reference, None, status, queue=False)
        return adapt


def smooth_checkbox(value: bool, elem_id: str) -> gr.Checkbox:
    return gr.Checkbox(value=value, label='Smooth motion (demo.py --smooth)', elem_id=elem_id,
                       info='steadier keypoints over time (causal One-Euro filter); slight lag')


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='app.py', description='Animate images in the browser (FOMM / TPSMM).',
                                epilog='The module docstring at the top of app.py describes every option.')
    p.add_argument('--config', default=os.path.join(ROOT, demo.EXAMPLE_CONFIG), help='config of the served model')
    p.add_argument('--checkpoint', default=os.path.join(ROOT, demo.EXAMPLE_CHECKPOINT),
                   help='checkpoint of the served model')
    p.add_argument('--host', default='127.0.0.1', help='address to listen on (0.0.0.0: every interface)')
    p.add_argument('--port', type=int, default=DEFAULT_PORT)
    p.add_argument('--device', default=None, help='torch device (default: cuda if available, else cpu)')
    p.add_argument('--threads', type=int, default=None, help='CPU threads for torch')
    p.add_argument('--precision', choices=('fp32', 'int8', 'bf16', 'fp16'), default='fp32',
                   help="as demo.py --precision (int8: CPU only), for every model the app loads")
    p.add_argument('--concurrency', type=int, default=DEFAULT_CONCURRENCY, help='animations processed at once')
    p.add_argument('--max_video_seconds', type=float, default=DEFAULT_MAX_VIDEO_SECONDS,
                   help='longest driving video accepted, in seconds')
    p.add_argument('--detector', choices=demo.DETECTOR_CHOICES, default='hog', help=demo.DETECTOR_HELP)
    return p.parse_args(argv)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    root = TEMP_ROOT or private_temp_root()
    signal.signal(signal.SIGTERM, _interrupt)     # SIGTERM ends the app as Ctrl-C does: the folder goes
    app = None
    try:
        args = parse_args(argv)
        try:
            if args.concurrency < 1 or args.max_video_seconds <= 0:
                raise demo.DemoError('--concurrency must be at least 1 and --max_video_seconds positive')
            if args.threads is not None:
                import torch
                torch.set_num_threads(max(1, args.threads))
            device = demo.resolve_device(argparse.Namespace(cpu=False, device=args.device))
            demo.check_precision(args.precision, device, compile=False)
            app = App(ModelFiles(args.config, args.checkpoint), root, device, args.max_video_seconds,
                      args.concurrency, args.precision, args.detector)
        except (*USER_ERRORS, AppError) as err:
            print(f'error: {demo.one_line(err)}', file=sys.stderr)
            return 2
        print(f'serving {app.models.describe(app.served_animator, app.models.served, markdown=False)} on {device}; '
              f'temporary files in {root}', flush=True)
        page = app.build()
        page.queue(default_concurrency_limit=args.concurrency)
        page.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=False,
                    max_threads=max(40, 4 * args.concurrency),
                    theme=gr.themes.Default(font=['system-ui', 'sans-serif'], font_mono=['monospace']))
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if app is not None:
            app.sessions.close_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
