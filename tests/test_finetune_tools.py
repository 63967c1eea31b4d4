"""Fine-tuning tools: layer-wise learning-rate decay, EMA of the weights,
gradient accumulation and LoRA (`keras_vit.optimizers`, `keras_vit.lora`,
`keras_vit.training.make_optimizer`)."""

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.optimizers import LayerDecayAdamW
from keras_vit.optimizers import LayerDecaySGD
from keras_vit.optimizers import layer_scale
from keras_vit.training import make_optimizer

TINY = dict(image_size=16, patch_size=4, hidden_dim=16, num_heads=2)


def _model(depth=3, **kwargs):
    keras.utils.set_random_seed(0)
    return keras_vit.build_vit(
        **TINY, depth=depth, mlp_dim=32, num_classes=3, **kwargs
    )


def _randomize(model, seed=1):
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            rng.normal(0, 0.3, w.shape).astype(w.dtype)
            for w in model.get_weights()
        ]
    )


def _expected_scale(path, depth, decay):
    if path.startswith("encoder_block_"):
        block = int(path.split("/")[0].rsplit("_", 1)[1])
        return decay ** (depth - block)
    if path.split("/")[0] in ("encoder_norm", "head", "head_dist"):
        return 1.0
    return decay ** (depth + 1)


# ------------------------------------------------- layer-wise LR decay


def test_each_variable_gets_its_layers_rate():
    model = _model(
        depth=3, num_registers=2, pre_norm=True, distillation_token=True
    )
    optimizer = LayerDecayAdamW(learning_rate=1e-3, layer_decay=0.5)
    optimizer.build(model.trainable_variables)
    scales = optimizer.learning_rate_scales()
    assert len(scales) == len(model.trainable_variables)
    for path, scale in scales.items():
        assert scale == _expected_scale(path, 3, 0.5), path
    # The embeddings lowest, the last block at `decay`, the heads at 1.
    assert scales["patch_embedding/kernel"] == 0.5**4
    assert scales["register_tokens/tokens"] == 0.5**4
    assert scales["pre_norm/gamma"] == 0.5**4
    assert scales["encoder_block_0/attention/query_kernel"] == 0.5**3
    assert scales["encoder_block_2/mlp/dense_1/kernel"] == 0.5
    assert scales["head_dist/kernel"] == scales["encoder_norm/beta"] == 1.0
    assert layer_scale("block/x", 3, 1.0) == 1.0


def test_an_sgd_step_moves_each_variable_by_its_rate():
    model = _model()
    variables = model.trainable_variables
    before = [np.array(v) for v in variables]
    optimizer = LayerDecaySGD(learning_rate=0.1, layer_decay=0.7)
    optimizer.apply([keras.ops.ones(v.shape) for v in variables], variables)
    for v, old in zip(variables, before):
        want = old - 0.1 * _expected_scale(v.path, 3, 0.7)
        np.testing.assert_allclose(np.array(v), want, rtol=0, atol=1e-7)


def test_an_adamw_step_scales_the_rate_and_the_weight_decay():
    """One AdamW step: `var -= lr_i * (wd * var + m_hat / (sqrt(v_hat) +
    eps))` with `lr_i` the variable's scaled rate, in NumPy."""
    model = _model()
    _randomize(model)
    variables = model.trainable_variables
    before = [np.array(v, np.float64) for v in variables]
    rng = np.random.default_rng(2)
    grads = [rng.normal(0, 1, v.shape).astype("float32") for v in variables]
    optimizer = LayerDecayAdamW(
        learning_rate=0.01, weight_decay=0.1, layer_decay=0.6
    )
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
    for v, old, g in zip(variables, before, grads):
        lr = 0.01 * _expected_scale(v.path, 3, 0.6)
        g = g.astype(np.float64)
        # Keras' Adam at step 1: alpha = lr * sqrt(1 - b2) / (1 - b1).
        m, v2 = 0.1 * g, 0.001 * g * g
        alpha = lr * np.sqrt(0.001) / 0.1
        decayed = old - old * 0.1 * lr
        want = decayed - alpha * m / (np.sqrt(v2) + 1e-7)
        np.testing.assert_allclose(np.array(v), want, rtol=0, atol=1e-6)


