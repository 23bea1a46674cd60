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
