"""Does fine-tuning pay? `keras-vit train --weights` against from scratch.

Runs the command line, one run after the other in this one process tree, on
the same training folder for the same number of epochs (hence the same
number of optimizer steps at the same batch size), and scores every model on
the same held-out folder with `keras-vit evaluate`:

- `finetune`: `keras-vit train --weights CHECKPOINT` (the fine-tuning
  recipe: SGD, momentum 0.9; the checkpoint's architecture, a new head, the
  position embedding resized to --image-size) at each `--lr` given;
- `probe`: the same with `--freeze-backbone` (only the new head trains);
- `scratch`: the checkpoint's architecture from random initialization with
  the from-scratch recipe (AdamW, warm-up and cosine, label smoothing);
- `scratch-recipe`: `keras-vit train` with no model options (the small-data
  recipe: convolutional tokenizer and sequence pooling), the best
  from-scratch model for small data;
- `--option NAME=FLAGS` (repeatable): a fine-tune at the first `--lr` with
  FLAGS added, e.g. `--option "layer decay 0.75=--layer-decay 0.75"`.

    python benchmarks/finetune.py CHECKPOINT TRAIN_FOLDER TEST_FOLDER \\
        --image-size 48 --epochs 20 --batch-size 64 --lr 0.003 0.01 0.03

CHECKPOINT is a preset name or a .npz/.safetensors/.keras file of a
patch-tokenizer ViT. The CPU is printed with the results.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__)))
from data_order import cpu_name  # noqa: E402


def _keras_vit(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "keras_vit", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return result.stdout


def _run(name, out, common, extra, test):
    started = time.time()
    _keras_vit("train", "--out", out, *common, *extra)
    seconds = time.time() - started
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    scores = json.loads(
        _keras_vit(
            "evaluate",
            os.path.join(out, "model.keras"),
            "--dataset",
            test,
            "--split",
            "train",
            "--validation-split",
            "0",
            "--test-split",
            "0",
            "--json",
        )
    )
    row = {
        "run": name,
        "test_accuracy": scores["accuracy"],
        "seconds": round(seconds, 1),
        "epochs": config["epochs"],
        "batch_size": config["batch_size"],
        "learning_rate": config["learning_rate"],
        "trainable_parameters": config.get("trainable_parameters"),
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, nargs="+", default=[0.01])
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["finetune", "probe", "scratch", "scratch-recipe"],
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        help="NAME=FLAGS: one more fine-tune run with these train flags",
    )
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    from keras_vit.model import read_pretrained

    arch = read_pretrained(args.checkpoint)["config"]
    common = [
        "--dataset",
        args.train,
        "--epochs",
        args.epochs,
        "--batch-size",
        args.batch_size,
        "--validation-split",
        "0.1",
        "--test-split",
        "0",
        "--no-tensorboard",
        "--quiet",
    ]
    size = ["--image-size", args.image_size]
    scratch_model = [
        "--tokenizer",
        "patch",
        "--pooling",
        arch.get("pooling") or "token",
        "--class-token"
        if arch.get("class_token", True)
        else "--no-class-token",
        "--patch-size",
        arch["patch_size"],
        "--hidden-dim",
        arch["hidden_dim"],
        "--depth",
        arch["depth"],
        "--num-heads",
        arch["num_heads"],
        "--mlp-dim",
        arch["mlp_dim"],
        # The checkpoint's family options: the same backbone from scratch.
        "--num-registers",
        arch.get("num_registers", 0),
        *(
            ["--layer-scale", arch["layer_scale"]]
            if arch.get("layer_scale")
            else []
        ),
        "--pre-norm" if arch.get("pre_norm") else "--no-pre-norm",
        "--activation",
        arch.get("activation") or "gelu",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if "finetune" in args.runs:
            for lr in args.lr:
                rows.append(
                    _run(
                        f"finetune lr={lr:g}",
                        os.path.join(tmp, f"finetune{lr}"),
                        common,
                        [*size, "--weights", args.checkpoint, "--lr", lr],
                        args.test,
                    )
                )
        for number, option in enumerate(args.option):
            name, _, flags = option.partition("=")
            rows.append(
                _run(
                    name,
                    os.path.join(tmp, f"option{number}"),
                    common,
                    [
                        *size,
                        "--weights",
                        args.checkpoint,
                        "--lr",
                        args.lr[0],
                        *flags.split(),
                    ],
                    args.test,
                )
            )
        if "probe" in args.runs:
            rows.append(
                _run(
                    "probe",
                    os.path.join(tmp, "probe"),
                    common,
                    [*size, "--weights", args.checkpoint, "--freeze-backbone"],
                    args.test,
                )
            )
        if "scratch" in args.runs:
            rows.append(
                _run(
                    "scratch",
                    os.path.join(tmp, "scratch"),
                    common,
                    [*size, *scratch_model],
                    args.test,
                )
            )
        if "scratch-recipe" in args.runs:
            rows.append(
                _run(
                    "scratch-recipe",
                    os.path.join(tmp, "recipe"),
                    common,
                    [],
                    args.test,
                )
            )
    print(f"CPU: {cpu_name()}")
    print(
        "| run | test accuracy | seconds | epochs | batch | lr | "
        "trainable parameters |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['run']} | {r['test_accuracy']:.4f} | {r['seconds']} | "
            f"{r['epochs']} | {r['batch_size']} | {r['learning_rate']:g} | "
            f"{r['trainable_parameters']:,} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
