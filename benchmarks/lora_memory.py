"""Full fine-tuning against LoRA: trainable parameters and peak memory.

Runs, one after the other in this one run, a child process per mode that
builds a ViT (B/16 at 224x224 by default, a new 10-class head), compiles
it with the fine-tuning recipe (SGD, momentum 0.9) and takes training
steps on random images at the given batch size:

- `full`: every weight trains;
- `lora`: `keras_vit.lora.enable_lora(model, rank)` (the attention
  projections; `--mlp` adds the MLP layers), only the LoRA matrices and
  the head train.

Each child reports its trainable parameters, the process's resident memory
after building the model, its peak over the steps (`ru_maxrss`) and the
median step time after the first (compiling) step.

    python benchmarks/lora_memory.py --variant B/16 --batch-size 8 --rank 8

The CPU is printed with the results.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__)))
from data_order import cpu_name  # noqa: E402


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args):
    import keras
    import numpy as np

    import keras_vit
    from keras_vit.lora import enable_lora
    from keras_vit.training import compile_for_training

    keras.utils.set_random_seed(0)
    model = keras_vit.build_vit(
        args.variant, image_size=args.image_size, num_classes=10
    )
    if args.mode == "lora":
        enable_lora(model, args.rank, mlp=args.mlp)
    compile_for_training(
        model,
        learning_rate=0.01,
        total_steps=1000,
        weight_decay=0.0,
        optimizer="sgd",
    )
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    built = _rss_mib()
    rng = np.random.default_rng(0)
    x = rng.uniform(
        -1, 1, (args.batch_size, args.image_size, args.image_size, 3)
    )
    x = x.astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, args.batch_size), 10)
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "mode": args.mode,
                "parameters": int(model.count_params()),
                "trainable_parameters": trainable,
                "rss_after_build_mib": round(built),
                "peak_rss_mib": round(peak),
                "step_seconds": round(
                    sorted(times[1:])[len(times[1:]) // 2], 2
                ),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--mlp", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mode", choices=["full", "lora"])
    args = parser.parse_args()
    if args.mode:
        return child(args)
    rows = []
    for mode in ("full", "lora"):
        command = [sys.executable, __file__, "--mode", mode]
        for flag in ("variant", "image_size", "batch_size", "rank", "steps"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        if args.mlp:
            command.append("--mlp")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            command, capture_output=True, text=True, env=env
        )
        if result.returncode:
            raise SystemExit(result.stderr[-3000:])
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"CPU: {cpu_name()}")
    print(
        f"{args.variant} at {args.image_size}x{args.image_size}, batch "
        f"{args.batch_size}, LoRA rank {args.rank}"
        + (" (attention and MLP)" if args.mlp else " (attention)")
    )
    print(
        "| mode | trainable parameters | of all | memory after build | "
        "peak memory over the steps | step seconds |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        share = r["trainable_parameters"] / r["parameters"]
        print(
            f"| {r['mode']} | {r['trainable_parameters']:,} | {share:.2%} | "
            f"{r['rss_after_build_mib']:,} MiB | {r['peak_rss_mib']:,} MiB | "
            f"{r['step_seconds']} |"
        )


if __name__ == "__main__":
    main()
