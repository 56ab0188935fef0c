"""CPU threads that degrade gracefully when the cores are shared with other work.

Why: PyTorch's CPU ops run on an OpenMP pool (GNU libgomp in the pip wheels). By default its
threads spin at every barrier before sleeping; when another process holds one of the cores, the
thread that still has work is descheduled while its partner spins away the other core's time
slice, and every op waits for the scheduler. On a 2-core host loaded by other processes the
bundled model fell from ~3 frames/s to 0.3 (docs/cpu-inference.md, "Threads on a busy machine").

So the entry points (run.py, demo.py) set `OMP_WAIT_POLICY=PASSIVE` before torch loads (idle
threads sleep at once; an explicit OMP_WAIT_POLICY in the environment wins; int8's quantized
kernels use the same pool), and the thread count defaults to the
cores other work is not using now (/proc/stat over 0.1 s; the 1-minute load average before
2026-12-06 also counted jobs that had just ended): on a loaded host that is one thread, which
needs no barrier at all. `--threads N` overrides.
"""
from __future__ import annotations

import logging
import os
import time

import torch

log = logging.getLogger(__name__)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


def idle_cores(cores: int, load: float) -> int:
    """Cores left after `load` busy cores (or runnable processes), at least 1."""
    return max(1, min(cores, int(cores - load + 0.5)))


def cpu_times() -> tuple[int, int, int] | None:
    """(busy, total, cpus) jiffies so far from /proc/stat (Linux), else None."""
    try:
        with open('/proc/stat') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    fields = [int(x) for x in lines[0].split()[1:]]        # the 'cpu' line: every core summed
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    cpus = sum(1 for line in lines if line.startswith('cpu') and line[3:4].isdigit())
    return sum(fields[:8]) - idle, sum(fields[:8]), cpus


def busy_cores(window: float = 0.1) -> float | None:
    """How many cores other work keeps busy now: /proc/stat sampled `window` seconds apart while
    this process waits (so it counts only the others). None where /proc/stat is missing.

    Not the load average: it follows the last minute, so a job that just ended (the previous run
    of a script that runs several in turn) still counted as a busy core for a minute after."""
    first = cpu_times()
    if first is None:
        return None
    time.sleep(window)
    second = cpu_times()
    elapsed = second[1] - first[1]
    if elapsed <= 0:
        return None
    return (second[0] - first[0]) / elapsed * second[2]


def auto_threads() -> int:
    """torch's own choice (one per physical core), lowered to the cores other work leaves idle
    now (`busy_cores`; the 1-minute load average where /proc/stat is missing)."""
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return torch.get_num_threads()
    return min(torch.get_num_threads(), idle_cores(usable_cores(), busy))


def configure(requested: int | None = None) -> int:
    """Set torch's intra-op threads to `requested`, else to `auto_threads()`; returns the count.
    Raises ValueError on a count below 1."""
    if requested is not None and requested < 1:
        raise ValueError(f'--threads {requested}: must be at least 1')
    default = torch.get_num_threads()
    threads = requested or auto_threads()
    if threads != default:
        torch.set_num_threads(threads)
    if requested is None and threads < default:
        log.info('the CPU is busy (other work on %d cores): %d thread%s instead of %d (--threads sets it)',
                 usable_cores(), threads, '' if threads == 1 else 's', default)
    return threads
