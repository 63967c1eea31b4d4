"""Export to a TensorFlow SavedModel: raw images or tensors in, scores out."""

import os
import tempfile

import tensorflow as tf

from export._common import class_names_of
from export._common import prepare
from export._common import write_verified
from export._memory import check_memory
from export._metadata import LABELS_FILE
from export._model import encoded_serving_function
from export._model import exportable_model
from export._model import image_spec
from export._model import serving_function
from keras_vit.preprocessing import DEFAULT_INPUT_RANGE


def write_saved_model(
    model,
    directory,
    *,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
    extra_signatures=True,
):
    """Writes `model` as a SavedModel into an existing empty `directory`.

    `serving_default` takes `images` of any batch size: float32 model
    inputs, or with `preprocessing` the decoded `uint8` pixels of any size
    (`export._model.serving_function`). With `preprocessing` and
    `extra_signatures`, `serving_bytes` takes encoded image files
    (`image_bytes`, a string batch: what TF Serving clients send) and
    `serving_tensor` the float32 model inputs. With `class_names`, they are
    written to `assets/labels.txt` and returned by a `labels` signature.
    Loading it needs TensorFlow only.
    """
    image_spec(model)
    serve, _ = serving_function(model, preprocessing, input_range)
    module = tf.Module()
    # Track the backend variables once: Keras' ExportArchive stores every
    # variable twice, doubling the folder's size.
    module.model_variables = [v.value for v in model.variables]
    module.serve = serve
    signatures = {"serving_default": serve.get_concrete_function()}
    if preprocessing and extra_signatures:
        module.serve_tensor, _ = serving_function(model)
        module.serve_bytes, _ = encoded_serving_function(model, input_range)
        signatures["serving_tensor"] = (
            module.serve_tensor.get_concrete_function()
        )
        signatures["serving_bytes"] = module.serve_bytes.get_concrete_function()
    with tempfile.TemporaryDirectory() as scratch:
        if class_names is not None and extra_signatures:
            labels = os.path.join(scratch, LABELS_FILE)
            with open(labels, "w") as f:
                f.write("\n".join(class_names) + "\n")
            module.labels_file = tf.saved_model.Asset(labels)
            names = tf.constant(list(class_names))

            @tf.function(input_signature=[])
            def class_names_signature():
                return {"class_names": tf.identity(names)}

            module.labels = class_names_signature
            signatures["labels"] = class_names_signature.get_concrete_function()
        tf.saved_model.save(module, directory, signatures=signatures)


def export_saved_model(
    model,
    path,
    *,
    samples=None,
    overwrite=False,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
):
    """Exports `model` to a SavedModel folder and proves it computes the same.

    `serving_default` maps `images` (any batch size) to `logits` and
    `probabilities` (`probabilities` alone for a softmax head). Without
    `preprocessing`, `images` are float32 model inputs. With it they are
    decoded `uint8` pixels of any size, scaled and resized inside as
    training does, and two more signatures are written: `serving_bytes`
    (encoded JPEG/PNG/BMP/GIF files, `image_bytes`) and `serving_tensor`
    (float32 model inputs). Class names go to `assets/labels.txt` and a
    `labels` signature. The folder is reloaded with `tf.saved_model.load`
    and compared with the Keras model within 1e-4 (with preprocessing: on
    image files against the training pipeline's arrays of them,
    `export.verify`), or nothing is written.

    Args:
        model: a `keras.Model` with one image input and one output. A
            model with a mixed dtype policy is exported, and compared,
            as its float32 copy (`export.float32_model`).
        path: str. Folder to create.
        samples: for the comparison: an array `(N, height, width,
            channels)` of model inputs; with `preprocessing`, image files
            (a folder or a list of paths) or arrays, written as files.
            `None`: 8 uniform [-1, 1] arrays, or 8 generated files of
            several sizes and formats. Defaults to `None`.
        overwrite: bool. Replace an existing `path`. Defaults to `False`.
        preprocessing: bool. Take raw pixels and encoded files. Defaults
            to `False`.
        input_range: `(low, high)` the model's inputs were scaled to in
            training. Defaults to `(-1.0, 1.0)`.
        class_names: list of str, or `None` for the names the model
            carries (`keras_vit.class_names`). Defaults to `None`.

    Returns:
        A `VerificationReport`.

    Example:

    >>> import keras_vit, tempfile, os
    >>> model = keras_vit.build_vit(image_size=16, patch_size=4,
    ...     hidden_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=3)
    >>> out = os.path.join(tempfile.mkdtemp(), "vit")
    >>> export_saved_model(model, out, preprocessing=True).passed
    True
    """
    model = exportable_model(model, any_size=True)
    check_memory(model, [("saved_model", None)])
    names = class_names_of(model, class_names)
    path, samples = prepare(
        model, path, overwrite, samples, preprocessing, input_range
    )
    return write_verified(
        model,
        path,
        samples,
        lambda staged: write_saved_model(
            model,
            staged,
            preprocessing=preprocessing,
            input_range=input_range,
            class_names=names,
        ),
        directory=True,
    )
