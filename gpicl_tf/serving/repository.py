"""Loads SavedModel versions from a TF Serving model base path and follows new ones.

Like TF Serving's default version policy, the newest version is served; a new
version is loaded completely before it replaces the old one, so requests in
flight finish on the version they started with and none is dropped.
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

from gpicl_tf.data import storage
from gpicl_tf.errors import MissingFileError
from gpicl_tf.export import saved_model


class NotFound(LookupError):
    """Unknown model or version (TF Serving answers 404)."""


class BadRequest(ValueError):
    """A request the model cannot answer; the message names the problem (400)."""


class LoadedVersion:
    """One loaded version: its serving function, its metadata and config."""

    def __init__(self, path: str):
        self.path = path
        self.version = int(os.path.basename(path))
        with open(os.path.join(path, saved_model.CONFIG_FILE)) as f:
            self.meta = json.load(f)
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
        self._failed: dict[int, str] = {}   # version -> why it could not be loaded
        self._last_problem = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not os.path.isdir(base_path):
            raise MissingFileError(f"model base path {base_path!r} does not exist")
        self.poll()
        if self._current is None:
            why = "; ".join(f"version {v}: {e}" for v, e in sorted(self._failed.items()))
            raise MissingFileError(
                f"no loadable model version (a numbered directory) in "
                f"{base_path!r}" + (f" ({why})" if why else ""))

    def available_versions(self) -> list[int]:
        """Numbered version folders: only names of 1 to 18 ASCII digits."""
        return sorted(int(v) for v in os.listdir(self.base_path)
                      if storage.is_version_name(v)
                      and os.path.isdir(os.path.join(self.base_path, v)))

    def _report(self, problem: str) -> None:
        """Logs a problem once (not at every poll while it lasts)."""
        if problem != self._last_problem:
            logging.error("%s", problem)
            self._last_problem = problem

    def poll(self) -> None:
        """Loads the newest loadable version newer than the one served. Never raises:
        a missing folder, an odd name or a broken version is logged once, and the
        next poll tries again; a version that fails to load is skipped for the
        next older one, so a bad export never hides a good one."""
        try:
            self._poll()
        except Exception as e:  # noqa: BLE001  (the poller must outlive every error)
            self._report(f"polling {self.base_path!r} failed: {type(e).__name__}: {e}")

    def _poll(self) -> None:
        for version in reversed(self.available_versions()):
            if self._current and version <= self._current.version:
                return
            if version in self._failed:
                continue
            path = os.path.join(self.base_path, str(version))
            try:
                loaded = LoadedVersion(path)  # load fully before swapping
            except Exception as e:  # noqa: BLE001  (a broken version must not stop serving)
                self._failed[version] = f"{type(e).__name__}: {e}"
                self._report(f"cannot load {path}: {self._failed[version]}; trying older "
                             "versions")
                continue
            with self._lock:
                self._current = loaded
            self._last_problem = ""
            logging.info("serving %s version %d", self.name, loaded.version)
            return

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        if name != self.name:
            raise NotFound(f"Servable not found for request: model {name!r} is not served "
                           f"(this server serves {self.name!r})")
        with self._lock:
            current = self._current
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
