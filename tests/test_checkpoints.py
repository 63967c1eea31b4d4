import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import checkpoints
from keras_vit.checkpoints import CheckpointError
from keras_vit.checkpoints import load_weights
from keras_vit.checkpoints import save_npz
from tests.helpers import to_numpy
from tests.reference import vit_forward

FIXTURES = Path(__file__).with_name("fixtures")
NPZ = FIXTURES / "vit_tiny.npz"
SAFETENSORS = FIXTURES / "vit_tiny_timm.safetensors"
CONFIG = dict(patch_size=8, hidden_dim=32, depth=2, num_heads=4, mlp_dim=64)


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "vit_tiny_golden.npz") as data:
        return {k: data[k] for k in data.files}


def _weights(model):
    return [to_numpy(w).copy() for w in model.weights]


def test_original_npz_matches_timm(golden):
    model = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=NPZ, **CONFIG
    )
    out = to_numpy(model(golden["images_32"]))
    diff = np.abs(out - golden["logits_32"]).max()
    assert diff < 1e-4, diff


def test_other_resolution_resizes_the_position_embedding_like_timm(golden):
    model = keras_vit.build_vit(
        image_size=48, num_classes=5, weights=NPZ, **CONFIG
    )
    out = to_numpy(model(golden["images_48"]))
    assert np.abs(out - golden["logits_48"]).max() < 1e-4
    report = load_weights(model, NPZ)
    assert report["resized"] == {
        "Transformer/posembed_input/pos_embedding": [[1, 17, 32], [1, 37, 32]]
    }
    with np.load(NPZ) as data:
        table = data["Transformer/posembed_input/pos_embedding"]
    embedding = to_numpy(model.get_layer("position_embedding").embedding)
    np.testing.assert_array_equal(embedding[:, 0], table[:, 0])  # class row


def test_timm_safetensors_matches_timm(golden):
    model = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=SAFETENSORS, **CONFIG
    )
    out = to_numpy(model(golden["images_32"]))
    assert np.abs(out - golden["logits_32"]).max() < 1e-4


def test_load_save_load_round_trip_is_exact(tmp_path):
    model = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=NPZ, **CONFIG
    )
    saved = tmp_path / "again.npz"
    save_npz(model, saved)
    with np.load(NPZ) as original, np.load(saved) as written:
        assert sorted(original.files) == sorted(written.files)
        for key in original.files:
            np.testing.assert_array_equal(original[key], written[key])
    again = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=saved, **CONFIG
    )
    for a, b in zip(_weights(model), _weights(again)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_npz(model, saved)
    save_npz(model, saved, overwrite=True)
    with pytest.raises(ValueError, match=r"end in .npz"):
        save_npz(model, tmp_path / "w.h5")


def test_other_class_count_and_no_top_skip_the_head():
    model = keras_vit.build_vit(image_size=32, num_classes=7, **CONFIG)
    report = load_weights(model, NPZ)
    assert set(report["skipped"]) == {"head/kernel", "head/bias"}
    assert (
        "(32, 5) in the checkpoint, (32, 7) in the model"
        in report["skipped"]["head/kernel"]
    )
    with np.load(NPZ) as data:
        np.testing.assert_array_equal(
            to_numpy(model.get_layer("encoder_norm").gamma),
            data["Transformer/encoder_norm/scale"],
        )
    features = keras_vit.build_vit(
        image_size=32, include_top=False, weights=NPZ, **CONFIG
    )
    full = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=NPZ, **CONFIG
    )
    x = (
        np.random.default_rng(0)
        .uniform(-1, 1, (2, 32, 32, 3))
        .astype("float32")
    )
    pooled = to_numpy(features(x))
    head = full.get_layer("head")
    np.testing.assert_allclose(
        pooled @ to_numpy(head.kernel) + to_numpy(head.bias),
        to_numpy(full(x)),
        atol=1e-5,
    )


def _edited_npz(tmp_path, edit):
    with np.load(NPZ) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    path = tmp_path / "edited.npz"
    np.savez(path, **arrays)
    return path


def test_errors_name_the_key_and_shapes_and_load_nothing(tmp_path):
    model = keras_vit.build_vit(image_size=32, num_classes=5, **CONFIG)
    before = _weights(model)
    missing = _edited_npz(
        tmp_path, lambda a: a.pop("Transformer/encoderblock_1/LayerNorm_2/bias")
    )
    with pytest.raises(
        CheckpointError,
        match=r"missing key 'Transformer/encoderblock_1/LayerNorm_2/bias' \(model shape \(32,\)\)",
    ):
        load_weights(model, missing)
    extra = _edited_npz(
        tmp_path, lambda a: a.update({"extra/weights": np.zeros(3)})
    )
    with pytest.raises(
        CheckpointError, match=r"unexpected keys 'extra/weights'"
    ):
        load_weights(model, extra)
    narrow = keras_vit.build_vit(
        image_size=32, num_classes=5, **dict(CONFIG, hidden_dim=16)
    )
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch for 'embedding/kernel': checkpoint \(8, 8, 3, 32\), model \(192, 16\)",
    ):
        load_weights(narrow, NPZ)
    deeper = keras_vit.build_vit(
        image_size=32, num_classes=5, **dict(CONFIG, depth=3)
    )
    with pytest.raises(
        CheckpointError, match=r"missing key 'Transformer/encoderblock_2/"
    ):
        load_weights(deeper, NPZ)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)  # nothing half-loaded


