"""gpicl_tf.io: the filesystem helpers' one home (the episode code re-exports them)."""

import os

import pytest

from gpicl_tf import io as files
from gpicl_tf.data import storage


def test_the_episode_code_uses_the_same_helpers():
    for name in ("atomic_path", "directory_lock", "is_version_name", "process_alive",
                 "remove_stale_temporaries", "sha256_file", "LOCK_FILE"):
        assert getattr(storage, name) is getattr(files, name), name


def test_atomic_path_shows_nothing_until_the_block_ends(tmp_path):
    target = tmp_path / "out.json"
    with files.atomic_path(str(target)) as tmp:
        with open(tmp, "w") as f:
            f.write("{}")
        assert not target.exists() and os.path.basename(tmp).startswith(".out.json.tmp-")
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["out.json"]
    with pytest.raises(RuntimeError):
        with files.atomic_path(str(tmp_path / "bad.json")) as tmp:
            open(tmp, "w").close()
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["out.json"]                 # no half-written file


def test_version_names_are_short_ascii_digits():
    assert files.is_version_name("1") and files.is_version_name("0042")
    for bad in ("", "1a", "²", "1" * 19, "-1", ".tmp-3"):
        assert not files.is_version_name(bad), bad


def test_cut_csv_keeps_the_rows_below_and_the_header(tmp_path):
    path = tmp_path / "log.csv"
    assert files.cut_csv(str(path), "step", 3) == [] and not path.exists()
    path.write_text("step,loss\n1,0.5\n2,0.4\n3,0.3\n")
    before = path.stat().st_mtime_ns
    assert [r["step"] for r in files.cut_csv(str(path), "step", 10)] == ["1", "2", "3"]
    assert path.stat().st_mtime_ns == before                    # nothing dropped: untouched
    assert files.cut_csv(str(path), "step", 3) == [{"step": "1", "loss": "0.5"},
                                                   {"step": "2", "loss": "0.4"}]
    assert path.read_text() == "step,loss\n1,0.5\n2,0.4\n"
    assert files.cut_csv(str(path), "step", 0) == []
    assert path.read_text() == "step,loss\n"                     # the header stays
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
