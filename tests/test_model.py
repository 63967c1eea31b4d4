import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit import build_vit
from keras_vit.layers import MultiHeadSelfAttention
from tests.helpers import to_numpy
from tests.reference import vit_forward

TINY = dict(
    image_size=16, patch_size=4, hidden_dim=16, depth=2, num_heads=2, mlp_dim=32
)


def randomize(model, seed=0, scale=0.2):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))


def images(batch, size=16, channels=3, seed=0):
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(batch, h, w, channels)).astype("float32")


def test_layer_names_are_stable():
    model = build_vit(**TINY, num_classes=5, representation_size=8)
    names = [layer.name for layer in model.layers]
    assert names == [
        "images",
        "patch_extractor",
        "patch_embedding",
        "class_token",
        "position_embedding",
        "embedding_dropout",
        "encoder_block_0",
        "encoder_block_1",
        "encoder_norm",
        "pooling",
        "pre_logits",
        "head",
    ]
    features = keras.Model(
        model.input, model.get_layer("encoder_block_1").output
    )
    assert features(images(2)).shape == (2, 17, 16)


@pytest.mark.parametrize(
    "config",
    [
        dict(TINY, num_classes=7),
        dict(TINY, num_classes=3, pooling="gap"),
        dict(TINY, num_classes=4, representation_size=12),
        dict(TINY, num_classes=4, image_size=(12, 20), patch_size=(4, 2)),
        dict(
            TINY, num_classes=4, approximate_gelu=True, layer_norm_epsilon=1e-5
        ),
        dict(TINY, include_top=False, channels=1),
    ],
    ids=["token", "gap", "pre_logits", "non_square", "tanh_gelu", "features"],
)
def test_forward_matches_numpy_reference(config):
    model = build_vit(**config)
    randomize(model)
    size = config.get("image_size", 16)
    x = images(3, size, config.get("channels", 3), seed=1)
    expected = vit_forward(
        model,
        x,
        eps=config.get("layer_norm_epsilon", 1e-6),
        pooling=config.get("pooling", "token"),
        approximate_gelu=config.get("approximate_gelu", False),
    )
    out = to_numpy(model(x))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(model.predict(x, verbose=0)), out, atol=1e-6
    )


def test_attention_weights_of_every_block_sum_to_one():
    model = build_vit(**TINY, num_classes=3)
    randomize(model)
    # The same layers, called eagerly, asked for their attention weights.
    x = images(2)
    for name in (
        "patch_extractor",
        "patch_embedding",
        "class_token",
        "position_embedding",
    ):
        x = model.get_layer(name)(x)
    for i in range(2):
        x, weights = model.get_layer(f"encoder_block_{i}")(
            x, return_attention_scores=True
        )
        values = to_numpy(weights)
        assert values.shape == (2, 2, 17, 17)
        np.testing.assert_allclose(values.sum(-1), 1.0, atol=1e-6)
        assert np.all(values >= 0)


def test_dynamic_batch():
    model = build_vit(**TINY, num_classes=3)
    for batch in (1, 4, 9):
        assert model(images(batch)).shape == (batch, 3)


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("Ti/16", 5_717_416),
        ("S/16", 22_050_664),
        ("B/16", 86_567_656),
        ("B/32", 88_224_232),
        ("L/16", 304_326_632),
        ("L/32", 306_535_400),
        ("H/14", 632_045_800),
    ],
)
def test_parameter_counts_match_the_original(variant, expected):
    model = build_vit(variant)
    assert model.count_params() == expected
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize(
    "variant, dims",
    [
        ("Ti/16", (192, 12, 3, 768, 16)),
        ("S/32", (384, 12, 6, 1536, 32)),
        ("B/8", (768, 12, 12, 3072, 8)),
        ("L/32", (1024, 24, 16, 4096, 32)),
        ("H/14", (1280, 32, 16, 5120, 14)),
    ],
)
def test_decode_variant(variant, dims):
    decoded = keras_vit.decode_variant(variant)
    keys = ("hidden_dim", "depth", "num_heads", "mlp_dim", "patch_size")
    assert tuple(decoded[k] for k in keys) == dims


def test_explicit_arguments_override_the_variant():
    model = build_vit(
        "S/16", image_size=32, depth=2, patch_size=8, num_classes=3
    )
    assert model.get_layer("patch_embedding").hidden_dim == 384
    assert model.get_layer("patch_extractor").patch_size == (8, 8)
    assert model.get_layer("encoder_block_1").num_heads == 6
    with pytest.raises(ValueError):
        model.get_layer("encoder_block_2")
    assert model.name == "vit_s16"


