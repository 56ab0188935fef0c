"""CPU threads that degrade gracefully when the cores are shared with other work.

Why: PyTorch's CPU ops run on an OpenMP pool (GNU libgomp in the pip wheels). By default its
threads spin at every barrier before sleeping; when another process holds one of the cores, the
thread that still has work is descheduled while its partner spins away the other core's time
slice, and every op waits for the scheduler. On a 2-core host loaded by other processes the
bundled model fell from ~3 frames/s to 0.3 (docs/cpu-inference.md, "Threads on a busy machine").

So the entry points (run.py, demo.py) set `OMP_WAIT_POLICY=PASSIVE` before torch loads (idle
threads sleep at once; an explicit OMP_WAIT_POLICY in the environment wins; int8's quantized
kernels use the same pool), and the thread count defaults to the
cores not already busy (by the 1-minute load average): on a loaded host that is one thread, which
needs no barrier at all. `--threads N` overrides.
"""
from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


def idle_cores(cores: int, load: float) -> int:
    """Cores left after `load` runnable processes (the load average), at least 1."""
    return max(1, min(cores, int(cores - load + 0.5)))


def auto_threads() -> int:
    """torch's own choice (one per physical core), lowered to the cores other work leaves idle."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return torch.get_num_threads()
    return min(torch.get_num_threads(), idle_cores(usable_cores(), load))


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
        log.info('the CPU is busy (load %.1f on %d cores): %d thread%s instead of %d (--threads sets it)',
                 os.getloadavg()[0], usable_cores(), threads, '' if threads == 1 else 's', default)
    return threads
