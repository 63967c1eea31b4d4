"""What the exporters need to know about a Keras model."""

import keras
import tensorflow as tf


def load_model(path, safe_mode=True):
    """Loads a `.keras` file; Keras' safe mode refuses serialized code."""
    from keras_vit.saving import load_model as safe_load

    return safe_load(path, unsafe=not safe_mode)


def image_spec(model):
    """Returns the model's `(height, width, channels)` image input shape.

    Raises when the model is not a Keras model with exactly one image input
    `(batch, height, width, channels)` of known size and one output.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a `keras.Model`. "
            f"Received: model of type {type(model).__name__}"
        )
    inputs = model.inputs
    if inputs is None or len(inputs) != 1:
        count = "unknown" if inputs is None else len(inputs)
        raise ValueError(
            "Only models with exactly one image input can be exported. "
            f"Received: a model with {count} inputs"
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "The model input must be images of a fixed size, "
            "(batch, height, width, channels). "
            f"Received: input shape {shape}"
        )
    if len(model.outputs) != 1:
        raise ValueError(
            "Only models with exactly one output can be exported. "
            f"Received: a model with {len(model.outputs)} outputs"
        )
    return shape[1:]


def serving_function(model):
    """A `tf.function` from `images` (any batch) to `{"logits": ...}`."""
    spec = tf.TensorSpec((None, *image_spec(model)), tf.float32, name="images")

    @tf.function(input_signature=[spec])
    def serve(images):
        return {"logits": model(images, training=False)}

    return serve, spec
