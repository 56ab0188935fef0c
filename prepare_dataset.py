"""Make the papers' data sets (VoxCeleb, Tai-Chi-HD, TED-384) from the authors' metadata.

    python prepare_dataset.py --metadata vox-metadata.csv --video_folder youtube --out_folder vox \\
        --format .mp4 --workers 8 [--image_shape 256,256 | none] [--download]

The options are those of video-preprocessing's load_videos.py, and so is the output: for every
CSV row, OUT/<partition>/<[person_id#]video_id#start#end>.mp4, a clip (``--format .mp4``) or a
folder of ``0000000.png``... frames (``--format .png``), holding the same frames cropped by the
same box and resized as load_videos.py does. Source videos are read from --video_folder
(``<youtube id>.mp4``, or .mkv/.webm/...); with --download, missing ones are fetched with yt-dlp
(``pip install yt-dlp``). Videos that cannot be had are listed in OUT/missing.csv.

Every clip is written atomically, so a re-run skips finished clips and an interrupted job resumes.
Bad input (a CSV without the needed columns, a box outside the frame, an unreadable video, a
segment past the video's end) is one line each; exit status 2 when a segment failed or nothing
could be made, 0 otherwise (missing videos alone are reported, not failures).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dataprep.clips import FORMATS, remove_leftovers  # noqa: E402
from dataprep.download import yt_dlp_available  # noqa: E402
from dataprep.jobs import missing_csv_path, run_jobs, summarize, write_missing  # noqa: E402
from dataprep.metadata import PARTITIONS, MetadataError, read_metadata  # noqa: E402
from dataprep.worker import Options  # noqa: E402
from media import MediaWarning  # noqa: E402


class UsageError(Exception):
    """A problem with the command line: one line, exit status 2."""


def parse_shape(text: str) -> tuple[int, int] | None:
    """'256,256' -> (256, 256); 'none' -> None (crops keep their size), as load_videos.py's option."""
    if text.strip().lower() == 'none':
        return None
    try:
        values = tuple(int(v) for v in text.split(','))
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected H,W such as 256,256, or 'none' for no resize")
    return values


def parse_format(text: str) -> str:
    fmt = text if text.startswith('.') else '.' + text
    if fmt.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected .mp4 or .png")
    return fmt.lower()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='prepare_dataset.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--metadata', required=True, help='the metadata CSV (vox-metadata.csv, taichi-metadata.csv, ...)')
    p.add_argument('--video_folder', default='youtube', help='source videos <youtube id>.mp4 (youtube)')
    p.add_argument('--out_folder', required=True, help='data set folder to write (train/, test/, missing.csv)')
    p.add_argument('--format', type=parse_format, default='.png', help='.mp4 clips or .png frame folders (.png)')
    p.add_argument('--workers', type=int, default=1, help='videos processed at once (1)')
    p.add_argument('--image_shape', type=parse_shape, default=(256, 256), metavar='H,W|none',
                   help="frame size of the clips (256,256); 'none' keeps each crop's size")
    p.add_argument('--download', action='store_true', help='fetch missing source videos from YouTube with yt-dlp')
    p.add_argument('--youtube', default=None, help=argparse.SUPPRESS)   # load_videos.py's youtube-dl path
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def check_args(args) -> None:
    if args.workers < 1:
        raise UsageError(f'--workers {args.workers}: must be at least 1')
    if args.download and not yt_dlp_available():
        raise UsageError('--download needs the yt-dlp package: pip install yt-dlp')
    if not args.download and not os.path.isdir(args.video_folder):
        raise UsageError(f'--video_folder {args.video_folder}: no such folder (give --download to fetch the videos)')


def run(args) -> int:
    check_args(args)
    metadata = read_metadata(args.metadata)
    for note in metadata.notes:
        print(f'note: {note}', file=sys.stderr)
    if args.youtube:
        print('note: --youtube is not used: --download fetches videos with the yt-dlp package', file=sys.stderr)
    for partition in PARTITIONS:
        os.makedirs(os.path.join(args.out_folder, partition), exist_ok=True)
        remove_leftovers(os.path.join(args.out_folder, partition))
    options = Options(args.video_folder, args.out_folder, args.format, args.image_shape, args.download)
    jobs = [(source, segments, options) for source, segments in metadata.by_source().items()]
    results = run_jobs(jobs, args.workers, quiet=args.quiet)
    summary = summarize(results)
    missing_csv = missing_csv_path(args.out_folder)
    write_missing(missing_csv, results)
    print(f'{args.out_folder}: {summary.line(missing_csv)}', file=sys.stderr)
    if summary.failed:
        return 2
    if summary.written + summary.done == 0:
        print('error: no clip could be made (see the lines above)', file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter('always', MediaWarning)
        warnings.showwarning = lambda message, *a, **k: print(f'note: {message}', file=sys.stderr)
        try:
            return run(args)
        except (UsageError, MetadataError) as err:
            print(f'error: {err}', file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print('interrupted: finished clips are kept, unfinished ones are not; run again to resume',
                  file=sys.stderr)
            return 130


if __name__ == '__main__':
    sys.exit(main())
