"""Writing videos: H.264 mp4, gif or PNG folders, incrementally and atomically."""
from __future__ import annotations

import contextlib
import os
import warnings
from fractions import Fraction

import numpy as np

from .audio import _AudioTrack
from .decoding import _av
from .errors import MediaError, MediaWarning, PathLike, _check_fps, _check_input_file, _exact_rate, _show
from .files import atomic_dir, atomic_path
from .images import read_image, write_image
from .pixels import _to_uint8
from .reading import list_frame_files

# x264's macroblock tree (on by default) made the same frames encode to different files from run to
# run with the libx264 in PyAV's wheel: 2-3 variants in 8 encodes of some 64x64..192x192 clips,
# pixels up to 28 apart, even with one thread. Without it every encode tried was identical; the
# price, on the sample clip at 256x256 and crf 18: files 10% larger, 0.06 dB lower PSNR, the same
# speed (docs/media.md).
X264_OPTIONS = {'x264-params': 'mbtree=0'}


class _Abort(Exception):
    """Internal: unwinds the atomic temporary file when a writer is aborted without an exception."""


class VideoWriter:
    """Write frames to a video incrementally and atomically; ``path`` picks the format.

    * ``*.mp4``: H.264 (libx264, quality ``crf``), yuv420p, exactly ``fps`` frames per second; an odd
      width/height is padded by one repeated column/row. The same frames give the same file
      (``X264_OPTIONS``). ``keyframe_interval`` (frames; x264's
      default 250) bounds what random access decodes: 25 trains about as fast as PNG frames.
    * ``*.gif``: a palette per frame (ordered dithering), looping; delays in 1/100 s alternate so
      that the average rate is exact.
    * a path ending in ``/`` (``pathlib`` drops it: pass ``str(p) + '/'``) or naming a folder:
      lossless PNG frames ``00000.png``, ... with the rate in a text chunk ``fps``.

    :meth:`write` takes ``(H, W[, C])`` frames or ``(B, H, W, C)`` batches, uint8 or float in [0, 1],
    all of the first frame's size. The output is built beside ``path`` under a temporary name and
    renamed onto it by :meth:`close` (or a clean ``with`` exit); an exception or :meth:`abort` leaves
    nothing. ``audio_from``: that file's first audio track goes into the mp4, cut to the video's
    length (copied when mp4 holds its codec, else re-encoded to AAC); no audio track, a folder of
    frames, or a GIF / PNG destination gives a :class:`MediaWarning` and a silent output.
    """

    def __init__(self, path: PathLike, fps: float | Fraction, *, audio_from: PathLike | None = None,
                 crf: int = 18, keyframe_interval: int | None = None) -> None:
        self.path = os.fspath(path)
        self.fps = _check_fps(fps)
        self.crf = int(crf)
        self.keyframe_interval = keyframe_interval
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (w, h) of the frames given
        self._out = None           # the PyAV output container, opened with the first frame
        self._stream = None
        self._graph = None         # GIF: the palette filter graph
        self._audio: _AudioTrack | None = None
        self._last_cs = -1         # GIF: the last frame's time in 1/100 s
        self._closed = False
        if self.path.endswith(('/', os.sep)) or os.path.isdir(self.path):
            self.kind = 'png'
        else:
            ext = os.path.splitext(self.path)[1].lower()
            if ext not in ('.mp4', '.gif'):
                shown = ext or '(no extension)'
                raise self._write_error(f'unsupported output format {shown!r}; use .mp4, .gif, or a '
                                        "folder path ending in '/' for PNG frames")
            self.kind = ext[1:]
        if audio_from is not None:
            self._audio = self._audio_source(os.fspath(audio_from))
        self._stack = contextlib.ExitStack()
        try:
            self._tmp = self._stack.enter_context(atomic_dir(self.path) if self.kind == 'png' else atomic_path(self.path))
        except OSError as err:
            self._drop_audio()
            raise self._write_error(err.strerror or str(err)) from None

    def _write_error(self, reason: str) -> MediaError:
        return MediaError(f'cannot write {_show(self.path)}: {reason}', path=self.path, reason=reason)

    def _audio_source(self, src: str) -> _AudioTrack | None:
        """The audio track to copy, or None after a note saying why there will be no sound."""
        def note(why: str) -> None:
            warnings.warn(why, MediaWarning, stacklevel=4)

        if self.kind != 'mp4':
            note(f'{_show(self.path)}: a {"GIF" if self.kind == "gif" else "PNG frame folder"} cannot hold '
                 f'audio; ignoring audio from {_show(src)}')
            return None
        if os.path.isdir(src):
            note(f'{_show(src)} is a folder of frames, which has no audio; writing {_show(self.path)} without sound')
            return None
        _check_input_file(src, 'audio source')
        track = _AudioTrack(src)
        if track.stream is None:
            track.close()
            note(f'{_show(src)} has no audio track; writing {_show(self.path)} without sound')
            return None
        return track

    # -- frames -----------------------------------------------------------------------------------

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'expected an (H, W, 3) channels-last RGB frame, got shape {frame.shape}')
        frame = np.ascontiguousarray(_to_uint8(frame))
        h, w = frame.shape[:2]
        if self.size is None:
            if h == 0 or w == 0:
                raise ValueError(f'cannot write an empty frame of shape {frame.shape}')
            self.size = (w, h)
        elif self.size != (w, h):
            raise ValueError(f'frame {self.frames_written} is {w}x{h}, '
                             f'earlier frames were {self.size[0]}x{self.size[1]}')
        return frame

    def write(self, frames: np.ndarray) -> None:
        """Append one frame ``(H, W[, C])`` or a batch ``(B, H, W, C)``; uint8 or float in [0, 1]."""
        if self._closed:
            raise ValueError(f'VideoWriter for {_show(self.path)} is closed')
        frames = np.asarray(frames)
        batch = frames if frames.ndim == 4 else frames[None]
        for frame in batch:
            self._write_one(self._prepare(frame))

    def _write_one(self, frame: np.ndarray) -> None:
        if self.kind == 'png':
            self._write_png(frame)
        else:
            av = _av()
            try:
                if self._out is None:
                    self._open_output()
                self._encode(frame)
                if self._audio is not None:
                    self._write_audio((self.frames_written + 1) / float(self.fps))
            except (av.error.FFmpegError, OSError) as err:
                raise self._write_error(getattr(err, 'strerror', None) or str(err)) from None
        self.frames_written += 1

    def _write_png(self, frame: np.ndarray) -> None:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text('fps', repr(float(self.fps)))
        name = os.path.join(self._tmp, f'{self.frames_written:05d}.png')
        try:
            write_image(name, frame, pnginfo=info, compress_level=3)  # ~3x faster than 6, ~7% larger
        except MediaError as err:
            raise self._write_error(err.reason) from None

    def _open_output(self) -> None:
        """Open the container and its streams: sizes are known from the first frame."""
        av = _av()
        assert self.size is not None
        w, h = self.size
        rate = _exact_rate(self.fps)
        self._out = av.open(self._tmp, 'w', format=self.kind)
        if self.kind == 'mp4':
            stream = self._out.add_stream('libx264', rate=rate, options=X264_OPTIONS | {'crf': str(self.crf)})
            stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, 'yuv420p'
            if self.keyframe_interval:
                stream.codec_context.gop_size = int(self.keyframe_interval)
            if self._audio is not None:
                try:
                    self._audio.add_to(self._out)
                except (av.error.FFmpegError, ValueError) as err:
                    self._audio_failed(err)
        else:
            stream = self._out.add_stream('gif', rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, 'pal8'
            stream.codec_context.time_base = Fraction(1, 100)   # GIF delays are in 1/100 s
            self._graph = self._palette_graph(w, h)
        self._stream = stream

    @staticmethod
    def _palette_graph(w: int, h: int):
        """rgb24 -> pal8 with a palette made for each frame (palettegen/paletteuse, Bayer dithering)."""
        av = _av()
        graph = av.filter.Graph()
        source = graph.add_buffer(width=w, height=h, format='rgb24', time_base=Fraction(1, 100))
        split = graph.add('split')
        palette = graph.add('palettegen', 'stats_mode=single')
        use = graph.add('paletteuse', 'new=1:dither=bayer')
        sink = graph.add('buffersink')
        source.link_to(split)
        split.link_to(use, 0, 0)
        split.link_to(palette, 1, 0)
        palette.link_to(use, 0, 1)
        use.link_to(sink)
        graph.configure()
        return graph

    def _encode(self, frame: np.ndarray | None) -> None:
        """Encode one frame (None: flush) and mux what comes out."""
        av = _av()
        if frame is not None:
            if self.kind == 'mp4':
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode='edge')
            vf = av.VideoFrame.from_ndarray(frame, format='rgb24')
            vf.pts = self.frames_written
        else:
            vf = None
        if self._graph is None:
            self._out.mux(self._stream.encode(vf))
            return
        if vf is not None:   # pts in 1/100 s, strictly increasing even above 100 fps
            vf.pts = max(round(self.frames_written * 100 / self.fps), self._last_cs + 1)
            vf.time_base = Fraction(1, 100)
            self._last_cs = vf.pts
        self._graph.push(vf)
        while True:
            try:
                paletted = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            self._out.mux(self._stream.encode(paletted))
        if vf is None:
            self._out.mux(self._stream.encode(None))

    def _write_audio(self, seconds: float, finish: bool = False) -> None:
        av = _av()
        if self._audio is None or self._audio.output is None:
            return
        try:
            self._audio.write_until(self._out, seconds)
            if finish:
                self._audio.finish(self._out)
        except (av.error.FFmpegError, ValueError) as err:
            self._audio_failed(err)

    def _audio_failed(self, err: Exception) -> None:
        """Audio trouble never costs the video: a note, and no more sound from here on."""
        assert self._audio is not None
        reason = getattr(err, 'strerror', None) or str(err)
        part = 'the rest of it' if self._audio.output is not None else 'it'
        warnings.warn(f'could not copy the audio of {_show(self._audio.source)} into {_show(self.path)} '
                      f'({reason}); writing {part} without sound', MediaWarning, stacklevel=4)
        self._drop_audio()

    def _drop_audio(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None

    # -- lifecycle --------------------------------------------------------------------------------

    def _finish(self) -> None:
        av = _av()
        try:
            self._encode(None)
            self._write_audio(self.frames_written / float(self.fps), finish=True)
            self._out.close()   # writes the trailer (mp4 index)
        except (av.error.FFmpegError, OSError) as err:
            raise self._write_error(getattr(err, 'strerror', None) or str(err)) from None
        finally:
            self._drop_audio()

    def close(self) -> None:
        """Finish encoding and move the result onto ``path``.

        Raises :class:`MediaError` (leaving nothing at ``path``) if no frame was written or
        encoding failed.
        """
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise self._write_error('no frames were written')
            if self._out is not None:
                self._finish()
        except BaseException as err:
            self._closed = True
            self._cleanup(err)
            raise
        self._closed = True
        try:
            self._stack.close()  # atomic rename onto self.path
        except OSError as err:
            raise self._write_error(err.strerror or str(err)) from None

    def abort(self) -> None:
        """Stop without writing anything to ``path`` (temporary output removed)."""
        if not self._closed:
            self._closed = True
            self._cleanup(_Abort())

    def _cleanup(self, err: BaseException) -> None:
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
        self._drop_audio()
        self._stack.__exit__(type(err), err, err.__traceback__)  # atomic_* removes the temporary

    def __enter__(self) -> 'VideoWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._cleanup(exc)

    def __del__(self) -> None:
        # A writer dropped without close(): do not leave the temporary file behind.
        with contextlib.suppress(Exception):
            if not self._closed:
                self.abort()


# Earlier private names, kept for code written against them.
_read_image_array = read_image
_list_frame_files = list_frame_files
