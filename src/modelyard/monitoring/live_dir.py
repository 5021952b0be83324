"""The private directory of the workers' dashboard sockets (:mod:`live_peers`), kept apart so
that the supervisor, which only creates and cleans it, imports nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile

log = logging.getLogger("modelyard.ui")

SUFFIX = ".sock"
#: ``sun_path`` holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107
#: Socket names are pids: at most 7 digits on Linux (pid_max <= 2**22).
_LONGEST_NAME = "9" * 7 + SUFFIX


def socket_path(directory: str, name: str) -> str:
    return os.path.join(directory, name + SUFFIX)


def prepare_dir() -> str | None:
    """A fresh directory for the workers' sockets, private to this user (``mkdtemp`` makes it
    0700), with a path short enough for ``AF_UNIX``; None (with a warning) when the temporary
    directory's path is too long even under ``/tmp``. The caller removes it with
    :func:`remove_dir`."""
    for base in (None, "/tmp"):
        try:
            path = tempfile.mkdtemp(prefix="modelyard-ui-", dir=base)
        except OSError:
            continue
        if len(os.fsencode(os.path.join(path, _LONGEST_NAME))) <= MAX_SOCKET_PATH:
            return path
        os.rmdir(path)
    log.warning(
        "no temporary directory with a path short enough for Unix sockets: the dashboard's "
        "charts show the traffic of the worker that answers only"
    )
    return None


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def forget(directory: str, pid: int) -> None:
    """Remove the socket file of a dead worker so that it is no longer asked."""
    with contextlib.suppress(OSError):
        os.unlink(socket_path(directory, str(pid)))


def is_private(directory: str) -> bool:
    """Whether ``directory`` is a directory of this user that nobody else may enter."""
    try:
        info = os.stat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
