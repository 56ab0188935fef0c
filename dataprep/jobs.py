"""Run the per-video workers: a process pool, one progress bar over segments, the summary.

Workers report settled segments through a queue, so the bar moves segment by segment even
while a long video is being cut. Messages (failed segments, missing videos) come back inside
each video's :class:`~dataprep.worker.Result` and are printed above the bar as videos finish.
"""
from __future__ import annotations

import csv
import multiprocessing as mp
import os
import queue
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from dataprep.metadata import Segment
from dataprep.worker import Options, Result, process_video
from media.files import atomic_path

MISSING_FIELDS = ('video_id', 'segments', 'reason')

_progress_queue = None   # set in each pool worker by _init_worker


def _init_worker(progress) -> None:
    global _progress_queue
    _progress_queue = progress


def _run_one(job: tuple[str, list[Segment], Options]) -> Result:
    source, segments, options = job
    return process_video(source, segments, options, report=_progress_queue.put)


@dataclass
class Summary:
    segments: int = 0
    written: int = 0
    done: int = 0
    failed: int = 0
    missing_videos: int = 0
    missing_segments: int = 0
    frames: int = 0
    decoded: int = 0

    def add(self, result: Result) -> None:
        self.segments += result.segments
        self.written += result.written
        self.done += result.done
        self.frames += result.frames
        self.decoded += result.decoded
        unsettled = result.segments - result.written - result.done
        if result.missing is not None:
            self.missing_videos += 1
            self.missing_segments += unsettled
        else:
            self.failed += unsettled

    def line(self, missing_csv: str) -> str:
        missing = (f'{self.missing_videos} video(s) missing ({self.missing_segments} segment(s); listed in '
                   f'{missing_csv})') if self.missing_videos else 'no video missing'
        return (f'{self.written} segment(s) written, {self.done} skipped as done, {self.failed} failed; '
                f'{missing}')


def result_lines(result: Result) -> Iterator[str]:
    """The lines to print for one finished video."""
    for note in result.notes:
        yield f'note: {note}'
    if result.missing is not None:
        yield f'missing video {result.source}: {result.missing}'
    for line in result.failed:
        yield f'error: {line}'


def _serial(jobs, update: Callable[[int], None]) -> Iterator[Result]:
    for source, segments, options in jobs:
        yield process_video(source, segments, options, report=update)


def _pooled(jobs, workers: int, update: Callable[[int], None]) -> Iterator[Result]:
    # 'spawn': workers start clean (no copied decoder threads or locks from this process).
    ctx = mp.get_context('spawn')
    progress = ctx.Queue()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(progress,)) as pool:
        pending = [pool.apply_async(_run_one, (job,)) for job in jobs]
        while pending:
            _drain(progress, update, wait=0.2)
            for task in [t for t in pending if t.ready()]:
                pending.remove(task)
                yield task.get()
        _drain(progress, update, wait=0.05)


def _drain(progress, update: Callable[[int], None], wait: float) -> None:
    """Pass on every count waiting in the queue, waiting up to `wait` seconds for the first."""
    try:
        update(progress.get(timeout=wait))
        while True:
            update(progress.get_nowait())
    except queue.Empty:
        pass


def run_jobs(jobs: list[tuple[str, list[Segment], Options]], workers: int, quiet: bool = False) -> list[Result]:
    """Process every (source, segments, options) job; returns their results in completion order."""
    from tqdm import tqdm

    total = sum(len(segments) for _, segments, _ in jobs)
    results = []
    with tqdm(total=total, desc='segments', unit='seg', disable=True if quiet else None, file=sys.stderr) as bar:
        run = _serial(jobs, bar.update) if workers <= 1 or len(jobs) <= 1 else _pooled(jobs, workers, bar.update)
        for result in run:
            results.append(result)
            for line in result_lines(result):
                bar.write(line, file=sys.stderr)
        bar.update(total - bar.n)   # counts a worker queued just before it returned may still be in flight
    return results


def write_missing(path: str, results: list[Result]) -> int:
    """missing.csv: one row per source video that could not be read (id, its segments, why)."""
    rows = [{'video_id': r.source, 'segments': r.segments - r.done, 'reason': r.missing}
            for r in results if r.missing is not None]
    rows.sort(key=lambda row: row['video_id'])
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=MISSING_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


def summarize(results: list[Result]) -> Summary:
    summary = Summary()
    for result in results:
        summary.add(result)
    return summary


def missing_csv_path(out_folder: str) -> str:
    return os.path.join(out_folder, 'missing.csv')