def test_layer_decay_of_one_is_the_plain_optimizer():
    model, twin = _model(), _model()
    grads = [keras.ops.ones(v.shape) * 0.3 for v in model.trainable_variables]
    LayerDecayAdamW(learning_rate=0.01, layer_decay=1.0).apply(
        grads, model.trainable_variables
    )
    keras.optimizers.AdamW(learning_rate=0.01).apply(
        grads, twin.trainable_variables
    )
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("decay", [0, 1.5, -0.1, True, "0.7"])
def test_a_layer_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match="`layer_decay` must be a number"):
        LayerDecayAdamW(layer_decay=decay)


# ----------------------------------------------------- EMA, accumulation


def _data(count=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (count, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, count), 3)
    return x, y.astype("float32")


def test_the_ema_weights_are_a_numpy_ema_of_the_trajectory():
    model = _model(depth=1)
    variables = model.trainable_variables
    optimizer = make_optimizer(model, total_steps=100, ema=0.8)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    rng = np.random.default_rng(3)
    average = None
    for _ in range(5):
        grads = [rng.normal(0, 1, v.shape).astype("float32") for v in variables]
        optimizer.apply(
            [keras.ops.convert_to_tensor(g) for g in grads], variables
        )
        now = [np.array(v, np.float64) for v in variables]
        # Keras' rule: the first step's weights, then m * avg + (1 - m) * w.
        average = (
            now
            if average is None
            else [0.8 * a + 0.2 * w for a, w in zip(average, now)]
        )
    trained = [np.array(v) for v in variables]
    from keras_vit.training import averaged_weights

    with averaged_weights(model):
        for v, want in zip(variables, average):
            np.testing.assert_allclose(np.array(v), want, rtol=0, atol=1e-6)
    for v, want in zip(variables, trained):  # The trained weights are back.
        np.testing.assert_array_equal(np.array(v), want)
    optimizer.finalize_variable_values(variables)
    for v, want in zip(variables, average):
        np.testing.assert_allclose(np.array(v), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_accumulating_k_batches_is_one_step_of_a_k_times_larger_batch(
    optimizer,
):
    """`fit` at batch 8 with `accumulate=4` makes one update from 32
    images; `fit` at batch 32 makes the same update (float32, 1e-5)."""
    import tensorflow as tf

    from keras_vit.training import compile_for_training

    x, y = _data(32)
    models = {}
    for name, (batch, accumulate) in {
        "accumulated": (8, 4),
        "large batch": (32, None),
    }.items():
        model = _model(depth=2)
        compile_for_training(
            model,
            learning_rate=0.01 if optimizer == "adamw" else 0.5,
            total_steps=10**9,  # A constant rate over these few steps.
            optimizer=optimizer,
            layer_decay=0.8,
            accumulate=accumulate,
        )
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
        model.fit(data, epochs=1, verbose=0)
        models[name] = model
    assert int(models["accumulated"].optimizer.iterations) == 1
    start = _model(depth=2).get_weights()
    for a, b, s in zip(
        models["accumulated"].get_weights(),
        models["large batch"].get_weights(),
        start,
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    moved = [
        np.abs(a - s).max()
        for a, s in zip(models["large batch"].get_weights(), start)
    ]
    assert max(moved) > 1e-3  # An update was made.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ema=1.0), "`ema` must be a momentum in"),
        (dict(ema=0), "`ema` must be a momentum in"),
        (dict(accumulate=1), "`accumulate` must be an int >= 2"),
        (dict(accumulate=2.0), "`accumulate` must be an int >= 2"),
    ],
)
def test_bad_ema_and_accumulation_values_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(_model(depth=1), total_steps=10, **kwargs)


# ------------------------------------------------------------------ LoRA


def test_lora_starts_as_the_identity_and_trains_only_its_matrices():
    from keras_vit.lora import enable_lora
    from keras_vit.training import compile_for_training

    model = _model(depth=2, distillation_token=True)
    _randomize(model)
    x, y = _data(16)
    before = np.array(model(x))
    returned = enable_lora(model, rank=2, mlp=True)
    assert returned is model
    np.testing.assert_array_equal(np.array(model(x)), before)
    trainable = {v.path for v in model.trainable_variables}
    lora = {p for p in trainable if "_lora_" in p}
    heads = trainable - lora
    assert heads == {
        "head/kernel",
        "head/bias",
        "head_dist/kernel",
        "head_dist/bias",
    }
    # 4 attention projections and 2 MLP layers per block, A and B each.
    assert len(lora) == 2 * 6 * 2
    start = {v.path: np.array(v) for v in model.variables}
    compile_for_training(model, learning_rate=0.1, total_steps=10)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for v in model.variables:
        changed = not np.array_equal(np.array(v), start[v.path])
        assert changed == (v.path in trainable), v.path
    assert not np.allclose(np.array(model(x)), before)


