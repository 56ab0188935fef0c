"""Small file helpers shared by every writer in the project (checkpoints, videos, frames).

The rule they enforce: a crash, a Ctrl-C or a bad input never leaves a half-written file at
the path a user asked for. Everything is written next to its destination under a temporary
name and renamed into place (an atomic operation on one filesystem) only when complete.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary file path beside `path`; rename it onto `path` on success.

    The temporary name keeps the destination's extension (or `suffix`), because writers such as
    imageio pick the format from it. On any exception the temporary file is removed and the
    exception propagates; `path` is left untouched.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.part' + suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Like `atomic_path` for a folder of files (e.g. PNG frames).

    The folder is filled under a temporary name and renamed at the end. An existing folder at
    `path` is replaced only once the new one is complete.
    """
    path = os.path.abspath(path.rstrip('/'))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(path) + '.', suffix='.part', dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())     # mkdtemp creates 0700; give the folder normal permissions
        yield tmp
        if os.path.isdir(path):
            old = path + '.old'
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it (both already resolved with realpath)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def overwritten_input(output: str, inputs: Iterable[str | None]) -> str | None:
    """The first of `inputs` that writing `output` would destroy or write into, else None.

    A clash is: the same file (through another path, a hard link or a symlink), an output inside
    an input folder (a folder of frames), or an output folder that holds an input (folder outputs
    are replaced whole). Paths that do not exist yet are compared after resolving their links."""
    out = os.path.realpath(output)
    for given in inputs:
        if not given or not os.path.exists(given):
            continue
        with contextlib.suppress(OSError):
            if os.path.exists(output) and os.path.samefile(output, given):
                return given
        real = os.path.realpath(given)
        if out == real or (os.path.isdir(real) and _inside(out, real)) or _inside(real, out):
            return given
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that the same clean-up runs
    (atomic_path / atomic_dir remove their temporary files on the way out)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises `Terminated` (a KeyboardInterrupt) as Ctrl-C would, so that the
    clean-up of atomic_path / atomic_dir runs; without it SIGTERM ends the process on the spot
    and leaves `.name.part` files and folders behind. Entry points wrap their work in it. Only
    the main thread may set a handler: elsewhere (a command run inside a thread) it does nothing."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
