"""The process's runtime: its memory allocator, and free local ports for servers.

TensorFlow on CPU runs faster on tcmalloc.

Measured here (`python benchmarks/allocator.py`, fresh processes, best of
two): the cpu model's train step takes 162 ms with tcmalloc and 255 ms with
glibc's malloc (1.57x); the 128-wide digits_long model 433 ms against 638 ms
(1.47x). With glibc, every step's large temporary buffers are mmap'ed,
page-faulted and unmapped again; tcmalloc keeps them. The library must be loaded when the process starts, so the pipeline
scripts re-execute themselves once with LD_PRELOAD set (`scripts/env.sh` sets
it for the main job and the tests; Debian's package is libtcmalloc-minimal4).

Set GPICL_TCMALLOC=0 to keep glibc's allocator, or to a library's path to
choose one.
"""

from __future__ import annotations

import os
import socket
import sys

from gpicl_tf.errors import MissingFileError

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)
SWITCH = "GPICL_TCMALLOC"
_MARK = "GPICL_TCMALLOC_REEXECUTED"


def loaded_allocator(maps: str) -> str:
    """'tcmalloc' if a tcmalloc library is mapped into the process (/proc/self/maps)."""
    return "tcmalloc" if "libtcmalloc" in maps else "glibc malloc"


def find_tcmalloc(env: dict, candidates=CANDIDATES) -> str | None:
    """The library to preload: GPICL_TCMALLOC's path, else the first candidate present."""
    choice = env.get(SWITCH, "auto")
    if choice == "0":
        return None
    if choice != "auto":
        if not os.path.exists(choice):
            raise MissingFileError(f"{SWITCH}={choice!r}: no such library")
        return choice
    return next((c for c in candidates if os.path.exists(c)), None)


def reexec_plan(env: dict, maps: str, argv: list[str], candidates=CANDIDATES):
    """(argv, env) to execute again with tcmalloc preloaded, or None to go on as is."""
    if loaded_allocator(maps) == "tcmalloc" or env.get(_MARK) or not argv:
        return None
    path = find_tcmalloc(env, candidates)
    if path is None:
        return None
    preload = " ".join(p for p in (path, env.get("LD_PRELOAD", "")) if p)
    return list(argv), {**env, "LD_PRELOAD": preload, _MARK: "1"}


def _maps() -> str:
    try:
        with open("/proc/self/maps") as f:
            return f.read()
    except OSError:
        return ""


def allocator_in_use() -> str:
    """The allocator of this process: 'tcmalloc' or 'glibc malloc'."""
    return loaded_allocator(_maps())


def use_tcmalloc() -> str:
    """Re-executes this process with tcmalloc preloaded when it is not loaded yet and
    is installed; returns the allocator in use. Call before any work is done."""
    plan = reexec_plan(dict(os.environ), _maps(), getattr(sys, "orig_argv", []))
    if plan is not None:
        argv, env = plan
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    return allocator_in_use()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