def test_a_lora_model_saves_reloads_in_safe_mode_and_merges_into_plain_kernels(
    tmp_path,
):
    from keras_vit.lora import enable_lora
    from keras_vit.lora import lora_layers
    from keras_vit.lora import merge_lora

    model = _model(depth=2)
    _randomize(model)
    enable_lora(model, rank=3, alpha=6.0, mlp=True)
    rng = np.random.default_rng(4)
    for v in model.variables:  # A trained update.
        if "_lora_b" in v.path:
            v.assign(rng.normal(0, 0.3, v.shape))
    x, _ = _data(4)
    want = np.array(model(x))
    path = tmp_path / "lora.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.array(loaded(x)), want)
    block = loaded.get_layer("encoder_block_0").get_config()
    assert block["lora"] == {"rank": 3, "alpha": 6.0, "mlp": True}
    # The base kernels stay frozen in the reloaded file.
    assert not loaded.get_layer(
        "encoder_block_0"
    ).attention.query_kernel.trainable
    merged = merge_lora(loaded)
    assert not lora_layers(merged) and "_lora_" not in str(merged.get_config())
    assert len(merged.weights) == len(_model(depth=2).weights)
    np.testing.assert_allclose(np.array(merged(x)), want, rtol=0, atol=1e-5)
    assert merge_lora(merged) is merged


def test_a_lora_model_exports_merged_and_verified(tmp_path):
    import onnx

    from export import export_onnx
    from keras_vit.lora import enable_lora

    model = _model(depth=2)
    _randomize(model)
    enable_lora(model, rank=2)
    for v in model.variables:
        if "_lora_b" in v.path:
            v.assign(np.full(v.shape, 0.2, "float32"))
    report = export_onnx(model, tmp_path / "m.onnx")
    assert report.passed and max(report.max_abs_diff.values()) <= 1e-4
    names = [i.name for i in onnx.load(tmp_path / "m.onnx").graph.initializer]
    assert not [n for n in names if "lora" in n]
    # The file computes with the updates: it differs from the model without.
    from export.verify import Runner

    x, _ = _data(2)
    plain = _model(depth=2)
    _randomize(plain)
    got = Runner(tmp_path / "m.onnx")(x)
    np.testing.assert_allclose(got, np.array(model(x)), atol=1e-4)
    assert np.abs(got - np.array(plain(x))).max() > 1e-3


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda m: __import__("keras_vit.lora").lora.enable_lora(m, 0),
            "positive int",
        ),
        (
            lambda m: __import__("keras_vit.lora").lora.enable_lora(
                m, 2, alpha=-1
            ),
            "positive number",
        ),
    ],
)
def test_bad_lora_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(_model(depth=1))


def test_lora_twice_is_refused():
    from keras_vit.lora import enable_lora

    model = enable_lora(_model(depth=1), 2)
    with pytest.raises(ValueError, match="already computes with LoRA"):
        enable_lora(model, 2)


# ---------------------------------------------------------------- resume


