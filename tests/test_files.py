import json
import os

import pytest

from keras_vit.files import atomic_path
from keras_vit.files import read_labels
from keras_vit.files import write_json


def test_a_completed_write_replaces_the_file_in_one_rename(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert tmp != str(path)
        with open(tmp, "w") as f:
            f.write("new")
        assert path.read_text() == "old"  # Not yet: only at the end.
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_write_leaves_the_previous_file_and_no_debris(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("previous")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(path, suffix=".keras") as tmp:
            assert tmp.endswith(".keras")
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("writer failed")
    assert path.read_text() == "previous"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_a_folder_is_published_whole(tmp_path):
    target = tmp_path / "saved"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target, directory=True) as tmp:
        os.mkdir(tmp)
        with open(os.path.join(tmp, "new.txt"), "w") as f:
            f.write("new")
    assert os.listdir(target) == ["new.txt"]
    assert os.listdir(tmp_path) == ["saved"]


def test_a_write_that_cannot_happen_names_the_path(tmp_path):
    path = tmp_path / "missing" / "labels.json"
    with pytest.raises(OSError, match="Cannot write .*labels.json"):
        write_json(path, ["a"])


def test_labels_files_are_lists_or_index_dicts(tmp_path):
    write_json(tmp_path / "list.json", ["cat", "dog", 3])
    (tmp_path / "dict.json").write_text(
        json.dumps({"1": "dog", "0": "cat", "10": "z", "2": "x"})
    )
    assert read_labels(tmp_path / "list.json") == ["cat", "dog", "3"]
    assert read_labels(tmp_path / "dict.json") == ["cat", "dog", "x", "z"]
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        read_labels(tmp_path / "nowhere.json")
