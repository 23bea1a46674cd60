import os
import shutil

import pytest

from gpicl_tf.serving.repository import ModelRepository

# starts a server process or trains and exports a model: not in the fast loop
pytestmark = pytest.mark.slow


@pytest.fixture
def base(model_base, tmp_path):
    """A private copy of the exported model folder (version 1) to damage."""
    out = tmp_path / "gpicl"
    shutil.copytree(os.path.join(model_base, "gpicl", "1"), out / "1")
    return out


def test_poll_survives_a_vanished_folder_and_odd_names(base, caplog):
    repo = ModelRepository(str(base), "gpicl", poll_seconds=60)
    (base / "\u00b2").mkdir()                      # digits to str.isdigit, not a version
    (base / ("9" * 30)).mkdir()                    # too long to be a version
    assert repo.available_versions() == [1]
    moved = base.parent / "away"
    os.rename(base, moved)                         # the folder disappears for a moment
    repo.poll()
    repo.poll()
    assert caplog.text.count("polling") == 1       # logged once, not at every poll
    os.rename(moved, base)
    shutil.copytree(base / "1", base / "2")        # then a new version arrives
    repo.poll()
    assert repo.get("gpicl").version == 2


def test_a_broken_newest_version_does_not_hide_a_good_older_one(base, caplog):
    shutil.copytree(base / "1", base / "2")
    (base / "3").mkdir()                           # broken: no SavedModel inside
    os.remove(base / "2" / "saved_model.pb")       # broken too
    repo = ModelRepository(str(base), "gpicl", poll_seconds=60)
    assert repo.get("gpicl").version == 1
    assert "cannot load" in caplog.text
    repo.poll()                                    # failed versions are not retried each poll
    assert caplog.text.count("cannot load") == 2
    shutil.copytree(base / "1", base / "4")
    repo.poll()
    assert repo.get("gpicl").version == 4


def test_no_loadable_version_names_why(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no loadable model version .*version 1:"):
        ModelRepository(str(tmp_path / "m"), "m")


def test_a_failed_version_is_loaded_once_repaired_and_reported_until_then(base):
    shutil.copytree(base / "1", base / "2")
    os.rename(base / "2" / "saved_model.pb", base.parent / "pb")   # version 2 is broken
    repo = ModelRepository(str(base), "gpicl", poll_seconds=60)
    assert repo.get("gpicl").version == 1
    status = repo.version_status("gpicl")
    assert [(s["version"], s["state"]) for s in status] == [(1, "AVAILABLE"), (2, "END")]
    assert "failed to load" in status[1]["error_message"]
    assert repo.version_status("gpicl", 2)[0]["state"] == "END"
    os.rename(base.parent / "pb", base / "2" / "saved_model.pb")   # repaired
    repo.poll()
    assert repo.get("gpicl").version == 2
    assert [(s["version"], s["state"]) for s in repo.version_status("gpicl")] == [
        (2, "AVAILABLE")]


def test_a_deleted_version_is_unloaded_and_the_newest_on_disk_served(base, model_base):
    from gpicl_tf.serving.repository import NotFound

    shutil.copytree(base / "1", base / "2")
    repo = ModelRepository(str(base), "gpicl", poll_seconds=60)
    assert repo.get("gpicl").version == 2
    shutil.rmtree(base / "2")
    repo.poll()
    assert repo.get("gpicl").version == 1
    assert repo.get("gpicl", 1).version == 1
    with pytest.raises(NotFound, match="version 2"):
        repo.get("gpicl", 2)
    assert [(s["version"], s["state"]) for s in repo.version_status("gpicl")] == [
        (1, "AVAILABLE")]
    shutil.rmtree(base / "1")                      # nothing left: nothing served
    repo.poll()
    with pytest.raises(NotFound, match="no version of 'gpicl' is available"):
        repo.get("gpicl")
    with pytest.raises(NotFound):
        repo.version_status("gpicl")
    shutil.copytree(os.path.join(model_base, "gpicl", "1"), base / "3")
    repo.poll()
    assert repo.get("gpicl").version == 3


def test_a_replaced_base_directory_is_followed(base):
    shutil.copytree(base / "1", base / "2")
    repo = ModelRepository(str(base), "gpicl", poll_seconds=60)
    served = repo.get("gpicl")
    assert served.version == 2
    new = base.parent / "new"                      # a new base: versions 1 and 2, new files
    shutil.copytree(base / "1", new / "1")
    shutil.copytree(base / "1", new / "2")
    shutil.rmtree(base)
    os.rename(new, base)
    repo.poll()
    assert repo.get("gpicl").version == 2 and repo.get("gpicl") is not served
    newer = base.parent / "newer"                  # then one with version 1 only
    shutil.copytree(base / "1", newer / "1")
    shutil.rmtree(base)
    os.rename(newer, base)
    repo.poll()
    assert repo.get("gpicl").version == 1


@pytest.mark.parametrize("meta", [{"max_queries": 0}, {"max_context": 2_000_000_000}])
def test_a_version_with_sizes_that_break_serving_is_not_loaded(base, meta):
    import json

    from gpicl_tf.serving.server import Limits, body_limit

    shutil.copytree(base / "1", base / "2")
    config = base / "2" / "gpicl_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **meta}))
    repo = ModelRepository(str(base), "gpicl", poll_seconds=60)
    assert repo.get("gpicl").version == 1
    status = repo.version_status("gpicl", 2)[0]
    assert status["state"] == "END"
    assert "must be a whole number" in status["error_message"] or \
        "more than the" in status["error_message"]
    served = repo.get("gpicl")
    served.meta = {**served.meta, "max_context": 10 ** 12}   # never above gRPC's 2 GiB
    assert body_limit(served, Limits()) == 2 ** 31 - 1