class _Crash(keras.callbacks.Callback):
    """Stops the process's training after an epoch was backed up."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "options",
    [dict(ema=0.9), dict(layer_decay=0.7, ema=0.9, accumulate=3, lora=2)],
    ids=["ema", "all"],
)
def test_a_run_stopped_after_a_backup_resumes_exactly(options, tmp_path):
    """A run killed after epoch 2's backup, made again from nothing (a new
    model and optimizer, as a new process would) and resumed, ends with
    the weights of the run that was never stopped."""
    import tensorflow as tf

    from keras_vit.lora import enable_lora
    from keras_vit.training import compile_for_training
    from keras_vit.training import training_callbacks

    x, y = _data(40)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    options = dict(options)
    rank = options.pop("lora", None)

    def run(out, crash=False):
        out.mkdir(exist_ok=True)
        model = _model(depth=2)
        if rank:
            enable_lora(model, rank)
        compile_for_training(
            model, learning_rate=0.01, total_steps=20, warmup_steps=2, **options
        )
        callbacks = training_callbacks(
            str(out), "val_accuracy", tensorboard=False, ema="ema" in options
        )
        model.fit(
            data,
            validation_data=data.take(1),
            epochs=4,
            verbose=0,
            callbacks=callbacks + ([_Crash()] if crash else []),
        )
        return model

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "stopped", crash=True)
    resumed = run(tmp_path / "stopped")
    straight = run(tmp_path / "straight")
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.optimizer.iterations) == int(
        straight.optimizer.iterations
    )


# -------------------------------------------------------- dense features

FAMILIES = {
    "patch": {},
    "conv": dict(tokenizer="conv"),
    "shifted_patch": dict(tokenizer="shifted_patch"),
    "registers_distilled": dict(num_registers=3, distillation_token=True),
    "map_no_class_token": dict(class_token=False, pooling="map"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dense_features_are_the_blocks_patch_tokens_as_maps(family):
    from keras_vit.features import dense_features
    from keras_vit.model import vit_config

    keras.utils.set_random_seed(0)
    model = keras_vit.build_vit(
        image_size=(16, 24),
        patch_size=4,
        hidden_dim=16,
        depth=3,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
        **FAMILIES[family],
    )
    _randomize(model)
    x = np.random.default_rng(5).uniform(-1, 1, (3, 16, 24, 3))
    maps = dense_features(model, x, blocks=[0, -1])
    prefix = vit_config(model).num_prefix_tokens
    for index, got in zip((0, 2), maps):
        block = model.get_layer(f"encoder_block_{index}")
        tokens = keras.Model(model.input, block.output).predict(x, verbose=0)
        want = tokens[:, prefix:].reshape(3, 4, 6, 16)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    normed = dense_features(model, x, blocks=-1, norm=True)
    norm = model.get_layer("encoder_norm")
    tokens = keras.Model(model.input, norm(block.output)).predict(x, verbose=0)
    np.testing.assert_allclose(
        normed, tokens[:, prefix:].reshape(3, 4, 6, 16), rtol=0, atol=1e-6
    )


def test_dense_features_follow_the_size_of_a_model_that_takes_any_size():
    from keras_vit.features import dense_features

    model = _model(depth=2, dynamic_image_size=True)
    for height, width in ((16, 16), (24, 32), (8, 20)):
        x = np.zeros((2, height, width, 3), "float32")
        maps = dense_features(model, x)
        assert maps.shape == (2, height // 4, width // 4, 16)


def test_a_segmentation_head_on_the_features_trains_saves_and_reloads(tmp_path):
    from keras_vit.features import feature_extractor

    model = _model(depth=2)
    backbone = feature_extractor(model, blocks=[0, 1])
    x = keras.layers.Concatenate()(backbone.outputs)
    x = keras.layers.Conv2D(3, 1)(x)
    x = keras.layers.UpSampling2D(4, interpolation="bilinear")(x)
    segmenter = keras.Model(backbone.input, x)
    images, _ = _data(8)
    masks = np.random.default_rng(0).integers(0, 3, (8, 16, 16))
    segmenter.compile("adam", "sparse_categorical_crossentropy")
    segmenter.fit(images, masks, epochs=1, verbose=0)
    assert segmenter.predict(images, verbose=0).shape == (8, 16, 16, 3)
    path = tmp_path / "segmenter.keras"
    segmenter.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0),
        segmenter.predict(images, verbose=0),
        atol=1e-6,
    )


@pytest.mark.parametrize("blocks", [3, -4, [0, 5], "last", 1.0])
def test_a_block_out_of_range_is_one_clear_error(blocks):
    from keras_vit.features import feature_extractor

    with pytest.raises(ValueError, match="`blocks` must be indices of the"):
        feature_extractor(_model(depth=3), blocks=blocks)


def test_the_tools_train_under_mixed_bfloat16(tmp_path):
    """Layer decay, EMA, accumulation and LoRA in a mixed-precision model:
    float32 variables and updates, bfloat16 compute."""
    import tensorflow as tf

    from keras_vit.lora import enable_lora
    from keras_vit.training import compile_for_training

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _model(depth=2)
        enable_lora(model, 2, mlp=True)
        compile_for_training(
            model,
            learning_rate=0.05,
            total_steps=20,
            layer_decay=0.7,
            ema=0.5,
            accumulate=2,
        )
        x, y = _data(32)
        start = {v.path: np.array(v) for v in model.trainable_variables}
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        history = model.fit(data, epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        assert int(model.optimizer.iterations) == 4
        assert all(v.dtype == "float32" for v in model.trainable_variables)
        moved = [
            not np.array_equal(np.array(v), start[v.path])
            for v in model.trainable_variables
        ]
        assert all(moved)
        assert model(x[:2]).dtype == "float32"  # Float32 logits.
    finally:
        keras.config.set_dtype_policy("float32")
