"""What the exporters need to know about a Keras model."""

import keras
import tensorflow as tf


def load_model(path, unsafe=False):
    """`keras_vit.saving.load_model` (safe mode unless `unsafe`), in float32."""
    from keras_vit.saving import load_model as safe_load

    return exportable_model(safe_load(path, unsafe=unsafe))


def exportable_model(model, any_size=False):
    """`model` as the exporters take it: float32 (`float32_model`), LoRA
    merged, and at a fixed image size unless `any_size`.

    A `build_vit(dynamic_image_size=True)` model takes any image size whose
    sides are multiples of its patch size. With `any_size` (SavedModel and
    ONNX) it is returned as it is, and the exported graphs that take model
    inputs take any such size too (`takes_any_size`). Without it (TFLite,
    whose converter needs fixed shapes) this returns a copy built at the
    size its position embedding was trained for (`vit_config(model)
    .image_size`) with the same weights. Either way, files with
    preprocessing inside take raw images of any size and resize them to
    the trained size, as training did.
    """
    model = float32_model(model)
    if isinstance(model, keras.Model):
        from keras_vit.lora import merge_lora

        model = merge_lora(model)  # Plain kernels: the same outputs.
    if not _dynamic(model) or any_size:
        return model
    from keras_vit.model import assemble
    from keras_vit.model import vit_config

    fixed = assemble(vit_config(model).replace(dynamic_image_size=False))
    fixed.set_weights(model.get_weights())
    return fixed


def _dynamic(model):
    """Whether `model` is a keras-vit model built for any image size."""
    if not isinstance(model, keras.Model) or None not in tuple(
        getattr(model, "input_shape", (0, 0, 0))[1:3]
    ):
        return False
    from keras_vit.model import vit_config

    try:
        return vit_config(model).dynamic_image_size
    except ValueError:
        return False  # `image_spec` names what was expected.


def takes_any_size(model):
    """`(patch_height, patch_width)` for a model that takes images of any
    size whose sides are multiples of them, else `None`."""
    if not _dynamic(model):
        return None
    from keras_vit.model import vit_config

    return vit_config(model).patch_size


def float32_model(model):
    """Returns `model` if it computes in float32, else a float32 copy of it.

    A model trained under a mixed policy (`mixed_bfloat16`,
    `mixed_float16`) keeps float32 variables but computes in half
    precision. The runtimes of the exported files run float32 graphs, and
    LiteRT and ONNX have no bfloat16 kernels for most ops. The copy has the
    same layers and the same variable values, each layer computing in
    float32, so that export and verification use the model's
    full-precision arithmetic.

    Raises:
        ValueError: for a mixed-precision model that is not a functional or
            sequential model, which cannot be rebuilt from its layers.
    """
    if not isinstance(model, keras.Model):
        return model  # `image_spec` names what was expected.
    layers = [model, *model.layers]
    if all(layer.dtype_policy.name == "float32" for layer in layers):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except ValueError as error:
        raise ValueError(
            "A model that computes in "
            f"{model.dtype_policy.name} is exported in float32, which needs "
            "a functional or sequential model to rebuild; rebuild yours "
            "under keras.config.set_dtype_policy('float32') and load its "
            f"weights before exporting. Received: {type(model).__name__} "
            f"({error})"
        ) from error
    copy.set_weights(model.get_weights())
    return copy


