"""Export Keras image models to SavedModel, TFLite (LiteRT) and ONNX.

Every export reloads the artifact in its own runtime and compares it with
the Keras model before the file is placed at its path:

    from export import export_saved_model, export_tflite, export_onnx
    export_onnx(model, "model.onnx")            # returns a VerificationReport
    export_tflite(model, "model.int8.tflite", "int8", representative_data=x)

All three take `(model, path, <format option>, *, samples=None,
overwrite=False, preprocessing=False, ...)`. With `preprocessing=True` the
files take decoded `uint8` pixels of any size and resize and scale them as
training did, carry their class names, and are verified end to end on image
files (`export.samples`). The command line, `python -m export MODEL.keras
--to DIR`, writes every format with preprocessing inside, a `report.json`
and a `manifest.json`; `--quantize int8` picks the int8 file within an
accuracy budget (`export.quantize`). A model
trained in mixed precision is exported as its float32 copy
(`float32_model`): same variables, float32 arithmetic.
"""

from keras_vit.command import quiet_startup

quiet_startup()  # python -m export: quiet TensorFlow before it loads.

from export._files import OutputExistsError
from export._memory import ExportMemoryError
from export._model import float32_model
from export.onnx_model import InvalidOnnxError
from export.onnx_model import export_onnx
from export.quantize import AccuracyBudgetError
from export.samples import ImageFiles
from export.saved_model import export_saved_model
from export.tflite import UnsupportedOpsError
from export.tflite import export_tflite
from export.verify import VerificationError
from export.verify import VerificationReport
from export.verify import format_table
from export.verify import verify

__all__ = [
    "AccuracyBudgetError",
    "ExportMemoryError",
    "ImageFiles",
    "InvalidOnnxError",
    "OutputExistsError",
    "UnsupportedOpsError",
    "VerificationError",
    "VerificationReport",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "float32_model",
    "format_table",
    "verify",
]