def test_representation_size_comes_from_the_checkpoint(tmp_path):
    rng = np.random.default_rng(1)

    def add_pre_logits(arrays):
        arrays["pre_logits/kernel"] = rng.normal(size=(32, 12)).astype(
            "float32"
        )
        arrays["pre_logits/bias"] = rng.normal(size=12).astype("float32")
        arrays["head/kernel"] = rng.normal(size=(12, 5)).astype("float32")

    path = _edited_npz(tmp_path, add_pre_logits)
    model = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=path, **CONFIG
    )
    assert model.get_layer("pre_logits").units == 12
    x = (
        np.random.default_rng(2)
        .uniform(-1, 1, (2, 32, 32, 3))
        .astype("float32")
    )
    np.testing.assert_allclose(
        to_numpy(model(x)), vit_forward(model, x), atol=1e-5
    )
    with np.load(path) as data:
        np.testing.assert_array_equal(
            to_numpy(model.get_layer("pre_logits").kernel),
            data["pre_logits/kernel"],
        )


def test_big_vision_module_numbering(tmp_path, golden):
    def renumber(arrays):
        for key in list(arrays):
            new = (
                key.replace(
                    "MultiHeadDotProductAttention_1",
                    "MultiHeadDotProductAttention_0",
                )
                .replace("MlpBlock_3", "MlpBlock_0")
                .replace("LayerNorm_2", "LayerNorm_1")
            )
            arrays[new] = arrays.pop(key)

    path = _edited_npz(tmp_path, renumber)
    model = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=path, **CONFIG
    )
    out = to_numpy(model(golden["images_32"]))
    assert np.abs(out - golden["logits_32"]).max() < 1e-4


def _write_safetensors(path, arrays):
    header, offset, blobs = {}, 0, []
    for name, array in arrays.items():
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs))


def test_transformers_vit_names(tmp_path, golden):
    # The same weights under Hugging Face transformers' ViT names.
    with np.load(NPZ) as data:
        w = {k: data[k] for k in data.files}
    hf = {
        "vit.embeddings.patch_embeddings.projection.weight": w[
            "embedding/kernel"
        ].transpose(3, 2, 0, 1),
        "vit.embeddings.patch_embeddings.projection.bias": w["embedding/bias"],
        "vit.embeddings.cls_token": w["cls"],
        "vit.embeddings.position_embeddings": w[
            "Transformer/posembed_input/pos_embedding"
        ],
        "vit.layernorm.weight": w["Transformer/encoder_norm/scale"],
        "vit.layernorm.bias": w["Transformer/encoder_norm/bias"],
        "classifier.weight": w["head/kernel"].T,
        "classifier.bias": w["head/bias"],
    }
    for i in range(2):
        p, b = f"Transformer/encoderblock_{i}/", f"vit.encoder.layer.{i}."
        m = p + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            hf[b + f"attention.attention.{name}.weight"] = (
                w[m + name + "/kernel"].reshape(32, 32).T
            )
            hf[b + f"attention.attention.{name}.bias"] = w[
                m + name + "/bias"
            ].reshape(32)
        hf[b + "attention.output.dense.weight"] = (
            w[m + "out/kernel"].reshape(32, 32).T
        )
        hf[b + "attention.output.dense.bias"] = w[m + "out/bias"]
        hf[b + "layernorm_before.weight"] = w[p + "LayerNorm_0/scale"]
        hf[b + "layernorm_before.bias"] = w[p + "LayerNorm_0/bias"]
        hf[b + "layernorm_after.weight"] = w[p + "LayerNorm_2/scale"]
        hf[b + "layernorm_after.bias"] = w[p + "LayerNorm_2/bias"]
        hf[b + "intermediate.dense.weight"] = w[
            p + "MlpBlock_3/Dense_0/kernel"
        ].T
        hf[b + "intermediate.dense.bias"] = w[p + "MlpBlock_3/Dense_0/bias"]
        hf[b + "output.dense.weight"] = w[p + "MlpBlock_3/Dense_1/kernel"].T
        hf[b + "output.dense.bias"] = w[p + "MlpBlock_3/Dense_1/bias"]
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, hf)
    model = keras_vit.build_vit(
        image_size=32, num_classes=5, weights=path, **CONFIG
    )
    out = to_numpy(model(golden["images_32"]))
    assert np.abs(out - golden["logits_32"]).max() < 1e-4
    # A Hugging Face file's own config beside it: its LayerNorm epsilon.
    (tmp_path / "config.json").write_text(json.dumps({"layer_norm_eps": 1e-12}))
    hub_like = keras_vit.from_preset(str(path), num_heads=4)
    assert keras_vit.vit_config(hub_like)["layer_norm_epsilon"] == 1e-12


