"""Generated configurations: valid ones round-trip and export, invalid raise.

The example budget is small by default (tests/conftest.py); run more with
`python -m pytest tests/test_properties.py --hypothesis-profile=thorough`.
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_vit
from tests.helpers import to_numpy


@st.composite
def valid_configs(draw):
    patch = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    grid = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    heads = draw(st.integers(1, 3))
    return dict(
        image_size=(patch[0] * grid[0], patch[1] * grid[1]),
        patch_size=patch,
        hidden_dim=heads * draw(st.integers(1, 4)),
        depth=draw(st.integers(1, 2)),
        num_heads=heads,
        mlp_dim=draw(st.integers(1, 16)),
        num_classes=draw(st.integers(1, 5)),
        channels=draw(st.sampled_from([1, 3])),
        pooling=draw(st.sampled_from(["token", "gap"])),
        representation_size=draw(st.none() | st.integers(1, 6)),
        dropout=draw(st.sampled_from([0.0, 0.1])),
        attention_dropout=draw(st.sampled_from([0.0, 0.2])),
        drop_path_rate=draw(st.sampled_from([0.0, 0.3])),
        approximate_gelu=draw(st.booleans()),
    )


def _randomized(config, seed):
    model = keras_vit.build_vit(**config)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))
    h, w = config["image_size"]
    x = rng.uniform(-1, 1, (3, h, w, config["channels"])).astype("float32")
    return model, x


@given(config=valid_configs(), seed=st.integers(0, 2**16))
def test_valid_configs_round_trip_through_keras_files(
    config, seed, tmp_path_factory
):
    model, x = _randomized(config, seed)
    out = to_numpy(model(x))
    assert out.shape == (3, config["num_classes"]) and np.isfinite(out).all()
    path = tmp_path_factory.mktemp("m") / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), out)


# Exports take seconds each: a sixth of the profile's budget, at least 3.
@settings(max_examples=max(3, settings().max_examples // 6))
@given(config=valid_configs(), seed=st.integers(0, 2**16))
def test_valid_configs_export_to_onnx_and_tflite(
    config, seed, tmp_path_factory
):
    from export import export_onnx
    from export import export_tflite

    model, x = _randomized(config, seed)
    folder = tmp_path_factory.mktemp("e")
    for report in (
        export_onnx(model, folder / "m.onnx", samples=x),
        export_tflite(model, folder / "m.tflite", samples=x),
    ):
        assert report.passed
        assert max(report.max_abs_diff.values()) <= 1e-4


# Every invalid value, every run (not a sample of them).
INVALID = [
    ("image_size", 9),
    ("image_size", (8, 6)),
    ("patch_size", 0),
    ("hidden_dim", 7),
    ("num_heads", 3),
    ("depth", 0),
    ("mlp_dim", -4),
    ("num_classes", 0),
    ("dropout", 1.0),
    ("attention_dropout", -0.1),
    ("drop_path_rate", 1.5),
    ("pooling", "max"),
    ("representation_size", 0),
    ("channels", 0),
    ("image_size", (8, 0)),
]


@pytest.mark.parametrize("key, value", INVALID)
def test_invalid_configs_raise_value_error_naming_a_value(key, value):
    config = dict(
        image_size=8,
        patch_size=4,
        hidden_dim=8,
        depth=1,
        num_heads=2,
        mlp_dim=8,
        num_classes=3,
    )
    config[key] = value
    with pytest.raises(ValueError) as info:
        keras_vit.build_vit(**config)
    assert "Received" in str(info.value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)
