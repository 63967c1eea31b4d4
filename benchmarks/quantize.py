"""Which deployable file keeps a ViT's accuracy: fp32 to int8, two runtimes.

Exports a `.keras` classifier with preprocessing inside (raw `uint8` pixels
in) as every variant, LiteRT and ONNX Runtime side by side, and measures
each on the same labelled images in one run:

- LiteRT: float32, float16, dynamic range, full int8, ViT-aware int8
  (LayerNorm, softmax, GELU in float), ViT-aware with float patch embedding
  and head;
- ONNX Runtime: float32, dynamic, full int8 (QDQ), ViT-aware int8, and
  ViT-aware with float ends.

Accuracy on TEST_FOLDER (class sub-folders, up to --limit images), the drop
from the Keras model, top-1 agreement with it, file size, and median batch-1
latency (runtimes interleaved with the Keras model in the same run, 2
threads).

    python benchmarks/quantize.py MODEL.keras TRAIN_FOLDER TEST_FOLDER \\
        [--limit 1000] [--json OUT]
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_order import cpu_name  # noqa: E402

from export import export_onnx  # noqa: E402
from export import export_tflite  # noqa: E402
from export._common import to_pixels  # noqa: E402
from export._model import image_spec  # noqa: E402
from export._model import load_model  # noqa: E402
from export.cli import labelled_images  # noqa: E402
from export.cli import load_images  # noqa: E402
from export.quantize import CANDIDATES  # noqa: E402
from export.quantize import measure  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("train_folder", help="calibration images")
    parser.add_argument("test_folder", help="labelled images to score on")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    model = load_model(args.model)
    shape = image_spec(model)
    calibration = load_images(args.train_folder, shape, limit=200)
    images, labels = labelled_images(
        args.test_folder, shape, (-1.0, 1.0), None, args.limit
    )
    reference = np.argmax(np.asarray(model.predict(images, verbose=0)), -1)
    keras_accuracy = float(np.mean(reference == labels) * 100)
    pixels = to_pixels(images, (-1.0, 1.0))
    variants = [("litert", "float32", None, ())]
    variants += [("litert", m, m, ()) for m in ("float16", "dynamic")]
    variants += [
        ("litert", f"int8 {n}", "int8", k) for n, k in CANDIDATES.items()
    ]
    variants += [("onnxruntime", "float32", None, ())]
    variants += [("onnxruntime", "dynamic", "dynamic", ())]
    variants += [
        ("onnxruntime", f"int8 {n}", "int8", k) for n, k in CANDIDATES.items()
    ]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, (runtime, name, mode, keep) in enumerate(variants):
            suffix = ".tflite" if runtime == "litert" else ".onnx"
            path = os.path.join(scratch, f"v{i}{suffix}")
            export = export_tflite if runtime == "litert" else export_onnx
            export(
                model,
                path,
                quantize=mode,
                representative_data=calibration,
                samples=calibration[:16],
                preprocessing=True,
                keep_float=keep,
                force=True,
            )
            numbers = measure(path, pixels, labels, reference, repeats=50)
            row = {
                "runtime": runtime,
                "variant": name,
                **numbers,
                "drop": keras_accuracy - numbers["accuracy"],
            }
            rows.append(row)
            print(
                f"{runtime:12s} {name:22s} {row['size_bytes'] / 2**20:7.2f} MiB"
                f" {row['accuracy']:6.2f}% drop {row['drop']:5.2f}"
                f" agree {row['agreement']:6.2f}% {row['latency_ms']:7.2f} ms",
                flush=True,
            )
    print(f"Keras model: {keras_accuracy:.2f}% on {len(labels)} images")
    print(f"CPU: {cpu_name()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "cpu": cpu_name(),
                    "keras_accuracy": keras_accuracy,
                    "images": int(len(labels)),
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
