import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_vit import build_vit
from keras_vit import fused
from keras_vit.activations import gelu
from keras_vit.layers import FusedLayerNormalization

RNG = np.random.default_rng(0)
SMALL = dict(image_size=16, patch_size=4, num_heads=4, num_classes=5)


def _value_and_grads(fn, inputs, upstream):
    inputs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = fn(*inputs)
    grads = tape.gradient(outputs, inputs, output_gradients=upstream)
    return outputs.numpy(), [g.numpy() for g in grads]


def _assert_same(fused_fn, plain_fn, inputs, upstream, atol):
    y_fused, g_fused = _value_and_grads(fused_fn, inputs, upstream)
    y_plain, g_plain = _value_and_grads(plain_fn, inputs, upstream)
    np.testing.assert_allclose(y_fused, y_plain, atol=atol, rtol=atol)
    for a, b in zip(g_fused, g_plain):
        np.testing.assert_allclose(a, b, atol=atol, rtol=atol)


def test_gelu_and_its_gradient_match_autodiff_of_the_erf_form():
    # Wide range: the tails, where the pdf term vanishes, and around zero.
    x = np.concatenate(
        [np.linspace(-9, 9, 3001), RNG.normal(size=4000) * 3]
    ).astype("float32")
    upstream = RNG.normal(size=x.shape).astype("float32")
    _assert_same(fused.gelu, gelu, [x], upstream, atol=1e-5)


def test_layer_norm_and_its_gradients_match_keras():
    x = (RNG.normal(size=(3, 7, 24)) * 4 + 2).astype("float32")
    gamma = RNG.normal(size=24).astype("float32")
    beta = RNG.normal(size=24).astype("float32")
    upstream = RNG.normal(size=x.shape).astype("float32")

    def plain(x, g, b):
        return ops.layer_normalization(x, g, b, epsilon=1e-6)

    def fast(x, g, b):
        return fused.layer_norm(x, g, b, 1e-6)

    _assert_same(fast, plain, [x, gamma, beta], upstream, atol=2e-5)


def test_softmax_and_its_gradient_match_autodiff():
    x = (RNG.normal(size=(2, 3, 11, 11)) * 3).astype("float32")
    upstream = RNG.normal(size=x.shape).astype("float32")
    plain = lambda x: tf.nn.softmax(x, axis=-1)  # noqa: E731
    _assert_same(fused.softmax, plain, [x], upstream, atol=1e-6)


def test_bfloat16_softmax_equals_casting_around_a_float32_one():
    x = tf.constant(RNG.normal(size=(2, 3, 13, 13)) * 3, tf.bfloat16)
    upstream = tf.constant(RNG.normal(size=x.shape), tf.bfloat16)

    def around(x):
        y = tf.nn.softmax(tf.cast(x, tf.float32), axis=-1)
        return tf.cast(y, tf.bfloat16)

    y_fused, (g_fused,) = _value_and_grads(fused.softmax, [x], upstream)
    y_plain, (g_plain,) = _value_and_grads(around, [x], upstream)
    assert y_fused.dtype == g_fused.dtype == tf.bfloat16.as_numpy_dtype
    # The same values: TensorFlow's bfloat16 softmax computes in float32.
    np.testing.assert_array_equal(y_fused, y_plain)
    # The gradient uses the rounded weights: bfloat16 rounding apart.
    np.testing.assert_allclose(
        g_fused.astype("float32"), g_plain.astype("float32"), atol=2e-2
    )


def test_bfloat16_kernels_compute_in_float32_and_return_bfloat16():
    x = tf.constant(RNG.normal(size=(4, 9, 16)), tf.bfloat16)
    gamma, beta = tf.ones(16), tf.zeros(16)
    y = fused.layer_norm(x, tf.cast(gamma, tf.bfloat16), beta, 1e-6)
    assert y.dtype == tf.bfloat16 and fused.gelu(x).dtype == tf.bfloat16
    reference = ops.layer_normalization(
        tf.cast(x, tf.float32), gamma, beta, epsilon=1e-6
    )
    np.testing.assert_allclose(
        tf.cast(y, tf.float32).numpy(), reference.numpy(), atol=2e-2
    )


