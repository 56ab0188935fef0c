"""Find a source video in --video_folder, or fetch it from YouTube with yt-dlp (optional).

yt-dlp is imported only when --download is given (``pip install yt-dlp``). A video that cannot
be fetched (offline, removed, private, region-locked) is one short reason, never an exception
that stops the run: the caller lists it in missing.csv and goes on with the other videos.
"""
from __future__ import annotations

import os

# Containers PyAV reads that yt-dlp or a user may have saved a source as; .mp4 is tried first.
SOURCE_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.mov', '.m4v', '.avi', '.flv')

YOUTUBE_URL = 'https://www.youtube.com/watch?v={}'


class DownloadFailed(Exception):
    """A video could not be fetched; the message is the reason, one line."""


def find_source(folder: str, source_id: str) -> str | None:
    """Path of ``<folder>/<source_id>.<ext>`` for the first extension present, else None."""
    for ext in SOURCE_EXTENSIONS:
        path = os.path.join(folder, source_id + ext)
        if os.path.isfile(path):
            return path
    return None


def yt_dlp_available() -> bool:
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        return False
    return True


class _Quiet:
    """yt-dlp logger that keeps its output off the progress bar; the last error is the reason."""

    def __init__(self) -> None:
        self.last_error: str | None = None

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.last_error = msg


def _format_for(height: int) -> str:
    """Best video stream no taller than the authors' copy (the box is scaled anyway), H.264 first.

    Video-only streams need no merging with audio, so no ffmpeg program is involved.
    """
    return (f'bestvideo[height<={height}][vcodec^=avc1]/bestvideo[height<={height}]/'
            f'best[height<={height}]/bestvideo/best')


def _reason(err: BaseException, logger: _Quiet) -> str:
    text = logger.last_error or str(err) or type(err).__name__
    line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return line.removeprefix('ERROR: ').strip()


def download(source_id: str, folder: str, height: int) -> str:
    """Fetch `source_id` into ``folder/<source_id>.<ext>``; return its path or raise DownloadFailed."""
    import yt_dlp

    os.makedirs(folder, exist_ok=True)
    logger = _Quiet()
    options = {
        'format': _format_for(height),
        # yt-dlp writes '<name>.part' and renames it when complete: no half file under the final name
        'outtmpl': os.path.join(folder, source_id + '.%(ext)s'),
        'noplaylist': True, 'quiet': True, 'no_warnings': True, 'noprogress': True,
        'logger': logger, 'retries': 3, 'socket_timeout': 30,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([YOUTUBE_URL.format(source_id)])
    except Exception as err:  # yt-dlp raises DownloadError and, on odd pages, anything else
        raise DownloadFailed(_reason(err, logger)) from None
    path = find_source(folder, source_id)
    if path is None:
        raise DownloadFailed('yt-dlp finished but left no video file')
    return path