def test_unsafe_and_unknown_files(tmp_path):
    model = keras_vit.build_vit(image_size=32, num_classes=5, **CONFIG)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, head=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match=r"allow_pickle=False"):
        load_weights(model, pickled)
    with pytest.raises(FileNotFoundError, match=r"missing.npz"):
        load_weights(model, tmp_path / "missing.npz")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.npz, \.safetensors.*w.ckpt"):
        load_weights(model, tmp_path / "w.ckpt")
    with pytest.raises(ValueError, match=r"resize_method='area'"):
        load_weights(model, NPZ, resize_method="area")
    assert os.path.exists(NPZ)


def test_non_square_model_grid_from_a_square_checkpoint():
    model = keras_vit.build_vit(
        image_size=(32, 48), num_classes=5, weights=NPZ, **CONFIG
    )
    assert model.get_layer("position_embedding").embedding.shape == (1, 25, 32)
    x = np.zeros((1, 32, 48, 3), "float32")
    assert np.isfinite(to_numpy(model(x))).all()


def test_attention_maps_of_a_loaded_checkpoint(golden):
    model = keras_vit.build_vit(
        image_size=48, num_classes=5, weights=NPZ, **CONFIG
    )
    maps = keras_vit.attention_maps(model, golden["images_48"])
    assert maps.shape == (2, 4, 4, 37, 37)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert keras_vit.attention_rollout(maps).shape == (4, 6, 6)


def _safetensors_bytes(header, data=b""):
    raw = (
        json.dumps(header).encode() if not isinstance(header, bytes) else header
    )
    return len(raw).to_bytes(8, "little") + raw + data


_ONE = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    "name, content, what",
    [
        ("empty.safetensors", b"", "header too small"),
        ("not_json.safetensors", _safetensors_bytes(b"{nope"), "invalid JSON"),
        ("list.safetensors", _safetensors_bytes([1, 2]), "invalid type"),
        (
            "no_offsets.safetensors",
            _safetensors_bytes(
                {"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8
            ),
            "data_offsets",
        ),
        (
            "past_end.safetensors",
            _safetensors_bytes(
                {"w": {**_ONE, "data_offsets": [0, 64]}}, b"\0" * 8
            ),
            "",
        ),
        (
            "shape.safetensors",
            _safetensors_bytes({"w": {**_ONE, "shape": [3]}}, b"\0" * 8),
            "",
        ),
        (
            "dtype.safetensors",
            _safetensors_bytes({"w": {**_ONE, "dtype": "TEXT"}}, b"\0" * 8),
            "",
        ),
        ("huge.safetensors", (10**12).to_bytes(8, "little"), "too large"),
        ("not_zip.npz", b"PK\x03\x04 but not a zip at all", "npz archive"),
    ],
)
def test_malformed_files_raise_checkpoint_error_naming_them(
    tmp_path, name, content, what
):
    model = keras_vit.build_vit(image_size=32, num_classes=5, **CONFIG)
    before = _weights(model)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_weights(model, path)
    assert name in str(info.value) and what in str(info.value)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("source", [NPZ, SAFETENSORS])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_downloads_raise_checkpoint_error(tmp_path, source, keep):
    data = source.read_bytes()
    path = tmp_path / f"cut{source.suffix}"
    path.write_bytes(data[: int(len(data) * keep)])
    model = keras_vit.build_vit(image_size=32, num_classes=5, **CONFIG)
    before = _weights(model)
    with pytest.raises(CheckpointError, match=r"cut\." + source.suffix[1:]):
        load_weights(model, path)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_safetensors_dtypes_are_read_as_float32(tmp_path):
    import ml_dtypes
    from safetensors.numpy import save_file

    from keras_vit.checkpoints import read_checkpoint

    values = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    path = tmp_path / "mixed.safetensors"
    save_file(
        {
            "bf16": values.astype(ml_dtypes.bfloat16),
            "f16": values.astype(np.float16),
            "f64": values.astype(np.float64),
            "i64": np.arange(3, dtype=np.int64),
        },
        str(path),
    )
    arrays = read_checkpoint(path)
    for key in ("bf16", "f16", "f64"):
        assert arrays[key].dtype == np.float32
        np.testing.assert_array_equal(arrays[key], values)
    np.testing.assert_array_equal(arrays["i64"], [0, 1, 2])