def test_no_two_random_weights_start_equal():
    # One unseeded Keras initializer reused for several weights gives them
    # all the same values: query, key, value and output kernels would start
    # equal, and both MLP kernels the same numbers in another shape.
    keras.utils.set_random_seed(0)
    model = build_vit(**TINY, num_classes=3)
    keras.utils.set_random_seed(0)
    again = build_vit(**TINY, num_classes=3)
    random = {}
    for w, w_again in zip(model.weights, again.weights):
        values = to_numpy(w)
        np.testing.assert_array_equal(values, to_numpy(w_again))  # Seeded.
        if np.unique(values).size > 1:
            random[w.path] = np.sort(values.ravel())
    assert "encoder_block_0/attention/key_kernel" in random
    assert "encoder_block_1/mlp/dense_1/kernel" in random
    names = sorted(random)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = random[a].shape == random[b].shape and np.array_equal(
                random[a], random[b]
            )
            assert not same, f"{a} and {b} start with the same values"


def test_drop_path_rate_grows_linearly_with_depth():
    model = build_vit(**dict(TINY, depth=3), drop_path_rate=0.2, num_classes=2)
    rates = [
        model.get_layer(f"encoder_block_{i}").drop_path_rate for i in range(3)
    ]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2])


def test_training_call_uses_dropout_and_drop_path():
    model = build_vit(
        **TINY,
        num_classes=3,
        dropout=0.2,
        attention_dropout=0.2,
        drop_path_rate=0.3,
    )
    randomize(model)
    x = images(4)
    inference = to_numpy(model(x))
    np.testing.assert_array_equal(inference, to_numpy(model(x, training=False)))
    assert not np.allclose(to_numpy(model(x, training=True)), inference)


def test_save_and_load_round_trip(tmp_path):
    config = dict(TINY, image_size=(16, 12))
    model = build_vit(
        **config,
        num_classes=4,
        pooling="gap",
        representation_size=8,
        drop_path_rate=0.1,
        dropout=0.1,
        classifier_activation="softmax",
    )
    randomize(model)
    x = images(3, (16, 12))
    path = tmp_path / "vit.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default.
    np.testing.assert_allclose(
        to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6
    )
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in model.layers
    ]
    assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(
        model.get_config(), sort_keys=True
    )


def test_no_lambda_layers(tmp_path):
    model = build_vit(**TINY, num_classes=2, representation_size=4)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        assert not isinstance(layer, keras.layers.Lambda)
    path = tmp_path / "vit.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "Lambda" not in config
    assert "keras_vit>PatchExtractor" in config
    json.loads(config)


def test_weights_argument_loads_a_weights_file(tmp_path):
    source = build_vit(**TINY, num_classes=3)
    randomize(source)
    path = tmp_path / "vit.weights.h5"
    source.save_weights(path)
    model = build_vit(**TINY, num_classes=3, weights=path)
    x = images(2)
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(source(x)))


def test_mixed_bfloat16_model_computes_in_bfloat16_with_float32_logits():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_vit(**TINY, num_classes=3)
    assert model.get_layer("encoder_block_0").compute_dtype == "bfloat16"
    assert model.get_layer("head").compute_dtype == "float32"
    out = model(images(2))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.all(np.isfinite(to_numpy(out)))


