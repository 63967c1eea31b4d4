"""`keras-vit train`: train a ViT, or fine-tune a pretrained one."""

import argparse
import json
import math
import os
import time

from keras_vit.command import UsageError
from keras_vit.command import at_least_two
from keras_vit.command import damaged_images_named
from keras_vit.command import data_options
from keras_vit.command import fraction
from keras_vit.command import momentum
from keras_vit.command import non_negative_int
from keras_vit.command import positive_float
from keras_vit.command import positive_int
from keras_vit.command import rate
from keras_vit.command import source_options
from keras_vit.command import transform_from_args
from keras_vit.recipes import MODEL_KEYS


def add_parser(commands, parents):
    """Adds `train` to the `keras-vit` subcommands."""
    from keras_vit.variants import VARIANTS

    train = commands.add_parser(
        "train",
        parents=[parents["logs"], parents["transform"]],
        help="train a ViT",
        description="Train a ViT with AdamW, warm-up + cosine decay, label "
        "smoothing and gradient clipping. Writes model.keras (final), "
        "best.keras (best validation accuracy), labels.json, history.csv, "
        "metrics.json (test accuracy and loss) and config.json in --out. "
        "Run the same command again after an interruption to resume from "
        "the last finished epoch. The model, image size, learning rate, "
        "batch size, augmentation and length of training default to a "
        "recipe chosen from the number, size and colour of the images "
        "(keras_vit.recipes), printed in one line at the start and kept in "
        "config.json; any option given overrides its part.",
    )
    data_options(train)
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out folder that holds a finished run",
    )
    train.add_argument("--variant", choices=VARIANTS, help="ViT size")
    train.add_argument(
        "--weights",
        help="fine-tune a pretrained checkpoint: a preset name (keras-vit "
        "weights list) or a .npz, .safetensors or .keras file. Its "
        "architecture is used, the head is replaced for the dataset's "
        "classes, the position embedding resized to --image-size, and the "
        "recipe is the ViT paper's fine-tuning (SGD, momentum 0.9, small "
        "learning rate, no weight decay)",
    )
    train.add_argument(
        "--freeze-backbone",
        action="store_true",
        help="with --weights: train only the new head (a linear probe)",
    )
    _fine_tuning_flags(train)
    _architecture_flags(train)
    _recipe_flags(train)
    _run_flags(train)


def _run_flags(parser):
    """How the run computes: precision, XLA, determinism, distribution,
    logs."""
    from keras_vit.recipes import PRECISIONS
    from keras_vit.recipes import STRATEGIES

    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="dtype policy; auto (default): mixed_bfloat16 where the "
        "hardware multiplies bfloat16 natively (GPUs from compute "
        "capability 8.0; AMX or AVX-512 BF16 CPUs, for models of width 128 "
        "and more), mixed_float16 on older tensor-core GPUs, else float32",
    )
    parser.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile train steps with XLA (default off: on CPUs it is no "
        "faster in float32 and slower in bfloat16, see BENCHMARKS.md); "
        "needs --no-deterministic, which it implies when not given",
    )
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="TensorFlow op determinism: the same command gives bitwise the "
        "same weights on the same machine (default on, off with "
        "--jit-compile: XLA does not run under it). On GPUs deterministic "
        "kernels are slower; --no-deterministic trades that for speed",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="tf.distribute strategy (default auto)",
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="no TensorBoard logs"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no Keras progress output"
    )


def _recipe_flags(parser):
    """One flag per `keras_vit.recipes.TRAINING_OPTIONS` entry: the
    recipe's fields and the run's training options."""
    from keras_vit.recipes import TRAINING_OPTIONS

    kinds = {
        "positive_int": positive_int,
        "rate": rate,
        "positive_float": positive_float,
        "float": float,
        "text": None,
    }
    for key, (kind, default, help_text) in TRAINING_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        options = {} if default is None else {"default": default}
        if kinds[kind] is not None:
            options["type"] = kinds[kind]
        if help_text is not None:
            options["help"] = help_text
        parser.add_argument(flag, **options)


def _architecture_flags(parser):
    """One flag per `keras_vit.config.ARCHITECTURE_OPTIONS` entry, typed by
    the configuration field's default (standard library only)."""
    from keras_vit.config import ARCHITECTURE_OPTIONS
    from keras_vit.config import CHOICES
    from keras_vit.config import option_defaults

    defaults = option_defaults()
    for key, help_text in ARCHITECTURE_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        default = defaults[key]
        if key in CHOICES:
            parser.add_argument(flag, choices=CHOICES[key], help=help_text)
        elif isinstance(default, bool):
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif key == "num_registers":
            parser.add_argument(flag, type=non_negative_int, help=help_text)
        elif default is None or isinstance(default, float):
            parser.add_argument(flag, type=positive_float, help=help_text)
        else:
            parser.add_argument(flag, type=positive_int, help=help_text)


