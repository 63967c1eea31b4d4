import subprocess
import sys


def test_building_a_model_loads_neither_the_data_nor_the_training_stack():
    code = """
import sys
import keras_vit
model = keras_vit.build_vit(
    image_size=8, patch_size=4, hidden_dim=8, depth=1, num_heads=2,
    mlp_dim=8, num_classes=2,
)
heavy = [m for m in ("keras_vit.data", "keras_vit.training",
                     "keras_vit.preprocessing", "keras_vit.attention",
                     "tensorflow_datasets") if m in sys.modules]
assert not heavy, heavy
# On first use they load, under the same names as before.
assert keras_vit.training.compile_for_training
assert keras_vit.data.load_datasets
assert keras_vit.attention_maps.__module__ == "keras_vit.attention"
assert "keras_vit.training" in sys.modules
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_unknown_attributes_still_raise_attribute_error():
    import pytest

    import keras_vit

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        keras_vit.nothing  # noqa: B018
    assert "build_vit" in dir(keras_vit)


def test_keras_vit_weights_loads_no_tensorflow():
    """`keras-vit weights list` reads the registry only: no TensorFlow,
    no Keras (they take most of a command's start-up)."""
    code = """
import sys
from keras_vit_cli import main
sys.argv = ["keras-vit", "weights", "list"]
status = main(["weights", "list", "--variant", "Ti/16"])
loaded = [m for m in ("tensorflow", "keras") if m in sys.modules]
print("loaded:", loaded, "status:", status)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "loaded: [] status: 0"
    header = lines[0].split()
    assert header[:4] == ["name", "variant", "image", "px"]
    assert "file" in header and "size" in header and "transform" in header
    row = next(r for r in lines if r.startswith("augreg/Ti_16-i21k-300ep"))
    assert "37 MiB" in row and row.split()[2] == "224"


def test_other_commands_load_the_model_api_as_import_does():
    code = """
import sys
from keras_vit_cli import main
try:
    main(["evaluate", "--help"])
except SystemExit:
    pass
import keras
assert "keras_vit>PatchEmbedding" in keras.saving.get_custom_objects()
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ok"
