"""DeiT, DINOv2, CLIP and SigLIP: timm's files load and compute timm's outputs.

The golden files were written once by tests/fixtures/make_family_golden.py
with timm (random weights at test size, timm's own state-dict layout); the
tests need neither torch nor timm.
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.model import vit_config
from tests.helpers import write_colour_folder

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# What the arrays cannot say: CLIP's LayerNorm epsilon and OpenAI's QuickGELU.
FAMILIES = {
    "deit": {},
    "deit_distilled": {},
    "dinov2": {},
    "dinov2_reg": {},
    "clip_openai": dict(activation="quick_gelu", layer_norm_epsilon=1e-5),
    "clip_laion": dict(layer_norm_epsilon=1e-5),
    "siglip": {},
}
# The options each file's arrays give the model.
READ_FROM_FILE = {
    "deit": dict(class_token=True, num_classes=5),
    "deit_distilled": dict(distillation_token=True, num_classes=5),
    "dinov2": dict(layer_scale=1e-5, include_top=False),
    "dinov2_reg": dict(
        layer_scale=1e-5, num_registers=4, class_token_position=False
    ),
    "clip_openai": dict(pre_norm=True, activation="quick_gelu"),
    "clip_laion": dict(pre_norm=True, activation="gelu"),
    "siglip": dict(class_token=False, pooling="map", include_top=False),
}


@pytest.fixture(scope="module")
def golden():
    return np.load(os.path.join(FIXTURES, "family_golden.npz"))


def _load(family, size=(32, 32), **kwargs):
    path = os.path.join(FIXTURES, f"family_{family}.safetensors")
    return keras_vit.from_preset(
        path,
        image_size=size,
        num_heads=2,
        progress=False,
        **FAMILIES[family],
        **kwargs,
    )


def _outputs(model, golden, size):
    images = golden["images"][:, : size[0], : size[1]]
    return keras.ops.convert_to_numpy(model(images))


def _assert_close(got, want):
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


SIZES = [(32, 32), (48, 48), (24, 24), (40, 56)]


@pytest.mark.parametrize(
    "size", SIZES, ids=["trained_size", "48", "24", "40x56"]
)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_timm_file_of_each_family_computes_timms_outputs(
    family, size, golden
):
    """Built at each size, the position embedding resampled at load time."""
    model = _load(family, size)
    _assert_close(_outputs(model, golden, size), golden[_key(family, size)])
    config = vit_config(model)
    for key, value in READ_FROM_FILE[family].items():
        assert config[key] == value, key


def _key(family, size):
    return f"{family}/{size[0]}x{size[1]}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_model_takes_any_image_size_as_timm_does(family, golden):
    """`dynamic_image_size=True`: one model, built at 32x32, resamples its
    position embedding in the graph for each size (timm's
    `dynamic_img_size`)."""
    model = _load(family, dynamic_image_size=True)
    assert model.input_shape == (None, None, None, 3)
    config = vit_config(model)
    assert config.dynamic_image_size and config.image_size == (32, 32)
    for size in SIZES:
        _assert_close(_outputs(model, golden, size), golden[_key(family, size)])


def test_a_dynamic_model_saves_loads_and_refuses_a_size_off_the_patches(
    tmp_path, golden
):
    model = _load("dinov2_reg", dynamic_image_size=True)
    path = tmp_path / "dynamic.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for size in SIZES:
        np.testing.assert_allclose(
            _outputs(loaded, golden, size),
            _outputs(model, golden, size),
            atol=1e-6,
        )
    with pytest.raises(ValueError, match=r"divisible by the patch size.*30"):
        model(np.zeros((1, 30, 32, 3), "float32"))


def test_a_family_model_saves_and_loads_in_safe_mode(tmp_path, golden):
    for family in ("deit_distilled", "dinov2_reg", "clip_openai", "siglip"):
        model = _load(family)
        path = tmp_path / f"{family}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        x = golden["images"][:, :32, :32]
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(loaded(x)),
            keras.ops.convert_to_numpy(model(x)),
            atol=1e-6,
        )
        assert vit_config(loaded) == vit_config(model)


def test_the_options_build_from_keywords_and_round_trip_the_config():
    model = keras_vit.build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=16,
        depth=2,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
        num_registers=2,
        layer_scale=0.1,
        pre_norm=True,
        activation="quick_gelu",
    )
    config = vit_config(model)
    assert (config.num_registers, config.layer_scale, config.pre_norm) == (
        2,
        0.1,
        True,
    )
    assert config.num_prefix_tokens == 3
    # Registers sit after the class token; the position embedding has a row
    # for the class token and none for registers.
    assert model.get_layer("position_embedding").embedding.shape == (1, 17, 16)
    rebuilt = keras_vit.build_vit(**config)
    assert rebuilt.count_params() == model.count_params()
    assert vit_config(rebuilt) == config


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(class_token=False), ValueError, "reads the class token"),
        (
            dict(distillation_token=True, pooling="gap"),
            ValueError,
            "distillation token goes with",
        ),
        (dict(layer_scale=0.0), ValueError, "layer_scale=0.0"),
        (dict(num_registers=-1), ValueError, "num_registers"),
        (dict(activation="relu"), ValueError, "activation='relu'"),
        (
            dict(activation="quick_gelu", approximate_gelu=True),
            ValueError,
            "contradicts",
        ),
        (dict(pre_norm="yes"), TypeError, "pre_norm"),
    ],
)
def test_contradictory_family_options_are_refused(kwargs, error, match):
    base = dict(image_size=16, patch_size=4, hidden_dim=16, depth=1)
    base.update(num_heads=2, mlp_dim=32, num_classes=3)
    with pytest.raises(error, match=match):
        keras_vit.build_vit(**base, **kwargs)


def test_attention_maps_leave_registers_and_the_distillation_token_out(
    golden,
):
    from keras_vit.attention import attention_maps
    from keras_vit.attention import attention_rollout

    x = golden["images"][:1, :32, :32]
    for family in ("dinov2_reg", "deit_distilled"):
        model = _load(family)
        maps = attention_maps(model, x)
        # 2 blocks, 1 image, 2 heads, the class token and 4 x 4 patches.
        assert maps.shape == (2, 1, 2, 17, 17)
        assert attention_rollout(maps).shape == (1, 4, 4)
    with pytest.raises(ValueError, match="no class token"):
        attention_maps(_load("siglip"), x)


@pytest.mark.parametrize("family", ["deit_distilled", "dinov2_reg", "siglip"])
def test_a_family_model_exports_and_verifies(family, tmp_path, golden):
    from export import export_onnx
    from export import export_tflite

    model = _load(family)
    x = golden["images"][:, :32, :32]
    for report in (
        export_onnx(model, tmp_path / "m.onnx", samples=x),
        export_tflite(model, tmp_path / "m.tflite", samples=x),
    ):
        assert report.passed, report
        assert max(report.max_abs_diff.values()) <= 1e-4


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """Three classes of 32x32 PNGs: reddish, greenish, bluish noise."""
    return write_colour_folder(tmp_path_factory.mktemp("colours"), 32, 20)


@pytest.mark.parametrize(
    "family, extra",
    [("dinov2_reg", []), ("clip_openai", ["--activation", "quick_gelu"])],
)
def test_a_family_checkpoint_fine_tunes_from_the_cli_and_exports_verified(
    family, extra, colour_folder, tmp_path
):
    import json

    from export.cli import main as export_main
    from keras_vit.cli import main

    path = os.path.join(FIXTURES, f"family_{family}.safetensors")
    out = tmp_path / "run"
    args = ["train", "--dataset", colour_folder, "--weights", path]
    args += ["--num-heads", "2", "--out", out, "--epochs", "2"]
    args += ["--no-tensorboard", "--quiet", *extra]
    assert main([str(a) for a in args]) == 0
    config = json.loads((out / "config.json").read_text())
    model = keras.saving.load_model(out / "model.keras")
    got = vit_config(model)
    assert got.num_classes == 3 and got.include_top
    from keras_vit.recipes import MODEL_KEYS

    for key, value in READ_FROM_FILE[family].items():
        if key not in ("num_classes", "include_top"):
            assert got[key] == value, key
            # The run's config.json records the architecture options.
            assert key not in MODEL_KEYS or config[key] == value, key
    export = tmp_path / "export"
    argv = [str(out / "model.keras"), "--to", str(export)]
    argv += [
        "--formats",
        "saved_model,tflite,onnx",
        "--samples",
        str(colour_folder),
    ]
    assert export_main(argv) == 0
    report = json.loads((export / "report.json").read_text())
    assert report["passed"] and len(report["reports"]) == 3


def test_attention_maps_of_a_dynamic_model_follow_the_image_size(golden):
    from keras_vit.attention import attention_maps

    model = _load("dinov2_reg", dynamic_image_size=True)
    maps = attention_maps(model, golden["images"][:1, :48, :40])
    # The class token and the 6 x 5 patches; the 4 registers left out.
    assert maps.shape == (2, 1, 2, 31, 31)
    with pytest.raises(ValueError, match="multiples of 8x8"):
        attention_maps(model, golden["images"][:1, :30, :32])


@pytest.mark.parametrize("family", ["deit_distilled", "siglip"])
def test_savedmodel_and_onnx_of_a_dynamic_model_take_any_size_as_timm_does(
    family, tmp_path, golden
):
    """The float32 input of the SavedModel and ONNX files takes any size
    (multiples of the patch), the position embedding resampled in the
    graph with matrix products (no Resize op for onnxruntime to get
    wrong): each file computes timm's outputs at sizes it was not built
    for. TFLite's converter needs fixed shapes: that file takes 32x32."""
    import onnx

    from export import export_onnx
    from export import export_saved_model
    from export import export_tflite
    from export.verify import Runner

    model = _load(family, dynamic_image_size=True)
    x = golden["images"][:, :32, :32]
    files = {
        "saved_model": export_saved_model(model, tmp_path / "sm", samples=x),
        "onnx": export_onnx(model, tmp_path / "m.onnx", samples=x),
    }
    for fmt, report in files.items():
        assert report.passed, report
        # Trained size at batch 1 and 2, then two more sizes.
        assert sorted(report.max_abs_diff) == ["1", "2", "24x40", "40x48"]
        assert "also at 40x48 and 24x40" in report.compared
        runner = Runner(report.path)
        for size in SIZES:
            got = runner(golden["images"][:, : size[0], : size[1]])
            _assert_close(got, golden[_key(family, size)])
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert not [n.op_type for n in graph.node if n.op_type == "Resize"]
    proto = onnx.load(tmp_path / "m.onnx")
    metadata = {p.key: p.value for p in proto.metadata_props}
    note = json.loads(metadata["keras_vit"])["input"]
    assert note["shape"] == [None, None, None, 3]
    assert "multiples of 8x8; trained at 32x32" in note["note"]
    from export._litert import interpreter

    report = export_tflite(model, tmp_path / "m.tflite", samples=x)
    assert report.passed
    details = interpreter(model_path=report.path).get_input_details()
    assert tuple(details[0]["shape"][1:3]) == (32, 32)