@pytest.mark.parametrize("channels", [1, 2, 4, 7])
def test_a_patch_kernel_is_adapted_to_the_images_channels(channels):
    """As timm's `adapt_input_conv`: one channel sums RGB (so a gray image
    gives the embedding its RGB copy gave); N channels repeat the RGB
    kernels, scaled by 3 / N."""
    dims = dict(patch_size=4, hidden_dim=8, depth=1, num_heads=2, mlp_dim=8)
    rgb = keras_vit.build_vit(image_size=8, num_classes=3, **dims)
    rng = np.random.default_rng(0)
    for v in rgb.weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    arrays = checkpoints.model_arrays(rgb)
    model = keras_vit.build_vit(
        image_size=8, num_classes=3, channels=channels, **dims
    )
    report = checkpoints.load_weights(model, arrays)
    assert report["adapted"] == {"embedding/kernel": [3, channels]}
    kernel = arrays["embedding/kernel"]  # (4, 4, 3, 8)
    got = keras.ops.convert_to_numpy(model.get_layer("patch_embedding").kernel)
    got = got.reshape(4, 4, channels, 8)
    if channels == 1:
        np.testing.assert_allclose(got[:, :, 0], kernel.sum(2), rtol=1e-6)
        gray = rng.uniform(-1, 1, (2, 8, 8, 1)).astype("float32")
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(gray)),
            keras.ops.convert_to_numpy(rgb(np.repeat(gray, 3, -1))),
            atol=1e-4,
        )
    else:
        for c in range(channels):
            np.testing.assert_allclose(
                got[:, :, c], kernel[:, :, c % 3] * 3 / channels, rtol=1e-6
            )


def test_a_shape_that_cannot_be_adapted_is_one_line_naming_both():
    dims = dict(hidden_dim=8, depth=1, num_heads=2, mlp_dim=8)
    source = keras_vit.build_vit(image_size=8, patch_size=4, **dims)
    model = keras_vit.build_vit(image_size=8, patch_size=2, **dims)
    with pytest.raises(checkpoints.CheckpointError) as info:
        checkpoints.load_weights(model, checkpoints.model_arrays(source))
    message = str(info.value)
    assert "\n" not in message
    assert "'embedding/kernel': checkpoint (4, 4, 3, 8), model (12, 8)" in (
        message
    )


def test_a_backbone_only_checkpoint_without_num_classes_gives_features(
    tmp_path,
):
    """Never a head of zeros whose every output is 0."""
    dims = dict(patch_size=4, hidden_dim=8, depth=1, num_heads=2, mlp_dim=8)
    backbone = keras_vit.build_vit(image_size=8, include_top=False, **dims)
    keras_vit.save_npz(backbone, tmp_path / "backbone.npz")
    model = keras_vit.build_vit(
        image_size=8, weights=tmp_path / "backbone.npz", **dims
    )
    assert model.output_shape == (None, 8)
    assert "head" not in [layer.name for layer in model.layers]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)),
        keras.ops.convert_to_numpy(backbone(x)),
        atol=1e-6,
    )


@pytest.mark.parametrize("tokenizer", ["conv", "shifted_patch"])
def test_save_npz_of_another_tokenizer_says_to_save_keras(tmp_path, tokenizer):
    model = keras_vit.build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=8,
        depth=1,
        num_heads=2,
        mlp_dim=8,
        num_classes=2,
        tokenizer=tokenizer,
    )
    with pytest.raises(ValueError) as info:
        save_npz(model, tmp_path / "m.npz")
    message = str(info.value)
    assert f"tokenizer={tokenizer!r}" in message and ".keras" in message
    assert "Expected a model built by" not in message
    assert not (tmp_path / "m.npz").exists()


def test_a_hugging_face_files_own_settings_are_read_beside_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"layer_norm_eps": 1e-12}))
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_resize": True,
                "do_center_crop": True,
                "size": {"shortest_edge": 256},
                "crop_size": {"height": 224, "width": 224},
                "resample": 3,
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            }
        )
    )
    settings = checkpoints.settings_beside(tmp_path / "model.safetensors")
    assert settings["config"] == {"layer_norm_epsilon": 1e-12}
    transform = settings["transform"]
    assert transform.resize == "crop" and transform.crop_pct == 224 / 256
    assert transform.interpolation == "bicubic"
    assert transform.mean == (0.485, 0.456, 0.406)
    # Nothing beside a file: nothing read.
    (tmp_path / "other").mkdir()
    assert checkpoints.settings_beside(tmp_path / "other" / "m.npz") == {
        "config": {},
        "transform": None,
    }
