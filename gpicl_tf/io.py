"""Filesystem helpers every layer uses: atomic writes, the workdir lock, version names.

Nothing is visible under its final name before it is complete: `atomic_path`
yields a hidden temporary name in the same directory, flushes it to disk and
renames it; a process holds a directory with `directory_lock`; the temporaries
of dead processes are swept by `remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import shutil

from absl import logging

from gpicl_tf.errors import ExistingFileError

# where a released cell model's Keras file sits inside its SavedModel version
# (written by export, read by a warm start in training)
RELEASED_KERAS = os.path.join("assets.extra", "cell_model.keras")

_VERSION = re.compile(r"[0-9]{1,18}")
_TEMPORARY = re.compile(r"\.tmp-(?:export-)?([0-9]+)(?:-|$)")


def is_version_name(name: str) -> bool:
    """A model version folder: 1 to 18 ASCII digits (not "²", not 5,000 digits)."""
    return bool(_VERSION.fullmatch(name))


LOCK_FILE = ".lock"


@contextlib.contextmanager
def directory_lock(directory: str, what: str):
    """Holds `directory` (created) for this process while the block runs: a second
    process that asks for it gets an error naming the holder's pid. The lock file
    of a dead holder is taken over; this process may ask again (nested)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                with open(path) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                continue          # released meanwhile: try again
            pid = int(text) if text.isdigit() else 0
            if pid == os.getpid():
                yield path        # already held by this process
                return
            if pid and process_alive(pid):
                raise ExistingFileError(
                    f"{directory!r} is in use by another {what} (pid {pid}); wait for it, "
                    f"stop it, or use another --workdir") from None
            logging.info("taking over %s left by dead process %s", path, text or "?")
            os.remove(path)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str) -> list[str]:
    """Removes the temporaries (".NAME.tmp-PID", ".tmp-PID-NAME", ".tmp-export-PID")
    that dead processes left in `directory`; returns their names. A live
    process's temporaries are left alone."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = _TEMPORARY.search(name)
        if not name.startswith(".") or not match or process_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(name)
    if removed:
        logging.warning("removed temporaries of dead processes in %s: %s", directory, removed)
    return removed


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str, keep_suffix: bool = False):
    """Yields a temporary path beside `path`; renames it to `path` on success.
    `keep_suffix`: the temporary ends as `path` does (".tmp-PID-NAME"), for writers
    that insist on a file name's ending (Keras' `.keras` and `.weights.h5`)."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}" if keep_suffix
                       else f".{name}.tmp-{os.getpid()}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cut_csv(path: str, column: str, below: int) -> list[dict]:
    """The rows of the CSV file `path` whose integer `column` is below `below`; the
    file is cut to them (atomically, its header kept) when any other row is there.
    A resumed run drops the rows it logged past the state it resumes from."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = reader.fieldnames or []
    kept = [r for r in rows if int(r[column]) < below]
    if len(kept) != len(rows):
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)
        logging.info("%s cut to the rows of %s < %d (%d dropped)", path, column, below,
                     len(rows) - len(kept))
    return kept
