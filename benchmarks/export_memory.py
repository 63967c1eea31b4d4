"""Peak memory and wall time of `python -m export`, per format and ViT size.

python benchmarks/export_memory.py --variants Ti/16,B/16 \
    [--formats saved_model,tflite,onnx] [--work DIR] [--timeout 3000]

For each variant a model with random weights (1,000 classes, 224x224) is
saved once as a `.keras` file in `--work`; then each format is exported in
its own process (`python -m export MODEL --to DIR --formats F`, verified as
always), whose resident memory (with its children) is sampled every 50 ms.
Prints a table: weight size, peak memory, peak / weights, wall time, exit
status. `--stages` also prints the memory over time of one ONNX export with
the stage each sample fell in.
"""

import argparse
import os
import subprocess
import sys
import time


def _rss(process):
    import psutil

    total = 0
    try:
        for p in [process, *process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def run_sampled(command, timeout):
    """`(peak_rss_bytes, seconds, returncode, stderr_tail)` of `command`."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _rss(watched))
        if time.perf_counter() - started > timeout:
            process.kill()
            break
        time.sleep(0.05)
    stderr = process.stderr.read()
    return peak, time.perf_counter() - started, process.wait(), stderr[-400:]


def make_model(variant, work):
    path = os.path.join(work, variant.replace("/", "") + ".keras")
    if not os.path.exists(path):
        import keras_vit

        model = keras_vit.build_vit(variant, num_classes=1000)
        model.save(path)
        del model
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="Ti/16,B/16")
    parser.add_argument("--formats", default="saved_model,tflite,onnx")
    parser.add_argument("--work", default="/tmp/export_memory")
    parser.add_argument("--timeout", type=float, default=3000)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for variant in args.variants.split(","):
        # A separate process builds the model, so this one stays small.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, 'benchmarks'); "
                "from export_memory import make_model; "
                f"make_model({variant!r}, {args.work!r})",
            ],
            check=True,
        )
        model = os.path.join(args.work, variant.replace("/", "") + ".keras")
        weights = os.path.getsize(model)
        for fmt in args.formats.split(","):
            out = os.path.join(args.work, f"{variant.replace('/', '')}-{fmt}")
            command = [
                sys.executable,
                "-m",
                "export",
                model,
                "--to",
                out,
                "--formats",
                fmt,
                "--overwrite",
                "--quiet",
            ]
            peak, seconds, code, tail = run_sampled(command, args.timeout)
            rows.append((variant, weights, fmt, peak, seconds, code, tail))
            print(
                f"{variant:<6} {fmt:<12} weights {weights / 2**20:8.1f} MiB  "
                f"peak {peak / 2**30:6.2f} GiB  {peak / weights:5.1f}x  "
                f"{seconds:7.1f} s  exit {code}",
                flush=True,
            )
            if code:
                print("   " + tail.strip().replace("\n", "\n   "), flush=True)
    print()
    print(
        "| variant | .keras MiB | format | peak GiB | peak / weights | wall s "
        "| exit |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for variant, weights, fmt, peak, seconds, code, _ in rows:
        print(
            f"| {variant} | {weights / 2**20:.0f} | {fmt} | "
            f"{peak / 2**30:.2f} | {peak / weights:.1f} | {seconds:.0f} | "
            f"{code} |"
        )


if __name__ == "__main__":
    main()
