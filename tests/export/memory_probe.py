"""Prints the memory one export adds, as JSON: run in a fresh process.

python -m tests.export.memory_probe FORMAT OUT_DIR

Builds a model whose weights dominate its activations (hidden width 1024
on 32x32 images, about 100 MB of float32 weights), runs it once, then
exports it to FORMAT (verified, as always) while a thread samples the
process's resident memory every 5 ms (Linux `/proc/self/statm`). Prints
`{"weight_bytes": ..., "added_bytes": ...}`: the peak during the export
minus the memory just before it.
"""

import json
import os
import sys
import threading
import time

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def main():
    fmt, out = sys.argv[1], sys.argv[2]
    import export
    import keras_vit

    model = keras_vit.build_vit(
        image_size=32,
        patch_size=16,
        hidden_dim=1024,
        depth=2,
        num_heads=16,
        mlp_dim=4096,
        num_classes=10,
    )
    model(np.zeros((1, 32, 32, 3), np.float32))
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.005)

    export._common.release_freed_memory()
    before = resident_bytes()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if fmt == "onnx":
        report = export.export_onnx(model, os.path.join(out, "m.onnx"))
    elif fmt == "tflite":
        report = export.export_tflite(model, os.path.join(out, "m.tflite"))
    else:
        report = export.export_saved_model(model, os.path.join(out, "m"))
    done.set()
    sampler.join()
    print(
        json.dumps(
            {
                "passed": bool(report.passed),
                "weight_bytes": weight_bytes,
                "added_bytes": peak[0] - before,
            }
        )
    )


if __name__ == "__main__":
    main()
