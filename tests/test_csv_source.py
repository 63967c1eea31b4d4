"""A CSV file of image paths and labels as a dataset (`keras_vit.sources`):
`load_datasets`, `keras-vit train/evaluate --dataset file.csv` and the
export's `--samples`/`--representative-data file.csv`."""

import json

import keras
import numpy as np
import pytest

from keras_vit.data import BadImageError
from keras_vit.data import count_examples
from keras_vit.data import load_datasets
from keras_vit.data import native_image_shape
from keras_vit.sources import CsvSource
from keras_vit.sources import open_source

COLOURS = ("red", "green", "blue")


def _write_csv(root, count=12, labels=COLOURS, header="path,label", side=10):
    """Reddish, greenish and bluish PNGs under `root/images`, listed in
    `root/data.csv` (relative paths) with the given label per colour."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(exist_ok=True)
    lines = [header]
    for colour, label in enumerate(labels):
        for i in range(count):
            image = rng.integers(0, 120, (side, side, 3))
            image[..., colour] += 120
            name = f"images/{colour}_{i}.png"
            keras.utils.save_img(root / name, image.astype("uint8"))
            lines.append(f"{name},{label}")
    path = root / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_csv_file_is_a_dataset_of_its_paths_and_labels(tmp_path):
    path = _write_csv(tmp_path)
    assert isinstance(open_source(str(path)), CsvSource)
    assert native_image_shape(str(path)) == (10, 10, 3)
    assert count_examples(str(path)) == 36
    data = load_datasets(
        str(path), image_size=8, validation_split=0.0, test_split=0.25
    )
    assert data.class_names == ["blue", "green", "red"]
    assert data.sizes == {"train": 27, "test": 9}
    for split in (data.train, data.test):
        for images, labels in split:
            # Each image's strongest channel is its colour: its label.
            strongest = np.asarray(images).mean(axis=(1, 2)).argmax(-1)
            want = [
                ("blue", "green", "red").index(COLOURS[c]) for c in strongest
            ]
            np.testing.assert_array_equal(np.asarray(labels), want)


def test_integer_labels_are_classes_in_numeric_order(tmp_path):
    path = _write_csv(tmp_path, count=4, labels=("10", "2", "9"))
    source = open_source(str(path))
    assert source.class_names() == ["2", "9", "10"]
    # Other columns are ignored; the header's names in any case and order.
    text = path.read_text().splitlines()
    rows = [f"x,{r.split(',')[1]},{r.split(',')[0]}" for r in text[1:]]
    other = tmp_path / "other.csv"
    other.write_text("\n".join(["Notes,CLASS,File"] + rows) + "\n")
    assert open_source(str(other)).class_names() == ["2", "9", "10"]


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("name,label\na.png,x\n", ValueError, r"no path column.*\['name', "),
        ("path,kind\na.png,x\n", ValueError, r"no label column"),
        ("path,label\n", ValueError, r"header and at least one row"),
        ("path,label\nimages/0_0.png,\n", ValueError, r"Line 2 .* no label"),
        (
            "path,label\nnope.png,a\nimages/0_0.png,b\n",
            FileNotFoundError,
            r"1 image file.*nope.png",
        ),
        (
            "path,label\ndata.csv,a\nimages/0_0.png,b\n",
            ValueError,
            r"not images.*data.csv",
        ),
        (
            "path,label\nimages/0_0.png,a\nimages/0_1.png,a\n",
            ValueError,
            r"at least 2 classes.*\['a'\]",
        ),
    ],
)
def test_a_malformed_csv_is_one_clear_error(tmp_path, text, error, match):
    _write_csv(tmp_path, count=2)
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=match):
        load_datasets(str(path), image_size=8)


def test_a_missing_csv_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No CSV file.*gone.csv"):
        load_datasets(str(tmp_path / "gone.csv"), image_size=8)


def test_undecodable_files_in_a_csv_are_named_or_skipped(tmp_path):
    path = _write_csv(tmp_path, count=4)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with open(path, "a") as f:
        f.write("images/broken.png,red\n")
    with pytest.raises(BadImageError, match=r"1 image file.*broken.png"):
        load_datasets(str(path), image_size=8)
    data = load_datasets(
        str(path),
        image_size=8,
        skip_bad_images=True,
        validation_split=0.0,
        test_split=0.0,
    )
    assert data.sizes["train"] == 12


def test_train_evaluate_and_export_from_a_csv(tmp_path):
    from export.cli import main as export_main
    from keras_vit.cli import main

    path = _write_csv(tmp_path, count=12)
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(path), "--out", str(out), "--epochs"]
    argv += ["2", "--no-tensorboard", "--quiet"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == str(path) and config["sizes"]["test"] == 6
    assert json.loads((out / "labels.json").read_text()) == [
        "blue",
        "green",
        "red",
    ]
    assert main(["evaluate", str(out), "--dataset", str(path), "--json"]) == 0
    export = tmp_path / "export"
    argv = [str(out / "model.keras"), "--to", str(export), "--formats"]
    argv += ["tflite,onnx", "--samples", str(path)]
    argv += ["--representative-data", str(path), "--quantize", "dynamic"]
    assert export_main(argv) == 0
    report = json.loads((export / "report.json").read_text())
    assert report["passed"] and len(report["reports"]) == 4


def test_evaluate_keeps_the_test_split_of_the_csv_it_was_trained_on(tmp_path):
    """Also when given the run's folder, not its model.keras."""
    from keras_vit.cli import _evaluation_split
    from keras_vit.cli import build_parser

    trained_on = _write_csv(tmp_path, count=2)
    other = tmp_path / "other.csv"
    other.write_text(trained_on.read_text())
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"dataset": str(trained_on)}))

    def split(model, dataset):
        argv = ["evaluate", str(model), "--dataset", str(dataset)]
        return _evaluation_split(build_parser().parse_args(argv))

    for model in (run, run / "model.keras"):
        assert split(model, trained_on)[0] == "test"
        assert split(model, other) == (
            "all",
            f"a CSV file the model was not trained on ({trained_on})",
        )
