"""The data-efficient options of `build_vit` keep every guarantee of the
plain model: safe-mode `.keras` round trip, exports that match, attention
maps."""

import json

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from export import export_onnx
from export import export_saved_model
from export import export_tflite
from keras_vit import build_vit
from keras_vit.attention import attention_maps
from keras_vit.attention import attention_rollout
from keras_vit.attention import model_grid
from tests.helpers import to_numpy
from tests.test_model import images
from tests.test_model import randomize

TINY = dict(hidden_dim=16, depth=2, num_heads=2, mlp_dim=32, num_classes=3)
OPTIONS = {
    "spt_lsa": dict(tokenizer="shifted_patch", locality_attention=True),
    "conv_seqpool": dict(tokenizer="conv", pooling="sequence"),
    "conv_lsa_gap": dict(
        tokenizer="conv", locality_attention=True, pooling="gap"
    ),
}


def _model(options, image_size=(16, 12), channels=3):
    model = build_vit(
        image_size=image_size,
        patch_size=4,
        channels=channels,
        **TINY,
        **options,
    )
    randomize(model, scale=0.3)
    if options.get("locality_attention"):
        # A temperature near 0 would make every softmax one-hot.
        for w in model.weights:
            if w.name == "temperature":
                w.assign(2.0)
    return model


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_safe_mode_round_trip(name, tmp_path):
    model = _model(OPTIONS[name])
    x = images(3, (16, 12))
    path = tmp_path / "vit.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default.
    np.testing.assert_allclose(
        to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6
    )
    assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(
        model.get_config(), sort_keys=True
    )
    assert np.ptp(to_numpy(model(x))) > 0.1  # Not a constant output.


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_attention_maps(name):
    model = _model(OPTIONS[name])
    assert model_grid(model) == (4, 3)
    maps = attention_maps(model, images(2, (16, 12)))
    assert maps.shape == (2, 2, 2, 13, 13)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    if OPTIONS[name].get("locality_attention"):
        diagonal = np.diagonal(maps, axis1=-2, axis2=-1)
        np.testing.assert_array_equal(diagonal, 0.0)
    rollout = attention_rollout(maps, grid_size=(4, 3))
    assert rollout.shape == (2, 4, 3)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_exports_match_the_model(name, tmp_path):
    model = _model(OPTIONS[name], channels=1)
    samples = images(6, (16, 12), channels=1)
    reports = [
        export_saved_model(model, tmp_path / "saved", samples=samples),
        export_tflite(model, tmp_path / "m.tflite", samples=samples),
        export_onnx(model, tmp_path / "m.onnx", samples=samples),
    ]
    for report in reports:
        assert report.passed
        assert max(report.max_abs_diff.values()) <= 1e-4
    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)


def test_layer_names_say_which_tokenizer():
    names = {
        key: [layer.name for layer in _model(options).layers]
        for key, options in OPTIONS.items()
    }
    assert names["spt_lsa"][1:4] == [
        "patch_extractor",
        "patch_norm",
        "patch_embedding",
    ]
    assert names["conv_seqpool"][1:3] == ["conv_tokenizer", "class_token"]
    model = _model(OPTIONS["conv_seqpool"])
    assert type(model.get_layer("pooling")).__name__ == "SequencePooling"


def test_defaults_are_the_plain_vit():
    model = build_vit(image_size=16, patch_size=4, **TINY)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"PatchExtractor", "TokenPooling"} <= kinds
    assert not {"ConvTokenizer", "ShiftedPatchExtractor"} & kinds
    assert not any(w.name == "temperature" for w in model.weights)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(tokenizer="cnn"), ValueError, "tokenizer.*cnn"),
        (
            dict(tokenizer="conv", patch_size=6, image_size=12),
            ValueError,
            "power of two",
        ),
        (dict(tokenizer="conv", patch_size=(4, 2)), ValueError, "power of two"),
        (dict(locality_attention=1), TypeError, "locality_attention"),
        (dict(pooling="seq"), ValueError, "pooling"),
    ],
)
def test_invalid_options_raise(kwargs, error, match):
    config = dict(image_size=16, patch_size=4, **TINY)
    config.update(kwargs)
    with pytest.raises(error, match=match):
        build_vit(**config)


def test_pretrained_weights_need_the_patch_tokenizer(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, x=np.zeros(1))
    with pytest.raises(ValueError, match="patch tokenizer"):
        build_vit(
            image_size=16, patch_size=4, **TINY, tokenizer="conv", weights=path
        )