def test_fused_layer_norm_layer_trains_like_keras_layer_norm():
    x = RNG.normal(size=(4, 5, 12)).astype("float32")
    ours = FusedLayerNormalization(epsilon=1e-6)
    theirs = keras.layers.LayerNormalization(epsilon=1e-6)
    ours.build(x.shape)
    theirs.build(x.shape)
    ours.gamma.assign(RNG.normal(size=12).astype("float32"))
    theirs.set_weights(ours.get_weights())
    grads = []
    for layer in (ours, theirs):  # Keras' layer ignores `training`.
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * np.arange(12, dtype="float32"))
        grads.append(tape.gradient(loss, layer.trainable_weights))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    # Axes other than the last, and no offset, use Keras' own path.
    other = FusedLayerNormalization(axis=1, center=False)
    np.testing.assert_allclose(
        other(x, training=True).numpy(),
        keras.layers.LayerNormalization(axis=1, center=False)(x).numpy(),
        atol=1e-6,
    )
    config = ours.get_config()
    assert FusedLayerNormalization.from_config(config).get_config() == config


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_training_gradients_of_a_vit_match_the_plain_model(policy):
    keras.config.set_dtype_policy(policy)  # The conftest fixture resets it.
    model = build_vit(**SMALL, hidden_dim=32, depth=2, mlp_dim=64)
    head = model.get_layer("head").kernel  # Zeros: no gradient below it.
    head.assign(RNG.normal(size=head.shape).astype("float32"))
    images = RNG.uniform(-1, 1, size=(6, 16, 16, 3)).astype("float32")
    labels = np.arange(6) % 5
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        return loss, tape.gradient(loss, model.trainable_weights)

    results = {}
    for enabled in (True, False):
        fused.set_enabled(enabled)
        try:
            results[enabled] = tf.function(step)()  # Traced anew each time.
        finally:
            fused.set_enabled(True)
    (loss_a, grads_a), (loss_b, grads_b) = results[True], results[False]
    tol = 1e-5 if policy == "float32" else 3e-2
    np.testing.assert_allclose(loss_a.numpy(), loss_b.numpy(), rtol=tol)
    for a, b, w in zip(grads_a, grads_b, model.trainable_weights):
        if w.path.endswith("key_bias"):
            continue  # Softmax ignores it: its gradient is rounding noise.
        a, b = a.numpy(), b.numpy()
        scale = np.abs(b).max()
        assert scale > 0, w.path
        assert np.abs(a - b).max() <= tol * scale, w.path


def test_kernels_are_used_only_when_training():
    assert fused.use_fused(True)
    assert not fused.use_fused(False) and not fused.use_fused(None)
    fused.set_enabled(False)
    try:
        assert not fused.use_fused(True) and not fused.is_enabled()
    finally:
        fused.set_enabled(True)
    with pytest.raises(TypeError, match=r"`enabled` must be a bool.*'yes'"):
        fused.set_enabled("yes")


def _xla_functions(concrete):
    graph_def = concrete.graph.as_graph_def()
    return [
        f.signature.name
        for f in graph_def.library.function
        if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b
    ]


def test_inference_graph_has_no_xla_and_training_graph_has():
    model = build_vit(**SMALL, hidden_dim=16, depth=1, mlp_dim=32)
    spec = tf.TensorSpec((None, 16, 16, 3), tf.float32)
    infer = tf.function(lambda x: model(x, training=False))
    assert _xla_functions(infer.get_concrete_function(spec)) == []
    train = tf.function(lambda x: model(x, training=True))
    names = _xla_functions(train.get_concrete_function(spec))
    assert any("gelu_forward" in n for n in names)
    assert any("layer_norm_forward" in n for n in names)