def test_the_export_command_says_what_a_model_of_any_size_becomes(
    tmp_path, capsys
):
    from export.cli import main as export_main

    model = _load("dinov2_reg", dynamic_image_size=True)
    path = tmp_path / "dynamic.keras"
    model.save(path)
    out = tmp_path / "export"
    argv = [str(path), "--to", str(out), "--formats", "saved_model,onnx"]
    assert export_main(argv) == 0
    said = [
        line
        for line in capsys.readouterr().err.splitlines()
        if "any image size" in line
    ]
    assert len(said) == 1 and "TFLite takes its trained 32x32" in said[0]
    manifest = json.loads((out / "manifest.json").read_text())
    # Raw images of any size in, resized to the trained 32x32 inside.
    assert manifest["preprocessing"]["resize"]["size"] == [32, 32]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"]
    saved_model = report["reports"][0]
    # serving_tensor is also checked at two sizes other than the trained.
    assert {"40x48", "24x40"} <= set(saved_model["max_abs_diff"])
    argv = [str(path), "--to", str(tmp_path / "tensors"), "--formats"]
    argv += ["onnx", "--no-preprocessing"]
    assert export_main(argv) == 0
    report = json.loads((tmp_path / "tensors" / "report.json").read_text())
    assert {"40x48", "24x40"} <= set(report["reports"][0]["max_abs_diff"])


def test_a_keras_file_as_checkpoint_keeps_what_arrays_cannot_say(tmp_path):
    from keras_vit.model import build_pretrained
    from keras_vit.model import read_pretrained

    model = keras_vit.build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
        activation="quick_gelu",
        layer_scale=0.1,
        layer_norm_epsilon=1e-5,
        pre_norm=True,
    )
    model.save(tmp_path / "m.keras")
    checkpoint = read_pretrained(str(tmp_path / "m.keras"))
    rebuilt, _ = build_pretrained(checkpoint, num_classes=5)
    config = vit_config(rebuilt)
    assert config.activation == "quick_gelu" and config.layer_scale == 0.1
    assert config.layer_norm_epsilon == 1e-5 and config.pre_norm