def _fine_tuning_flags(parser):
    """--layer-decay, --ema, --accumulate and the LoRA flags."""
    parser.add_argument(
        "--layer-decay",
        type=fraction,
        help="layer-wise learning-rate decay: block i of depth trains at "
        "DECAY**(depth-i) times the rate, the embeddings lowest, the head "
        "at the full rate (default: off)",
    )
    parser.add_argument(
        "--ema",
        type=momentum,
        help="keep an exponential moving average of the weights with this "
        "momentum; validation, best.keras and model.keras use it (default: "
        "off)",
    )
    parser.add_argument(
        "--accumulate",
        type=at_least_two,
        help="apply the mean gradient of this many batches as one update "
        "(an effective batch of --batch-size times this; default: off)",
    )
    parser.add_argument(
        "--lora-rank",
        type=positive_int,
        help="with --weights: freeze the checkpoint and train rank-R LoRA "
        "updates of the attention projections and the new head",
    )
    parser.add_argument(
        "--lora-alpha",
        type=positive_float,
        help="scale the LoRA updates by ALPHA / rank (default: the rank)",
    )
    parser.add_argument(
        "--lora-mlp",
        action="store_true",
        help="with --lora-rank: also adapt the MLP layers",
    )


def _check_out(out, overwrite):
    finished = os.path.isfile(os.path.join(out, "metrics.json"))
    resuming = os.path.isdir(os.path.join(out, "backup"))
    if finished and not resuming and not overwrite:
        raise UsageError(
            f"--out {out!r} holds a finished run; pass --overwrite to "
            "train again there, or choose another folder"
        )
    if finished and overwrite:
        for name in ("history.csv", "metrics.json", "best.keras"):
            path = os.path.join(out, name)
            if os.path.exists(path):
                os.remove(path)
    os.makedirs(out, exist_ok=True)
    return resuming


def run(args):
    from keras_vit.files import folder_lock

    args.deterministic = _deterministic(args)  # Usage errors before --out.
    # One run per folder: a second one exits 1 naming the holder.
    with folder_lock(args.out):
        return _train(args)


def _train(args):
    """One training run: recipe, data, model, fit, and the files in --out."""
    from keras_vit.files import write_json
    from keras_vit.training import distribution_strategy
    from keras_vit.training import set_determinism

    resuming = _check_out(args.out, args.overwrite)
    set_determinism(args.seed, ops=args.deterministic)
    strategy = distribution_strategy(args.strategy)
    checkpoint, config, reason, transform = _recipe(args)
    data = _data(args, config, transform)
    config["image_size"] = data.image_shape[0]
    precision = _precision(args, config)
    if not args.quiet:
        print(f"recipe: {reason}", flush=True)
    with strategy.scope():
        model = _model(args, checkpoint, data, config)
    run_config = {
        "dataset": args.dataset,
        "seed": args.seed,
        "precision": precision,
        "deterministic": args.deterministic,
        "jit_compile": args.jit_compile,
        "strategy": args.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "recipe": reason,
        "sizes": data.sizes,
        "parameters": int(model.count_params()),
        "trainable_parameters": sum(
            math.prod(v.shape) for v in model.trainable_variables
        ),
        **config,
    }
    write_json(os.path.join(args.out, "config.json"), run_config)
    write_json(os.path.join(args.out, "labels.json"), data.class_names)
    started = time.time()
    if args.strategy == "multiworker":
        metrics = _fit_multiworker(model, data, config, strategy, args.out)
    else:
        metrics = _fit(model, data, config, args)
    metrics = {
        "train_seconds": round(time.time() - started, 1),
        "resumed": resuming,
        **metrics,
    }
    write_json(os.path.join(args.out, "metrics.json"), metrics)
    print(json.dumps(metrics))
    return 0


