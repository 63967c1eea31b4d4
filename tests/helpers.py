"""Checks shared by the layer and model tests."""

import http.server
import json
import threading

import keras
import numpy as np
from keras import ops


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    expected_num_weights,
    expected_num_params=None,
):
    """The contract every keras_vit layer keeps.

    - `from_config(get_config())` gives an equal, JSON-serializable config;
    - a symbolic call with a `None` batch has the expected shape;
    - an eager call's shape equals `compute_output_shape`;
    - the layer owns the expected number of weights (and parameters);
    - a `mixed_bfloat16` copy computes in bfloat16 with float32 variables
      and stays close to the float32 output.
    """
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    json.dumps(config)  # Must be JSON-serializable as it is.
    clone = layer_cls.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )

    symbolic = keras.KerasTensor((None, *input_shape[1:]))
    out = layer_cls(**init_kwargs)(symbolic)
    assert tuple(out.shape) == (None, *expected_output_shape[1:])

    x = keras.random.normal(input_shape, seed=0)
    y = layer(x)
    assert tuple(y.shape) == tuple(expected_output_shape)
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(y.shape)
    assert len(layer.weights) == expected_num_weights
    if expected_num_params is not None:
        assert layer.count_params() == expected_num_params

    mixed = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
    y_mixed = mixed(x)
    assert keras.backend.standardize_dtype(y_mixed.dtype) == "bfloat16"
    assert all(w.dtype == "float32" for w in mixed.weights)
    for target, source in zip(mixed.weights, layer.weights):
        target.assign(source)
    y_mixed = to_numpy(ops.cast(mixed(x), "float32"))
    np.testing.assert_allclose(y_mixed, to_numpy(y), rtol=0.05, atol=0.05)
    return layer


def check_dropout_behavior(layer, x, samples=400):
    """`training=True` changes outputs; their mean equals inference's.

    The mean of `samples` training outputs must lie within 5 standard
    errors of the inference output, element by element.
    """
    inference = to_numpy(layer(x, training=False))
    np.testing.assert_array_equal(inference, to_numpy(layer(x)))
    first = to_numpy(layer(x, training=True))
    second = to_numpy(layer(x, training=True))
    assert not np.allclose(first, inference)
    assert not np.allclose(first, second)
    draws = np.stack(
        [to_numpy(layer(x, training=True)) for _ in range(samples)]
    )
    mean = draws.mean(axis=0)
    standard_error = draws.std(axis=0) / np.sqrt(samples)
    assert np.all(np.abs(mean - inference) <= 5 * standard_error + 1e-5)


def write_colour_folder(root, side, count):
    """Three classes of `side`x`side` PNGs under `root`: reddish, greenish
    and bluish noise, `count` of each; returns `root`."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir()
        for i in range(count):
            image = rng.integers(0, 120, (side, side, 3))
            image[..., label] += 120
            keras.utils.save_img(
                root / name / f"{i}.png", image.astype("uint8")
            )
    return root


class FileServer:
    """Serves files from a dict; `mode` cuts transfers on purpose."""

    def __init__(self):
        self.files = {}
        self.mode = "full"
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if server.mode == "no_length_half":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.mode == "cut":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                else:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever)
        self.thread.daemon = True
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# Test paths that run on every Keras backend (the model, its layers, the
# .keras round trip, checkpoint loading, attention maps, training with
# `fit`); the rest needs TensorFlow (tf.data pipelines, export, the fused
# kernels) and is skipped on the other backends.
BACKEND_PORTABLE = (
    "tests/layers",
    "tests/test_model.py",
    "tests/test_attention.py",
    "tests/test_checkpoints.py",
)
