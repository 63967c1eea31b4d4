"""Export to a TensorFlow SavedModel with an `images` → `logits` signature."""

import tensorflow as tf

from export._common import prepare
from export._common import write_verified
from export._model import float32_model
from export._model import image_spec
from export._model import serving_function


def write_saved_model(model, directory):
    """Writes `model` as a SavedModel into an existing empty `directory`.

    The `serving_default` signature takes float32 `images` of any batch size
    and returns `{"logits": ...}`; loading it needs TensorFlow only.
    """
    image_spec(model)
    serve, _ = serving_function(model)
    module = tf.Module()
    # Track the backend variables once: Keras' ExportArchive stores every
    # variable twice, doubling the folder's size.
    module.model_variables = [v.value for v in model.variables]
    module.serve = serve
    tf.saved_model.save(
        module,
        directory,
        signatures={"serving_default": serve.get_concrete_function()},
    )


def export_saved_model(model, path, *, samples=None, overwrite=False):
    """Exports `model` to a SavedModel folder and proves it computes the same.

    The SavedModel has one signature, `serving_default`, from float32
    `images` `(batch, height, width, channels)` with any batch size to
    `logits`. It is reloaded with `tf.saved_model.load` and compared with
    `model(samples)` at batch 1 and at batch `len(samples)`; it must agree
    within 1e-4 or nothing is written.

    Args:
        model: a `keras.Model` with one image input and one output. A
            model with a mixed dtype policy is exported, and compared,
            as its float32 copy (`export.float32_model`).
        path: str. Folder to create.
        samples: array `(N, height, width, channels)` for the comparison, or
            `None` for 8 uniform [-1, 1] images. Defaults to `None`.
        overwrite: bool. Replace an existing `path`. Defaults to `False`.

    Returns:
        A `VerificationReport`.

    Example:

    >>> import keras_vit, tempfile, os
    >>> model = keras_vit.build_vit(image_size=16, patch_size=4,
    ...     hidden_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=3)
    >>> out = os.path.join(tempfile.mkdtemp(), "vit")
    >>> export_saved_model(model, out).passed
    True
    """
    model = float32_model(model)
    path, samples = prepare(model, path, overwrite, samples)
    return write_verified(
        model,
        path,
        samples,
        lambda staged: write_saved_model(model, staged),
        directory=True,
    )