def image_spec(model):
    """Returns the model's `(height, width, channels)` image input shape
    (for a model that takes any size, `takes_any_size`, the size it was
    trained at).

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
    if len(shape) == 4 and _dynamic(model):
        from keras_vit.model import vit_config

        shape = (None, *vit_config(model).image_size, shape[3])
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "The model input must be images of a fixed size, "
            "(batch, height, width, channels) (a `build_vit` model that "
            "takes any size is exported at its trained size). "
            f"Received: input shape {shape}"
        )
    if len(model.outputs) != 1:
        raise ValueError(
            "Only models with exactly one output can be exported. "
            f"Received: a model with {len(model.outputs)} outputs"
        )
    return shape[1:]


def output_names(model):
    """The named outputs of `model`'s exported signatures.

    `("logits", "probabilities")` for a model whose head outputs logits
    (the softmax is added in the graph); `("probabilities",)` for a head
    that ends in a softmax (`build_vit(classifier_activation="softmax")`).
    """
    from keras_vit.model import outputs_probabilities

    if outputs_probabilities(model):
        return ("probabilities",)
    return ("logits", "probabilities")


def _outputs(model, images, weights=None):
    if weights is None:
        outputs = model(images, training=False)
    else:
        trainable = len(model.trainable_variables)
        outputs, _ = model.stateless_call(
            list(weights[:trainable]),
            list(weights[trainable:]),
            images,
            training=False,
        )
    if output_names(model) == ("probabilities",):
        return {"probabilities": outputs}
    return {"logits": outputs, "probabilities": tf.nn.softmax(outputs)}


def model_variables(model):
    """The model's variables in `model.stateless_call`'s order."""
    return [*model.trainable_variables, *model.non_trainable_variables]


def serving_function(
    model, preprocessing=False, input_range=(-1.0, 1.0), weights_as_inputs=False
):
    """A `tf.function` from `images` (any batch) to the model's outputs.

    Without `preprocessing`, `images` are float32 model inputs
    `(batch, height, width, channels)`, of any height and width (multiples
    of the patch size) for a model that `takes_any_size`. With it,
    `images` are the decoded `uint8` pixels of any height and width (one
    size per batch), scaled to `input_range` and resized in the graph
    exactly as training does (`keras_vit.preprocessing
    .preprocess_batch_graph`, built-in ops only).
    Returns `(function, input_spec)`; the outputs are `output_names(model)`.

    With `weights_as_inputs`, the function takes each of
    `model_variables(model)` as one more input after `images`, named
    `weight_0`, `weight_1`, ... (`model.stateless_call`), so that a graph
    converter sees no weight values: `input_spec` is then the list of all
    the specs.
    """
    from keras_vit.preprocessing import preprocess_batch_graph

    height, width, channels = image_spec(model)
    if preprocessing:
        spec = tf.TensorSpec(
            (None, None, None, channels), tf.uint8, name="images"
        )
    elif takes_any_size(model):
        spec = tf.TensorSpec(
            (None, None, None, channels), tf.float32, name="images"
        )
    else:
        spec = tf.TensorSpec(
            (None, height, width, channels), tf.float32, name="images"
        )

    def body(images, weights=None):
        if preprocessing:
            with tf.name_scope("preprocessing"):
                images = preprocess_batch_graph(
                    images, (height, width), input_range
                )
        return _outputs(model, images, weights)

    if not weights_as_inputs:

        @tf.function(input_signature=[spec])
        def serve(images):
            return body(images)

        return serve, spec
    specs = [spec] + [
        tf.TensorSpec(v.shape, v.dtype, name=f"weight_{i}")
        for i, v in enumerate(model_variables(model))
    ]

    @tf.function(input_signature=specs)
    def serve_stateless(images, *weights):
        return body(images, weights)

    return serve_stateless, specs


def encoded_serving_function(model, input_range=(-1.0, 1.0)):
    """A `tf.function` from encoded JPEG/PNG/BMP/GIF bytes to the outputs.

    Each file is decoded and preprocessed by the training pipeline's own
    functions (`keras_vit.preprocessing`), so a file sent to it is scored
    on exactly the array training would have made of it.
    """
    from keras_vit.preprocessing import decode_image
    from keras_vit.preprocessing import preprocess_image

    height, width, channels = image_spec(model)
    spec = tf.TensorSpec((None,), tf.string, name="image_bytes")

    def one(data):
        return preprocess_image(
            decode_image(data), (height, width), channels, input_range
        )

    @tf.function(input_signature=[spec])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            one,
            image_bytes,
            fn_output_signature=tf.TensorSpec(
                (height, width, channels), tf.float32
            ),
        )
        return _outputs(model, images)

    return serve_bytes, spec
