"""How the package writes files and tells about them, for every folder (as :mod:`capstone.errors`).

A file is written so that no reader ever sees half of it (:func:`atomic_write`: a temporary in
the same folder renamed over the target; killed runs' temporaries are swept), JSON goes through
it too, and notices about the data go to the notebook or to stderr (:func:`say`, :func:`notice`).
The cache's root is here because a full disk's message names it; :mod:`capstone.data.paths`
says where each file lives inside it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from capstone.errors import DataError, DiskFullError


def cache_root() -> Path:
    """The cache folder's path, not created."""
    env = os.environ.get("CAPSTONE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "capstone"


# -- notices -------------------------------------------------------------------------------------
def say(message: str) -> None:
    """Print a notice: an ordinary line in a notebook (stdout, not a red error box), else stderr.

    Outside a notebook stdout is left to what a command prints (e.g. one JSON object).
    """
    in_notebook = type(sys.stdout).__module__.startswith("ipykernel")  # a kernel's output stream
    print(message, file=sys.stdout if in_notebook else sys.stderr, flush=True)


_held_notices: list | None = None


def notice(message: str) -> None:
    """Tell the user about the data (e.g. rows left out): :func:`say` it now, or keep it for
    later inside :func:`held_notices`."""
    if _held_notices is not None:
        _held_notices.append(message)
    else:
        say(message)


@contextlib.contextmanager
def held_notices():
    """Keep :func:`notice` lines in the list this yields instead of printing them.

    The command line prints them after a successful command, so that an error stays one line.
    """
    global _held_notices
    outer, _held_notices = _held_notices, []
    try:
        yield _held_notices
    finally:
        _held_notices = outer


#: Bytes a file's first read takes per second, roughly (the 2-core build machine, under load).
FIRST_READ_BYTES_PER_SECOND = 20_000_000


def announce_first_read(path: os.PathLike | str, what: str, at_least: int = 10_000_000,
                        bytes_per_second: float = FIRST_READ_BYTES_PER_SECOND) -> bool:
    """Say, for a file of ``at_least`` bytes, that its first read is slow, why, and how long.

    Returns whether it said so.
    """
    size = Path(path).stat().st_size
    if size >= at_least:
        seconds = max(1, round(size / bytes_per_second))
        say(f"reading {Path(path).name} ({size / 1e6:.0f} MB): {what}, about {seconds} s")
    return size >= at_least


# -- writing files -------------------------------------------------------------------------------
#: ``atomic_write``'s temporaries: ``.<stem>.<pid>.tmp<suffix>``.
TEMPORARY = re.compile(r"\.(?P<stem>.*)\.(?P<pid>\d+)\.tmp(?P<suffix>\.[^.]*)?")
#: A temporary untouched this long whose process is gone is left by a killed run.
STALE_SECONDS = 60.0
_swept_folders: set = set()


def atomic_write(path: os.PathLike | str, write) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then rename over ``path``.

    The first write into a folder (per process) also removes the temporaries that killed runs
    left there (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : path-like
        The final location.
    write : callable
        Called with a temporary path in the same folder; must create that file.
        When the temporary path ends in ``.npz`` it can be given to ``np.savez`` as is.

    Raises
    ------
    DiskFullError
        The disk (or quota) is full: one line naming ``path``; the temporary is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise disk_full(path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def disk_full(path: os.PathLike | str) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``."""
    path = Path(path)
    in_cache = path.absolute().is_relative_to(cache_root().absolute())
    where = "set CAPSTONE_CACHE to another disk" if in_cache else "write it to another disk"
    error = DiskFullError(f"no space left on device writing {path}: free some space or {where}")
    error.errno = errno.ENOSPC
    return error


def remove_stale_temporaries(folder: os.PathLike | str, *, force: bool = False) -> list:
    """Remove the :func:`atomic_write` temporaries that killed runs left in ``folder``.

    A temporary is stale when the process its name records is not running and it has not been
    written to for :data:`STALE_SECONDS` (so a writer on another machine sharing the folder, whose
    process this one cannot see, keeps its file). Each folder is swept once per process unless
    ``force``.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    import psutil  # imported on the first write, not with every module that imports paths

    folder = Path(folder)
    key = os.path.abspath(folder)
    if key in _swept_folders and not force:
        return []
    _swept_folders.add(key)
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMPORARY.fullmatch(entry.name)
        if match is None or psutil.pid_exists(int(match["pid"])):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime >= STALE_SECONDS:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


def check_writable(path: os.PathLike | str) -> Path:
    """``path`` as a Path, after checking that a file can be written there (nothing is left).

    Raises
    ------
    DataError
        One line: ``path`` is a folder, lies under a file, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; give a file name in it")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"cannot write {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".probe", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise DataError(f"cannot write {path} ({error.strerror or error}); choose a folder "
                        "you can write to") from None
    return path


def write_json(path: os.PathLike | str, value) -> Path:
    """Write ``value`` to ``path`` as UTF-8 JSON, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value), encoding="utf-8"))


def read_json(path: os.PathLike | str, default=None):
    """The JSON value in ``path``, or ``default`` when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
