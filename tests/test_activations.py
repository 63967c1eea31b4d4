import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.activations import gelu
from keras_vit.activations import gelu_approximate
from keras_vit.activations import get_gelu
from tests.helpers import to_numpy
from tests.reference import gelu as reference_gelu
from tests.reference import gelu_tanh as reference_gelu_tanh

X = np.linspace(-6, 6, 101).astype("float32")


def test_exact_gelu_matches_erf_form():
    np.testing.assert_allclose(to_numpy(gelu(X)), reference_gelu(X), atol=1e-6)


def test_exact_gelu_matches_keras_gelu():
    expected = to_numpy(keras.activations.gelu(X, approximate=False))
    np.testing.assert_allclose(to_numpy(gelu(X)), expected, atol=1e-6)


def test_approximate_gelu_matches_tanh_form():
    np.testing.assert_allclose(
        to_numpy(gelu_approximate(X)), reference_gelu_tanh(X), atol=1e-6
    )
    assert not np.allclose(
        to_numpy(gelu_approximate(X)), reference_gelu(X), atol=1e-5
    )


def test_graph_has_erf_and_no_erfc():
    # tf2onnx cannot convert Erfc; the exact form must lower to Erf only.
    fn = tf.function(gelu).get_concrete_function(
        tf.TensorSpec([None], tf.float32)
    )
    op_types = {op.type for op in fn.graph.get_operations()}
    assert "Erf" in op_types
    assert "Erfc" not in op_types


@pytest.mark.parametrize("fn", [gelu, gelu_approximate])
def test_registered_for_serialization(fn):
    config = keras.activations.serialize(fn)
    assert keras.activations.deserialize(config) is fn


def test_get_gelu_type_error():
    assert get_gelu(False) is gelu
    assert get_gelu(True) is gelu_approximate
    with pytest.raises(TypeError, match=r"approximate=1 of type int"):
        get_gelu(1)


def _gelu_function():
    spec = tf.TensorSpec([None, 8], tf.float32)
    return tf.function(gelu, input_signature=[spec]), spec


def test_tflite_converts_exact_gelu_to_the_builtin():
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    fn, _ = _gelu_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], fn
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = interpreter_module.Interpreter(
        model_content=converter.convert()
    )
    ops = [d["op_name"] for d in interpreter._get_ops_details()]
    assert ops == ["GELU"]
    x = X[:96].reshape(12, 8)
    input_index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(input_index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, reference_gelu(x), atol=1e-5)


def test_onnx_converts_exact_gelu_to_erf():
    tf2onnx = pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    fn, spec = _gelu_function()
    model, _ = tf2onnx.convert.from_function(
        fn, input_signature=[spec], opset=17
    )
    onnx.checker.check_model(model, full_check=True)
    op_types = [node.op_type for node in model.graph.node]
    assert "Erf" in op_types
    assert "Erfc" not in op_types