def test_fit_lowers_the_loss():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=64)
    # Class 1 images are brighter: learnable in a few steps.
    x = rng.normal(size=(64, 16, 16, 3)).astype("float32") * 0.3
    x += labels[:, None, None, None].astype("float32") - 0.5
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(16).repeat()
    model = build_vit(**TINY, num_classes=2)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = model.evaluate(x, labels, verbose=0)
    history = model.fit(dataset, steps_per_epoch=4, epochs=5, verbose=0)
    after = model.evaluate(x, labels, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after < 0.8 * before


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(image_size=30),
            ValueError,
            r"`image_size` must be divisible by `patch_size`. Received: image_size=\(30, 30\), patch_size=\(4, 4\)",
        ),
        (
            dict(hidden_dim=18, num_heads=4),
            ValueError,
            r"`hidden_dim` must be divisible by `num_heads`. Received: hidden_dim=18, num_heads=4",
        ),
        (
            dict(pooling="max"),
            ValueError,
            r"`pooling` must be one of \('token', 'gap', 'sequence', 'map'\). Received: pooling='max'",
        ),
        (dict(num_classes=0), ValueError, r"num_classes=0"),
        (dict(depth=-1), ValueError, r"depth=-1"),
        (dict(dropout=1.2), ValueError, r"dropout=1.2"),
        (dict(drop_path_rate=-0.1), ValueError, r"drop_path_rate=-0.1"),
        (dict(representation_size=0), ValueError, r"representation_size=0"),
        (dict(image_size=(16, 0)), ValueError, r"image_size=\(16, 0\)"),
        (dict(channels=2.0), TypeError, r"channels=2.0"),
        (dict(include_top="no"), TypeError, r"include_top='no'"),
        (dict(weights=3), TypeError, r"weights=3"),
        (
            dict(weights="model.pt"),
            ValueError,
            r"\.npz, \.safetensors or \.weights\.h5.*weights='model.pt'",
        ),
        (
            dict(weights="missing.weights.h5"),
            FileNotFoundError,
            r"weights='missing.weights.h5'",
        ),
    ],
)
def test_invalid_arguments_raise(kwargs, error, match):
    config = dict(TINY, num_classes=3)
    config.update(kwargs)
    with pytest.raises(error, match=match):
        build_vit(**config)


@pytest.mark.parametrize("variant", ["B/15", "b/16", "ViT-B/16", 16])
def test_unknown_variant_lists_the_valid_ones(variant):
    with pytest.raises(
        ValueError,
        match=r"Ti/16, S/16, S/32, B/8, B/16.*H/14, S/14, B/14, L/14. Received: variant=",
    ):
        build_vit(variant)


def test_no_attention_layer_uses_keras_multi_head_attention():
    model = build_vit(**TINY, num_classes=2)
    block = model.get_layer("encoder_block_0")
    assert isinstance(block.attention, MultiHeadSelfAttention)


@pytest.mark.parametrize("tokenizer", ["patch", "conv"])
def test_a_frozen_model_reloads_frozen(tokenizer, tmp_path):
    model = build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=8,
        depth=1,
        num_heads=2,
        mlp_dim=8,
        num_classes=2,
        tokenizer=tokenizer,
    )
    for layer in model.layers:
        layer.trainable = layer.name == "head"
    model.save(tmp_path / "frozen.keras")
    loaded = keras.saving.load_model(tmp_path / "frozen.keras")
    assert [v.path for v in loaded.trainable_variables] == [
        "head/kernel",
        "head/bias",
    ]


@pytest.mark.parametrize(
    "options",
    [
        dict(
            image_size=(16, 24),
            patch_size=(8, 4),
            pooling="gap",
            representation_size=8,
            classifier_activation="softmax",
            class_names=["a", "b", "c"],
            dropout=0.1,
            drop_path_rate=0.2,
            depth=3,
        ),
        dict(
            tokenizer="conv",
            pooling="sequence",
            locality_attention=True,
            channels=1,
            approximate_gelu=True,
        ),
        dict(
            tokenizer="shifted_patch",
            include_top=False,
            attention_dropout=0.1,
            layer_norm_epsilon=1e-5,
        ),
    ],
)
def test_the_model_knows_its_configuration(options, tmp_path):
    from keras_vit.model import vit_config

    base = dict(
        image_size=16,
        patch_size=4,
        hidden_dim=16,
        depth=2,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
    )
    model = keras_vit.build_vit(**{**base, **options})
    config = vit_config(model)
    for key, value in options.items():
        expected = (
            tuple(value) if key in ("image_size", "patch_size") else value
        )
        assert config[key] == expected, key
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert vit_config(loaded) == config
    rebuilt = keras_vit.build_vit(**config)
    assert vit_config(rebuilt) == config
    assert rebuilt.count_params() == model.count_params()
    assert [type(layer) for layer in rebuilt.layers] == [
        type(layer) for layer in model.layers
    ]


def test_vit_config_names_what_a_foreign_model_lacks():
    from keras_vit.model import vit_config

    inputs = keras.Input((8, 8, 3))
    other = keras.Model(inputs, keras.layers.Flatten()(inputs), name="cnn")
    with pytest.raises(
        ValueError, match="'cnn', without the layers position_embedding"
    ):
        vit_config(other)
