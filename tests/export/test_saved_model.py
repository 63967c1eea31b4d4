import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import OutputExistsError
from export import export_saved_model


def test_export_serves_images_to_logits_with_any_batch(
    trained_model, samples, tmp_path
):
    path = tmp_path / "sm"
    report = export_saved_model(trained_model, path, samples=samples)
    assert report.passed
    assert set(report.max_abs_diff) == {"1", str(len(samples))}
    assert max(report.max_abs_diff.values()) <= 1e-4
    assert report.size_bytes > 0
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    assert sorted(serve.structured_outputs) == ["logits", "probabilities"]
    assert list(serve.structured_input_signature[1]) == ["images"]
    for batch in (1, 5):
        out = serve(images=tf.constant(samples[:batch]))["logits"].numpy()
        np.testing.assert_allclose(
            out, trained_model(samples[:batch]), atol=1e-4
        )


def test_loads_without_keras_vit_installed(trained_model, samples, tmp_path):
    path = tmp_path / "sm"
    export_saved_model(trained_model, path)
    np.save(tmp_path / "x.npy", samples)
    np.save(tmp_path / "ref.npy", np.asarray(trained_model(samples)))
    script = (
        "import sys; sys.modules['keras_vit'] = None\n"
        "import numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "out = m.signatures['serving_default'](images=tf.constant(x))\n"
        f"ref = np.load({str(tmp_path / 'ref.npy')!r})\n"
        "assert np.abs(out['logits'].numpy() - ref).max() < 1e-4\n"
        "print('served')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "served" in result.stdout


def test_any_single_image_input_model_exports(tmp_path):
    inputs = keras.Input((12, 10, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    cnn = keras.Model(inputs, keras.layers.Dense(5)(x))
    assert export_saved_model(cnn, tmp_path / "cnn").passed


def test_existing_target_is_kept_without_overwrite(trained_model, tmp_path):
    path = tmp_path / "sm"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"overwrite.*sm"):
        export_saved_model(trained_model, path)
    assert (path / "keep.txt").read_text() == "mine"
    # It is also a ValueError and a FileExistsError.
    assert issubclass(OutputExistsError, ValueError)
    assert issubclass(OutputExistsError, FileExistsError)
    report = export_saved_model(trained_model, path, overwrite=True)
    assert report.passed
    assert not (path / "keep.txt").exists()
    assert (path / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["sm"]  # No staging left over.


def test_missing_parent_folder(trained_model, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder of the output path"):
        export_saved_model(trained_model, tmp_path / "nope" / "sm")


def test_models_that_are_not_single_image_models_are_refused(tmp_path):
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    two = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"exactly one image input.*2 inputs"):
        export_saved_model(two, tmp_path / "two")
    flat_in = keras.Input((10,))
    flat = keras.Model(flat_in, keras.layers.Dense(2)(flat_in))
    with pytest.raises(ValueError, match=r"Received: input shape \(None, 10\)"):
        export_saved_model(flat, tmp_path / "flat")
    with pytest.raises(TypeError, match=r"keras.Model.*str"):
        export_saved_model("model.keras", tmp_path / "str")
    assert os.listdir(tmp_path) == []


def test_samples_of_the_wrong_shape(trained_model, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\).*\(4, 8, 8, 3\)"):
        export_saved_model(
            trained_model, tmp_path / "sm", samples=np.zeros((4, 8, 8, 3))
        )
    with pytest.raises(ValueError, match=r"at least 2 images.*Received: 1"):
        export_saved_model(
            trained_model, tmp_path / "sm", samples=np.zeros((1, 16, 16, 3))
        )


def test_weights_are_stored_once(trained_model, tmp_path):
    path = tmp_path / "sm"
    export_saved_model(trained_model, path)
    weight_bytes = sum(
        int(np.prod(w.shape)) * 4 for w in trained_model.variables
    )
    stored = sum(f.stat().st_size for f in (path / "variables").iterdir())
    assert weight_bytes <= stored < 1.5 * weight_bytes + 4096