def _recipe(args):
    """`(checkpoint or None, config, reason, transform)`: the recipe for
    the data and the options given, and the transform the images are made
    with."""
    from keras_vit.data import count_examples
    from keras_vit.data import native_image_shape

    native = native_image_shape(args.dataset, args.data_dir)
    examples = count_examples(args.dataset, args.data_dir) or 50_000
    checkpoint = None
    _check_tuning_flags(args)
    if args.weights:
        checkpoint, config, reason = _finetune_config(args, native, examples)
    else:
        if args.freeze_backbone:
            raise UsageError("--freeze-backbone needs --weights")
        config, reason = _scratch_config(args, native, examples)
    reason += _tuning(args, config)
    transform = transform_from_args(
        args, checkpoint["transform"] if checkpoint else None
    )
    config["transform"] = transform.to_dict()
    return checkpoint, config, reason, transform


def _data(args, config, transform):
    from keras_vit.data import load_datasets

    return load_datasets(
        args.dataset,
        image_size=config["image_size"],
        batch_size=config["batch_size"],
        validation_split=args.validation_split,
        test_split=args.test_split,
        augment=config["augment"],
        channels=config.get("channels"),
        one_hot=True,
        **source_options(args),
        progress=not args.quiet,
        input_range=transform,
    )


def _precision(args, config):
    """The dtype policy asked for (`auto`: the hardware's), set."""
    import keras

    from keras_vit.training import hardware_precision

    precision = args.precision
    if precision == "auto":
        precision = hardware_precision(config["hidden_dim"])
    keras.config.set_dtype_policy(precision)
    return precision


