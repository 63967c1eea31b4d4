"""Memory and wall time of each export, per format and ViT size.

python benchmarks/export_memory.py --variants Ti/16,B/16,L/16,H/14 \
    [--formats saved_model,tflite,onnx] [--work DIR] [--timeout 3000]

For each variant a model with random weights (1,000 classes, 224x224) is
saved once as a `.keras` file in `--work`. Each (variant, format) then runs
in its own process: it loads the model (`export.load_model`), runs it once,
and exports it (`export.export_saved_model` / `export_tflite` /
`export_onnx`, verified as always; ONNX weights as external data when they
pass 2 GB) while a thread samples the process's resident memory every
5 ms. Prints, per row: the weights, the memory with the model loaded, the
peak during the export, what the export added (peak - loaded) as a
multiple of the weights, wall time, and whether it passed. The memory of
the loading itself is not counted: the user's process already holds the
model it exports.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def make_model(variant, work):
    path = os.path.join(work, variant.replace("/", "") + ".keras")
    if not os.path.exists(path):
        import keras_vit

        model = keras_vit.build_vit(variant, num_classes=1000)
        model.save(path)
    return path


def export_one(model_path, fmt, out):
    """In this process: load, export with sampling; prints one JSON line."""
    import numpy as np

    import export
    from export._common import release_freed_memory
    from export._model import load_model

    model = load_model(model_path)
    model(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))
    weights = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    release_freed_memory()
    loaded = resident_bytes()
    peak = [loaded]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    error = None
    try:
        if fmt == "onnx":
            report = export.export_onnx(model, out + ".onnx", overwrite=True)
        elif fmt == "tflite":
            report = export.export_tflite(
                model, out + ".tflite", overwrite=True
            )
        else:
            report = export.export_saved_model(model, out, overwrite=True)
        passed = bool(report.passed)
    except Exception as e:  # Reported in the table.
        passed, error = False, f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    print(
        json.dumps(
            {
                "weights": weights,
                "loaded": loaded,
                "peak": peak[0],
                "seconds": seconds,
                "passed": passed,
                "error": error,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="Ti/16,B/16")
    parser.add_argument("--formats", default="saved_model,tflite,onnx")
    parser.add_argument("--work", default="/tmp/export_memory")
    parser.add_argument("--timeout", type=float, default=3000)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        export_one(*args.one)
        return
    os.makedirs(args.work, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for variant in args.variants.split(","):
        # A separate process builds the model, so this one stays small.
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {here!r}); "
                "from export_memory import make_model; "
                f"make_model({variant!r}, {args.work!r})",
            ],
            check=True,
        )
        model = os.path.join(args.work, variant.replace("/", "") + ".keras")
        for fmt in args.formats.split(","):
            out = os.path.join(args.work, f"{variant.replace('/', '')}-{fmt}")
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", model, fmt, out],
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                lines = done.stdout.strip().splitlines()
                row = json.loads(lines[-1]) if lines else None
                if row is None:
                    row = {
                        "error": f"exit {done.returncode}: "
                        + done.stderr.strip()[-300:]
                    }
            except subprocess.TimeoutExpired:
                row = {"error": f"timed out after {args.timeout:.0f} s"}
            rows.append((variant, fmt, row))
            print(variant, fmt, json.dumps(row), flush=True)
    print()
    print(
        "| variant | weights GiB | format | loaded GiB | peak GiB "
        "| added GiB | added / weights | wall s | verified |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for variant, fmt, row in rows:
        if "weights" not in row:
            print(f"| {variant} | | {fmt} | | | | | | {row['error']} |")
            continue
        gib = 2**30
        added = row["peak"] - row["loaded"]
        print(
            f"| {variant} | {row['weights'] / gib:.2f} | {fmt} | "
            f"{row['loaded'] / gib:.2f} | {row['peak'] / gib:.2f} | "
            f"{added / gib:.2f} | {added / row['weights']:.1f} | "
            f"{row['seconds']:.0f} | "
            f"{'yes' if row['passed'] else row['error']} |"
        )


if __name__ == "__main__":
    main()
