"""Read the authors' metadata CSVs into segments, one per clip to write.

The published files share one header, ``video_id,start,end,bbox,fps,width,height`` and then:

* ``vox-metadata.csv`` (video-preprocessing): ``partition,person_id``; ids are YouTube ids.
* ``taichi-metadata.csv`` (video-preprocessing): ``partition`` in the version load_videos.py
  reads; the copy stored at some commits has no partition column at all (every clip then goes
  to ``train/``, with a note).
* ``ted-metadata.csv`` (articulated-animation, TED-384): ``partition``; each id is
  ``<youtube id>#<start>#<end>`` and the ``start``/``end`` columns are 0, so the frame range is
  read from the id.

``start``/``end`` are frame numbers at the row's ``fps``; ``bbox`` is ``left-top-right-bottom`` in
pixels of a ``width`` x ``height`` frame. Everything a row needs is checked here, before any video
is opened, so a malformed file stops the run with one line and nothing written.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass

REQUIRED_COLUMNS = ('video_id', 'start', 'end', 'bbox', 'fps', 'width', 'height')
PARTITIONS = ('train', 'test')

# TED-384's ids carry the segment: "<youtube id>#<start>#<end>" with start/end columns of 0.
_ID_WITH_RANGE = re.compile(r'(?P<source>[^#]+)#(?P<start>\d+)#(?P<end>\d+)')


class MetadataError(Exception):
    """The metadata CSV cannot be used; the message is one line naming the file (and row)."""


@dataclass(frozen=True)
class Segment:
    """One clip: frames ``start..end`` (exclusive, at ``fps``) of a source video, cropped to ``box``.

    ``box`` = (left, top, right, bottom) in pixels of a ``width`` x ``height`` frame (the size the
    authors' copy of the video had). ``source`` is the YouTube id, i.e. the file name stem in
    ``--video_folder``; ``name`` the clip's file name under ``partition``/; ``line`` the CSV line.
    """

    line: int
    video_id: str
    source: str
    start: int
    end: int
    box: tuple[int, int, int, int]
    fps: float
    width: int
    height: int
    partition: str
    name: str


@dataclass(frozen=True)
class Metadata:
    """A checked metadata file: its segments in file order, and notes worth one line each."""

    path: str
    segments: list[Segment]
    notes: list[str]

    def by_source(self) -> dict[str, list[Segment]]:
        """Segments grouped by source video, in order of first appearance."""
        groups: dict[str, list[Segment]] = {}
        for segment in self.segments:
            groups.setdefault(segment.source, []).append(segment)
        return groups


class _RowError(ValueError):
    pass


def clip_name(video_id: str, start: int, end: int, person_id: str | None) -> str:
    """load_videos.py's clip name: ``[person_id#]<id parts reversed>#<start:06d>#<end:06d>.mp4``.

    The '#'-separated parts of the id are joined in reverse order (a plain YouTube id is left as
    it is). PNG output uses the same name for its folder of frames.
    """
    first = '' if person_id is None else person_id + '#'
    return f"{first}{'#'.join(video_id.split('#')[::-1])}#{str(start).zfill(6)}#{str(end).zfill(6)}.mp4"


def _integer(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _RowError(f'{what} {text!r} is not a whole number') from None


def _positive(value: float, what: str, text: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise _RowError(f'{what} {text!r} must be a positive number')


def _box(text: str) -> tuple[int, int, int, int]:
    parts = text.strip().split('-')
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise _RowError(f"bbox {text!r} must be four whole numbers 'left-top-right-bottom'")
    left, top, right, bottom = (int(p) for p in parts)
    if right <= left or bottom <= top:
        raise _RowError(f'bbox {text!r} is empty (right <= left or bottom <= top)')
    return left, top, right, bottom


def _frame_range(row: dict, video_id: str) -> tuple[str, int, int, bool]:
    """(source id, start, end, range taken from the id) of one row."""
    start, end = _integer(row['start'], 'start'), _integer(row['end'], 'end')
    match = _ID_WITH_RANGE.fullmatch(video_id)
    if start == 0 and end == 0 and match:          # TED-384: the range lives in the id
        return match['source'], int(match['start']), int(match['end']), True
    if start < 0 or end <= start:
        raise _RowError(f'segment start {start} .. end {end} is empty or negative (end must be > start)')
    return video_id.split('#')[0], start, end, False


def parse_row(row: dict, line: int, has_partition: bool, has_person: bool) -> Segment:
    """One CSV row -> Segment; raises _RowError saying what is wrong with it."""
    video_id = (row['video_id'] or '').strip()
    if not video_id or video_id.startswith('#'):
        raise _RowError(f'video_id {video_id!r} is empty')
    _check_file_name_part(video_id, 'video_id')
    source, start, end, from_id = _frame_range(row, video_id)
    if start >= end:
        raise _RowError(f'the id {video_id!r} gives an empty segment {start} .. {end}')
    fps = float(row['fps']) if _is_float(row['fps']) else math.nan
    _positive(fps, 'fps', row['fps'])
    width, height = _integer(row['width'], 'width'), _integer(row['height'], 'height')
    if width <= 0 or height <= 0:
        raise _RowError(f'width x height {width}x{height} must be positive')
    partition = (row.get('partition') or '').strip() if has_partition else 'train'
    if partition not in PARTITIONS:
        raise _RowError(f"partition {partition!r} must be 'train' or 'test'")
    person = None
    if has_person:
        person = (row.get('person_id') or '').strip()
        if not person:
            raise _RowError('person_id is empty')
        _check_file_name_part(person, 'person_id')
    # For TED the id's range names the clip "<source>#<start>#<end>.mp4", so that the part before
    # the first '#' (what id_sampling groups by) is the talk; the reversed id would put the end first.
    name = clip_name(source, start, end, person) if from_id else clip_name(video_id, start, end, person)
    return Segment(line, video_id, source, start, end, _box(row['bbox']), fps, width, height, partition, name)


def _check_file_name_part(text: str, what: str) -> None:
    """Ids become file names: a path separator would write outside the partition folder."""
    if '/' in text or '\\' in text or text.startswith('.'):
        raise _RowError(f"{what} {text!r} cannot be part of a file name ('/', '\\' or a leading '.')")


def _is_float(text: str | None) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def read_metadata(path: str) -> Metadata:
    """Read and check `path`; raise MetadataError (one line) if it cannot be used as it is."""
    try:
        with open(path, newline='', encoding='utf-8-sig') as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise MetadataError(f'{path}: not a metadata CSV: missing column(s) {", ".join(missing)} '
                                    f'(needs {",".join(REQUIRED_COLUMNS)}[,partition][,person_id])')
            rows = [(reader.line_num, row) for row in reader]
    except OSError as err:
        raise MetadataError(f'{path}: cannot read the metadata file: {err.strerror or err}') from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise MetadataError(f'{path}: not a CSV text file ({err})') from None
    return _check_rows(path, rows, 'partition' in columns, 'person_id' in columns)


def _check_rows(path: str, rows: list[tuple[int, dict]], has_partition: bool, has_person: bool) -> Metadata:
    segments, problems, seen = [], [], {}
    duplicates = 0
    for line, row in rows:
        if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
            problems.append(f'line {line}: wrong number of fields')
            continue
        try:
            segment = parse_row(row, line, has_partition, has_person)
        except _RowError as err:
            problems.append(f'line {line}: {err}')
            continue
        key = (segment.partition, segment.name)
        if key in seen:          # the same clip twice: the first row wins, as the file it names is one
            duplicates += 1
            continue
        seen[key] = segment
        segments.append(segment)
    if problems:
        more = f' (and {len(problems) - 1} more bad row(s))' if len(problems) > 1 else ''
        raise MetadataError(f'{path}: {problems[0]}{more}')
    if not segments:
        raise MetadataError(f'{path}: the file lists no segments')
    notes = []
    if not has_partition:
        notes.append(f'{path} has no partition column: every clip goes to train/ (make a test/ split yourself)')
    if duplicates:
        notes.append(f'{path}: {duplicates} row(s) repeat an earlier clip name; the first row of each is used')
    return Metadata(path, segments, notes)