def _model(args, checkpoint, data, config):
    """The model, built (or from the checkpoint) and compiled."""
    import keras_vit
    from keras_vit.recipes import MODEL_KEYS
    from keras_vit.training import compile_for_training

    if checkpoint is None:
        model = keras_vit.build_vit(
            image_size=data.image_shape[:2],
            channels=data.image_shape[2],
            num_classes=data.num_classes,
            drop_path_rate=args.drop_path_rate,
            dropout=config["dropout"],
            class_names=[str(n) for n in data.class_names],
            **{k: config[k] for k in MODEL_KEYS},
        )
    else:
        model = _finetune_model(checkpoint, data, config, args)
    steps_per_epoch = max(1, -(-data.sizes["train"] // config["batch_size"]))
    total_steps = config["epochs"] * steps_per_epoch
    compile_for_training(
        model,
        learning_rate=config["learning_rate"],
        total_steps=total_steps,
        warmup_steps=min(
            config["warmup_epochs"] * steps_per_epoch, total_steps - 1
        ),
        weight_decay=config["weight_decay"],
        label_smoothing=config["label_smoothing"],
        clipnorm=args.clipnorm,
        jit_compile=args.jit_compile,
        optimizer=config.get("optimizer", "adamw"),
        layer_decay=config["layer_decay"],
        ema=config["ema"],
        accumulate=config["accumulate"],
    )
    return model


def _check_tuning_flags(args):
    if args.lora_rank and not args.weights:
        raise UsageError("--lora-rank needs --weights")
    if args.lora_rank and args.freeze_backbone:
        raise UsageError(
            "--lora-rank and --freeze-backbone conflict: LoRA trains its "
            "updates of the backbone; drop one of them"
        )
    if (args.lora_alpha or args.lora_mlp) and not args.lora_rank:
        raise UsageError("--lora-alpha and --lora-mlp need --lora-rank")


def _tuning(args, config):
    """Puts the recipe's (or the given) layer decay, EMA, accumulation and
    LoRA into `config`; returns the words for the recipe line."""
    for key in ("layer_decay", "ema", "accumulate"):
        given = getattr(args, key)
        if given is not None:
            config[key] = given
        config.setdefault(key, None)
    config["lora"] = None
    if args.lora_rank:
        config["lora"] = {
            "rank": args.lora_rank,
            "alpha": args.lora_alpha,
            "mlp": args.lora_mlp,
        }
    said = []
    if config["layer_decay"] is not None:
        said.append(f"layer decay {config['layer_decay']:g}")
    if config["ema"] is not None:
        said.append(
            f"EMA of the weights, momentum {config['ema']:g} (validation, "
            "best.keras and model.keras use the average)"
        )
    if config["accumulate"] is not None:
        said.append(
            f"{config['accumulate']} batches per update (effective batch "
            f"{config['accumulate'] * config['batch_size']})"
        )
    if config["lora"]:
        where = "attention and MLP" if args.lora_mlp else "attention"
        said.append(f"LoRA rank {args.lora_rank} on the {where} projections")
    off = [
        name
        for key, name in (
            ("layer_decay", "layer decay"),
            ("ema", "EMA"),
            ("accumulate", "accumulation"),
        )
        if config[key] is None
    ]
    if args.weights and off:
        said.append(
            f"{', '.join(off)} off (no gain in the measured fine-tunes, "
            "BENCHMARKS.md)"
        )
    return "; " + ", ".join(said) if said else ""


def _deterministic(args):
    """--deterministic, resolved: on unless --jit-compile asks for XLA."""
    if args.deterministic is None:
        return not args.jit_compile
    if args.deterministic and args.jit_compile:
        raise UsageError(
            "--jit-compile and --deterministic conflict: Keras compiles no "
            "XLA under TensorFlow op determinism; drop one of them"
        )
    return args.deterministic


_SHARED_OVERRIDES = (
    "image_size",
    "batch_size",
    "dropout",
    "weight_decay",
    "label_smoothing",
    "warmup_epochs",
)


# The model options a checkpoint fixes (--weights): a variant, or any of
# the recipe's model keys.
_ARCHITECTURE_FLAGS = ("variant", *MODEL_KEYS)


def _overrides(args, keys):
    """The options the user gave among `keys`, plus --lr and --augment."""
    overrides = {
        k: getattr(args, k) for k in keys if getattr(args, k) is not None
    }
    if args.lr is not None:
        overrides["learning_rate"] = args.lr
    if args.augment == "none":
        overrides["augment"] = []
    elif args.augment is not None:
        overrides["augment"] = [
            a.strip() for a in args.augment.split(",") if a.strip()
        ]
    return overrides


def _scratch_config(args, native, examples):
    import keras_vit
    from keras_vit.recipes import choose_recipe

    config = choose_recipe(native, examples, epochs=args.epochs)
    reason = config.pop("reason")
    if args.variant:
        # A named ViT size is the paper's model: patches, class token.
        config.update(
            keras_vit.decode_variant(args.variant),
            tokenizer="patch",
            pooling="token",
            locality_attention=False,
        )
        reason += f"; --variant {args.variant}: the plain ViT"
    overrides = _overrides(args, _SHARED_OVERRIDES + _ARCHITECTURE_FLAGS[1:])
    config.update(overrides)
    if overrides:
        reason += "; given: " + ", ".join(sorted(overrides))
    return config, reason


def _finetune_config(args, native, examples):
    from keras_vit.model import read_pretrained
    from keras_vit.recipes import choose_finetune_recipe

    given = [
        "--" + k.replace("_", "-")
        for k in _ARCHITECTURE_FLAGS
        if getattr(args, k) is not None and k not in _NOT_IN_THE_ARRAYS
    ]
    if given:
        raise UsageError(
            f"--weights uses the checkpoint's architecture; drop "
            f"{', '.join(given)}"
        )
    # --num-heads: only for a .safetensors file of a non-standard size.
    checkpoint = read_pretrained(
        args.weights, progress=not args.quiet, num_heads=args.num_heads
    )
    config = choose_finetune_recipe(
        native,
        examples,
        checkpoint["config"],
        epochs=args.epochs,
        freeze_backbone=args.freeze_backbone,
        lora=bool(args.lora_rank),
    )
    reason = config.pop("reason")
    overrides = _overrides(args, _SHARED_OVERRIDES)
    config.update(overrides)
    if overrides:
        reason += "; given: " + ", ".join(sorted(overrides))
    from keras_vit.config import option_defaults

    # The checkpoint's architecture as the run records it: its dimensions
    # and family options (registers, LayerScale, attention pooling, ...).
    arch = checkpoint["config"]
    config.update(
        option_defaults(),
        **{k: arch[k] for k in MODEL_KEYS if arch.get(k) is not None},
        tokenizer="patch",
        weights=checkpoint["source"],
        freeze_backbone=args.freeze_backbone,
    )
    config.update(_not_in_the_arrays(args))
    return checkpoint, config, reason


# What a checkpoint's arrays cannot say, given with --weights: a file's head
# count, OpenAI CLIP's QuickGELU and CLIP's LayerNorm epsilon.
_NOT_IN_THE_ARRAYS = ("num_heads", "activation", "layer_norm_epsilon")


def _not_in_the_arrays(args):
    return {
        key: getattr(args, key)
        for key in _NOT_IN_THE_ARRAYS[1:]
        if getattr(args, key) is not None
    }


def _finetune_model(checkpoint, data, config, args):
    from keras_vit.model import build_pretrained

    model, report = build_pretrained(
        checkpoint,
        num_classes=data.num_classes,
        image_size=data.image_shape[:2],
        channels=data.image_shape[2],
        dropout=config["dropout"],
        drop_path_rate=args.drop_path_rate,
        class_names=[str(n) for n in data.class_names],
        progress=not args.quiet,
        **_not_in_the_arrays(args),
    )
    if args.freeze_backbone:
        for layer in model.layers:
            # The new heads: DeiT's distilled models have two.
            layer.trainable = layer.name in ("head", "head_dist")
    if config["lora"]:
        from keras_vit.lora import enable_lora

        lora = config["lora"]
        enable_lora(model, lora["rank"], lora["alpha"], mlp=lora["mlp"])
    if not args.quiet:
        resized = report["resized"].get(
            "Transformer/posembed_input/pos_embedding"
        )
        grid = ""
        if resized:
            grid = f"; position embedding {resized[0]} -> {resized[1]}"
        print(
            f"weights: {len(report['loaded'])} arrays from "
            f"{checkpoint['source']}; new head for {data.num_classes} "
            f"classes{grid}{_adapted_text(report)}",
            flush=True,
        )
    config["adapted_channels"] = report["adapted"].get("embedding/kernel")
    return model


def _adapted_text(report):
    adapted = report["adapted"].get("embedding/kernel")
    if not adapted:
        return ""
    have, want = adapted
    how = (
        f"its {have} channels' kernels summed"
        if want == 1
        else f"its {have} channels repeated and scaled by {have}/{want}"
    )
    return f"; patch embedding {have} -> {want} channels ({how})"


def _save_model(model, out):
    from keras_vit.saving import save_model_atomic

    save_model_atomic(model, os.path.join(out, "model.keras"))


def _fit(model, data, config, args):
    count = data.sizes["train"]
    if not args.quiet and "train" in data.in_memory and count >= 10_000:
        print(
            f"epoch 1 reads the {count:,} training images into memory before "
            "its first step; later epochs read them from there",
            flush=True,
        )

    with damaged_images_named(args.dataset):
        _fit_and_save(model, data, config, args)
    metrics = {}
    for split in ("test", "validation"):
        dataset = getattr(data, split)
        if dataset is not None:
            with damaged_images_named(args.dataset):
                loss, accuracy = model.evaluate(dataset, verbose=0)
            metrics[f"{split}_accuracy"] = round(float(accuracy), 4)
            metrics[f"{split}_loss"] = round(float(loss), 4)
    return metrics


def _fit_and_save(model, data, config, args):
    from keras_vit.training import training_callbacks

    model.fit(
        data.train,
        validation_data=data.validation,
        epochs=config["epochs"],
        callbacks=training_callbacks(
            args.out,
            monitor="accuracy" if data.validation is None else "val_accuracy",
            patience=args.patience,
            tensorboard=not args.no_tensorboard,
            ema=config["ema"] is not None,
        ),
        verbose=0 if args.quiet else "auto",
        shuffle=False,  # The pipeline shuffles, with the seed.
    )
    _save_model(model, args.out)


def _fit_multiworker(model, data, config, strategy, out):
    """Multi-worker training through a `strategy.run` loop.

    Keras 3's `fit` fails under MultiWorkerMirroredStrategy; see
    `keras_vit.training.fit_with_strategy_loop`. Each worker logs its epochs
    to history.csv and saves model.keras in its own --out.
    """
    import csv

    from keras_vit.training import evaluate_with_strategy_loop
    from keras_vit.training import fit_with_strategy_loop

    path = os.path.join(out, "history.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
        )

        def log(epoch, logs):
            writer.writerow(
                [epoch]
                + [logs.get(k, "") for k in ("accuracy", "loss")]
                + [logs.get(k, "") for k in ("val_accuracy", "val_loss")]
            )
            f.flush()
            print(
                f"epoch {epoch + 1}/{config['epochs']}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()),
                flush=True,
            )

        fit_with_strategy_loop(
            model,
            data.train,
            epochs=config["epochs"],
            strategy=strategy,
            global_batch_size=config["batch_size"],
            validation=data.validation,
            on_epoch_end=log,
        )
    _save_model(model, out)
    metrics = {}
    for split in ("test", "validation"):
        dataset = getattr(data, split)
        if dataset is not None:
            loss, accuracy = evaluate_with_strategy_loop(
                model, dataset, strategy
            )
            metrics[f"{split}_accuracy"] = round(float(accuracy), 4)
            metrics[f"{split}_loss"] = round(float(loss), 4)
    return metrics
