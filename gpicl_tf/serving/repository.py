"""Loads SavedModel versions from a TF Serving model base path and follows new ones.

Like TF Serving's default version policy, the newest loadable version on disk is
served; a new version is loaded completely before it replaces the old one, so
requests in flight finish on the version they started with and none is dropped.
Each poll also follows what left or changed on disk: a served version whose
folder is deleted is unloaded (the newest older loadable one is served, or none:
404), one whose files changed (a replaced base directory) is loaded again, and a
version that failed to load is tried again once its files change. Status reports
the served version AVAILABLE and every version on disk that failed to load as
END with its error.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from gpicl_tf import io as files
from gpicl_tf.errors import MissingFileError
from gpicl_tf.export import saved_model


class NotFound(LookupError):
    """Unknown model or version (TF Serving answers 404)."""


class BadRequest(ValueError):
    """A request the model cannot answer; the message names the problem (400)."""


def fingerprint(path: str) -> tuple:
    """What identifies a version folder's contents: every file's relative path,
    size, modification time and inode (a copied or replaced folder differs)."""
    entries = [os.stat(path).st_ino]
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            entries.append((os.path.relpath(os.path.join(root, name), path), st.st_size,
                            st.st_mtime_ns, st.st_ino))
    return tuple(entries)


class LoadedVersion:
    """One loaded version: its serving function, its metadata and config."""

    def __init__(self, path: str):
        self.path = path
        self.fingerprint = fingerprint(path)   # before loading: a change during it shows
        self.version = int(os.path.basename(path))
        with open(os.path.join(path, saved_model.CONFIG_FILE)) as f:
            self.meta = json.load(f)
        saved_model.check_request_sizes(self.meta["max_context"], self.meta["max_queries"],
                                        self.input_size)   # e.g. an export of an older release
        self._loaded = tf.saved_model.load(path)
        self.fn = self._loaded.signatures[saved_model.SIGNATURE]
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto = saved_model_pb2.SavedModel.FromString(f.read())
        self.signature_defs = {
            k: json_format.MessageToDict(v, preserving_proto_field_name=True)
            for k, v in proto.meta_graphs[0].signature_def.items() if not k.startswith("__")}

    @property
    def input_size(self) -> int:
        return int(self.meta["schema"]["input_size"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["schema"]["num_classes"])

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}


class ModelRepository:
    """Serves the newest version under `base_path`; `poll()` picks up new ones."""

    def __init__(self, base_path: str, name: str, poll_seconds: float = 2.0):
        self.base_path, self.name, self.poll_seconds = base_path, name, poll_seconds
        self._lock = threading.Lock()
        self._current: LoadedVersion | None = None
        # version -> (fingerprint of its folder, why it could not be loaded)
        self._failed: dict[int, tuple[tuple, str]] = {}
        self._last_problem = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not os.path.isdir(base_path):
            raise MissingFileError(f"model base path {base_path!r} does not exist")
        self.poll()
        if self._current is None:
            why = "; ".join(f"version {v}: {e}" for v, (_, e) in sorted(self._failed.items()))
            raise MissingFileError(
                f"no loadable model version (a numbered directory) in "
                f"{base_path!r}" + (f" ({why})" if why else ""))

    def available_versions(self) -> list[int]:
        """Numbered version folders: only names of 1 to 18 ASCII digits."""
        return sorted(int(v) for v in os.listdir(self.base_path)
                      if files.is_version_name(v)
                      and os.path.isdir(os.path.join(self.base_path, v)))

    def _report(self, problem: str) -> None:
        """Logs a problem once (not at every poll while it lasts)."""
        if problem != self._last_problem:
            logging.error("%s", problem)
            self._last_problem = problem

    def poll(self) -> None:
        """Serves the newest loadable version on disk: loads a newer one, unloads a
        served one that was deleted, reloads one whose files changed. Never raises:
        a missing folder, an odd name or a broken version is logged once; a version
        that fails to load is skipped for the next older one (a bad export never
        hides a good one) and tried again once its files change."""
        try:
            self._poll()
        except Exception as e:  # noqa: BLE001  (the poller must outlive every error)
            self._report(f"polling {self.base_path!r} failed: {type(e).__name__}: {e}")

    def _poll(self) -> None:
        versions = self.available_versions()   # raises (and changes nothing) if unreadable
        for version in [v for v in self._failed if v not in versions]:
            del self._failed[version]
        current = self._current
        if current is not None:
            why = None
            if current.version not in versions:
                why = "was removed from disk"
            else:
                try:
                    if fingerprint(current.path) != current.fingerprint:
                        why = "changed on disk"
                except OSError:
                    why = "was removed from disk"
            if why:
                logging.warning("%s version %d %s; unloading it", self.name, current.version,
                                why)
                current = None
        for version in reversed(versions):
            if current is not None and version <= current.version:
                break
            path = os.path.join(self.base_path, str(version))
            try:
                files = fingerprint(path)
            except OSError:
                continue     # vanished while listed
            if version in self._failed and self._failed[version][0] == files:
                continue     # unchanged since it failed: not tried again
            try:
                loaded = LoadedVersion(path)  # load fully before swapping
            except Exception as e:  # noqa: BLE001  (a broken version must not stop serving)
                self._failed[version] = (files, f"{type(e).__name__}: {e}")
                self._report(f"cannot load {path}: {self._failed[version][1]}; trying older "
                             "versions")
                continue
            self._failed.pop(version, None)
            current = loaded
            self._last_problem = ""
            logging.info("serving %s version %d", self.name, loaded.version)
            break
        if current is None and self._current is not None:
            self._report(f"no loadable version of {self.name} left in {self.base_path!r}")
        with self._lock:
            self._current = current

    def version_status(self, name: str, version: int | None = None) -> list[dict]:
        """TF Serving's model_version_status: the served version AVAILABLE, versions on
        disk that failed to load END with their error; NotFound for any other."""
        self._check_name(name)
        with self._lock:
            current, failed = self._current, dict(self._failed)
        rows = []
        if current is not None and version in (None, current.version):
            rows.append({"version": current.version, "state": "AVAILABLE", "error_code": "OK",
                         "error_message": ""})
        for v, (_, why) in sorted(failed.items(), reverse=True):
            if version in (None, v):
                rows.append({"version": v, "state": "END", "error_code": "UNKNOWN",
                             "error_message": f"failed to load: {why}"})
        if not rows:
            self.get(name, version)   # raises NotFound naming what is served
        return rows

    def _check_name(self, name: str) -> None:
        if name != self.name:
            raise NotFound(f"Servable not found for request: model {name!r} is not served "
                           f"(this server serves {self.name!r})")

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        self._check_name(name)
        with self._lock:
            current = self._current
        if current is None:
            raise NotFound(f"Servable not found for request: no version of {name!r} is "
                           f"available (none loadable in {self.base_path!r})")
        if version is not None and version != current.version:
            raise NotFound(f"Servable not found for request: {name!r} version {version} is "
                           f"not loaded (version {current.version} is)")
        return current

    def start(self) -> None:
        def loop():
            while not self._stop.wait(self.poll_seconds):
                self.poll()
        self._thread = threading.Thread(target=loop, name="version-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
