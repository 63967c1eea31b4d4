"""The `keras-vit` command line: train, evaluate, predict and weights.

keras-vit train --dataset digits --out runs/digits
keras-vit evaluate runs/digits/model.keras --dataset digits --json
keras-vit predict runs/digits/model.keras image.png --top-k 3
keras-vit weights list
keras-vit predict photo.jpg --weights vit_tiny_patch16_224.augreg_in21k_ft_in1k
keras-vit train --dataset photos/ --weights NAME_OR_FILE --out runs/photos
"""

import argparse
import contextlib
import json
import math
import os
import sys
import time

from keras_vit.command import Parser
from keras_vit.command import UsageError
from keras_vit.command import log_options
from keras_vit.command import model_file_options
from keras_vit.command import run
from keras_vit.command import transform_from_args
from keras_vit.command import transform_options
from keras_vit.recipes import MODEL_KEYS


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
            parser.add_argument(flag, type=_non_negative_int, help=help_text)
        elif default is None or isinstance(default, float):
            parser.add_argument(flag, type=_positive_float, help=help_text)
        else:
            parser.add_argument(flag, type=_positive_int, help=help_text)


def _fine_tuning_flags(parser):
    """--layer-decay, --ema, --accumulate and the LoRA flags."""
    parser.add_argument(
        "--layer-decay",
        type=_fraction,
        help="layer-wise learning-rate decay: block i of depth trains at "
        "DECAY**(depth-i) times the rate, the embeddings lowest, the head "
        "at the full rate (default: off)",
    )
    parser.add_argument(
        "--ema",
        type=_momentum,
        help="keep an exponential moving average of the weights with this "
        "momentum; validation, best.keras and model.keras use it (default: "
        "off)",
    )
    parser.add_argument(
        "--accumulate",
        type=_at_least_two,
        help="apply the mean gradient of this many batches as one update "
        "(an effective batch of --batch-size times this; default: off)",
    )
    parser.add_argument(
        "--lora-rank",
        type=_positive_int,
        help="with --weights: freeze the checkpoint and train rank-R LoRA "
        "updates of the attention projections and the new head",
    )
    parser.add_argument(
        "--lora-alpha",
        type=_positive_float,
        help="scale the LoRA updates by ALPHA / rank (default: the rank)",
    )
    parser.add_argument(
        "--lora-mlp",
        action="store_true",
        help="with --lora-rank: also adapt the MLP layers",
    )


def _number(convert, valid, expected):
    """An argparse type: `convert(text)` that must satisfy `valid`."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(
                f"expected {expected}, received {text!r}"
            )
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_rate = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_fraction = _number(float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]")
_momentum = _number(float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")
_at_least_two = _number(int, lambda v: v >= 2, "an integer >= 2")
_non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")


def _add_data_arguments(parser):
    parser.add_argument(
        "--dataset",
        default="digits",
        help="digits (default; scikit-learn's, offline), tfds:NAME (e.g. "
        "tfds:cifar10) or a folder with one sub-folder of images per class",
    )
    parser.add_argument(
        "--data-dir", help="TensorFlow Datasets data folder (tfds: only)"
    )
    parser.add_argument(
        "--validation-split",
        type=_rate,
        default=0.1,
        help="fraction of the training data held out for validation when "
        "the dataset has no validation split (default 0.1)",
    )
    parser.add_argument(
        "--test-split",
        type=_rate,
        default=0.2,
        help="fraction held out for testing when the dataset has no test "
        "split (default 0.2)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of splits, shuffling, "
        "initialization and augmentation (default 0)",
    )
    parser.add_argument(
        "--check-images",
        choices=("headers", "decode"),
        default="headers",
        help="how a folder's files are checked before training: headers "
        "(default: the start and end of each file, in parallel, doubtful "
        "ones decoded; cached per file) or decode (every file decoded)",
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip undecodable image files (counted in a warning) instead "
        "of stopping with their names",
    )


def build_parser():
    from keras_vit.recipes import AUGMENTATIONS
    from keras_vit.recipes import PRECISIONS
    from keras_vit.recipes import STRATEGIES
    from keras_vit.variants import VARIANTS

    parser = Parser(
        prog="keras-vit",
        description="Train, evaluate, run and export Vision Transformers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    logs = log_options()
    model_file = model_file_options()
    transform = transform_options()

    train = commands.add_parser(
        "train",
        parents=[logs, transform],
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
    _add_data_arguments(train)
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
    for flag, help_text in (
        ("--image-size", "image side in pixels"),
        ("--epochs", "training epochs"),
        ("--batch-size", "global batch size"),
        ("--warmup-epochs", "epochs of linear learning-rate warm-up"),
        ("--patience", "stop after this many epochs without improvement"),
    ):
        train.add_argument(flag, type=_positive_int, help=help_text)
    train.add_argument("--dropout", type=_rate, help="default from the recipe")
    train.add_argument("--drop-path-rate", type=_rate, default=0.0)
    train.add_argument("--lr", type=_positive_float, help="peak learning rate")
    train.add_argument(
        "--weight-decay", type=float, help="default from the recipe (0.05)"
    )
    train.add_argument(
        "--label-smoothing", type=_rate, help="default from the recipe (0.1)"
    )
    train.add_argument("--clipnorm", type=_positive_float, default=1.0)
    train.add_argument(
        "--augment",
        help=f"comma-separated Keras augmentations: {', '.join(AUGMENTATIONS)}"
        " (default: crop,flip for colour images, none for grayscale; "
        "'none' for none)",
    )
    train.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="dtype policy; auto (default): mixed_bfloat16 where the "
        "hardware multiplies bfloat16 natively (GPUs from compute "
        "capability 8.0; AMX or AVX-512 BF16 CPUs, for models of width 128 "
        "and more), mixed_float16 on older tensor-core GPUs, else float32",
    )
    train.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile train steps with XLA (default off: on CPUs it is no "
        "faster in float32 and slower in bfloat16, see BENCHMARKS.md); "
        "needs --no-deterministic, which it implies when not given",
    )
    train.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="TensorFlow op determinism: the same command gives bitwise the "
        "same weights on the same machine (default on, off with "
        "--jit-compile: XLA does not run under it). On GPUs deterministic "
        "kernels are slower; --no-deterministic trades that for speed",
    )
    train.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="tf.distribute strategy (default auto)",
    )
    train.add_argument(
        "--no-tensorboard", action="store_true", help="no TensorBoard logs"
    )
    train.add_argument(
        "--quiet", action="store_true", help="no Keras progress output"
    )

    evaluate = commands.add_parser(
        "evaluate",
        parents=[logs, model_file, transform],
        help="accuracy and loss of a model on a dataset",
        description="Accuracy and loss of a .keras model. On the dataset it "
        "was trained on (config.json beside the model), or on digits and "
        "tfds: datasets: the test split (the one `train` held out for the "
        "same --seed and --test-split). On any other image folder: every "
        "image in it. --split chooses.",
    )
    evaluate.add_argument(
        "model", help="a .keras file, or the --out folder of a training run"
    )
    _add_data_arguments(evaluate)
    evaluate.add_argument(
        "--split",
        choices=("test", "validation", "train", "all"),
        help="default: all for a folder the model was not trained on, "
        "else test",
    )
    evaluate.add_argument("--batch-size", type=_positive_int, default=128)
    evaluate.add_argument("--json", action="store_true", help="print JSON")

    predict = commands.add_parser(
        "predict",
        parents=[logs, model_file, transform],
        help="top-k classes of images",
        description="Top-k class names and probabilities for each image. "
        "Images are made into model inputs by the model's transform (a "
        "preset's own, or the one its training run recorded in config.json; "
        "the options below override it), as `evaluate` and the exported "
        "files do.",
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="MODEL_OR_IMAGE",
        help="a .keras file, then image files (with --weights: image files "
        "only)",
    )
    predict.add_argument(
        "--weights",
        help="predict with a pretrained checkpoint instead of a .keras file: "
        "a preset name (ImageNet-1k presets print class names) or a .npz "
        "or .safetensors file",
    )
    predict.add_argument("--top-k", type=_positive_int, default=5)
    predict.add_argument(
        "--labels",
        help="JSON list of class names (default: labels.json beside the model)",
    )
    predict.add_argument("--json", action="store_true", help="print JSON")
    attention = commands.add_parser(
        "attention",
        parents=[logs, model_file, transform],
        help="pictures of where the model looks",
        description="For each image, write NAME_rollout.png (the image and "
        "its attention rollout from the class token, or from the mean patch "
        "token for pooling='gap' models) and NAME_heads.png (the last "
        "block's class-token attention, one panel per head); and "
        "mean_attention_distance.png over all images. Images are "
        "preprocessed as `predict` does.",
    )
    attention.add_argument("model", help="a .keras file of a keras-vit model")
    attention.add_argument("images", nargs="+", help="image files")
    attention.add_argument("--out", required=True, help="output folder")
    attention.add_argument(
        "--head-fusion", choices=("mean", "max", "min"), default="mean"
    )
    attention.add_argument(
        "--discard-ratio",
        type=_rate,
        default=0.0,
        help="fraction of the weakest attention dropped before rollout",
    )
    attention.add_argument(
        "--overwrite", action="store_true", help="replace existing PNGs"
    )
    _add_weights_command(commands, logs)
    commands.add_parser(
        "export",
        add_help=False,
        help="SavedModel, TFLite and ONNX files, verified (keras-vit export "
        "--help; the same as python -m export)",
    )
    return parser


def _add_weights_command(commands, logs):
    weights = commands.add_parser(
        "weights",
        help="pretrained checkpoints: list, download, path",
        description="The registry of pretrained ViT checkpoints "
        "(keras_vit.presets): the original and AugReg releases from "
        "gs://vit_models over HTTPS and timm's Hugging Face repositories. "
        "Files are cached under $KERAS_VIT_HOME/weights (default "
        "~/.keras/keras_vit/weights) or in the Hugging Face cache; "
        "KERAS_VIT_OFFLINE=1 never touches the network.",
    )
    actions = weights.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[logs], help="list the presets"
    )
    listing.add_argument("--variant", help="only this ViT size, e.g. B/16")
    listing.add_argument(
        "--labels",
        choices=("imagenet-1k", "imagenet-21k"),
        help="only presets whose head has this label set",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    download = actions.add_parser(
        "download",
        parents=[logs],
        help="download a preset's file into the cache",
    )
    download.add_argument("name")
    download.add_argument(
        "--quiet", action="store_true", help="no progress bar"
    )
    where = actions.add_parser(
        "path",
        parents=[logs],
        help="print the cached file of a preset (exit 1 if absent)",
    )
    where.add_argument("name")


def _model_file(path):
    """`path`, or the `model.keras` in it when it is a `train --out` folder."""
    if not os.path.isdir(path):
        return path
    inside = os.path.join(path, "model.keras")
    if not os.path.isfile(inside):
        raise FileNotFoundError(
            f"No model file at the given path: {path!r} is a folder without "
            "a model.keras (expected a .keras file or the --out folder of "
            "`keras-vit train`)"
        )
    return inside


def _load_model(path, unsafe):
    """Loads a `.keras` file, or the `model.keras` of a `train --out` folder."""
    from keras_vit.saving import load_model

    return load_model(_model_file(path), unsafe=unsafe)


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


def run_train(args):
    from keras_vit.files import folder_lock

    args.deterministic = _deterministic(args)  # Usage errors before --out.
    # One run per folder: a second one exits 1 naming the holder.
    with folder_lock(args.out):
        return _train(args)


def _train(args):
    import keras

    import keras_vit
    from keras_vit.data import count_examples
    from keras_vit.data import load_datasets
    from keras_vit.data import native_image_shape
    from keras_vit.files import write_json
    from keras_vit.recipes import MODEL_KEYS
    from keras_vit.training import compile_for_training
    from keras_vit.training import distribution_strategy
    from keras_vit.training import hardware_precision
    from keras_vit.training import set_determinism

    resuming = _check_out(args.out, args.overwrite)
    set_determinism(args.seed, ops=args.deterministic)
    strategy = distribution_strategy(args.strategy)

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
    data = load_datasets(
        args.dataset,
        image_size=config["image_size"],
        batch_size=config["batch_size"],
        validation_split=args.validation_split,
        test_split=args.test_split,
        seed=args.seed,
        augment=config["augment"],
        channels=config.get("channels"),
        one_hot=True,
        data_dir=args.data_dir,
        skip_bad_images=args.skip_bad_images,
        check_images=args.check_images,
        progress=not args.quiet,
        input_range=transform,
    )
    config["image_size"] = data.image_shape[0]
    steps_per_epoch = max(1, -(-data.sizes["train"] // config["batch_size"]))
    total_steps = config["epochs"] * steps_per_epoch

    precision = args.precision
    if precision == "auto":
        precision = hardware_precision(config["hidden_dim"])
    keras.config.set_dtype_policy(precision)
    if not args.quiet:
        print(f"recipe: {reason}", flush=True)
    with strategy.scope():
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

    with _damaged_images_named(args.dataset):
        _fit_and_save(model, data, config, args)
    metrics = {}
    for split in ("test", "validation"):
        dataset = getattr(data, split)
        if dataset is not None:
            with _damaged_images_named(args.dataset):
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


@contextlib.contextmanager
def _damaged_images_named(dataset):
    """A file that passed the header check but fails to decode: one line
    saying how to find it, not TensorFlow's iterator traceback."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        text = str(error)
        if not any(m in text for m in _DECODE_ERRORS):
            raise
        raise UsageError(
            f"An image file of {dataset!r} cannot be decoded although its "
            "header and end are intact (damaged in the middle); run again "
            "with --check-images decode to name it (then fix or remove it, "
            "or add --skip-bad-images)"
        ) from None


# TensorFlow's messages for image data it cannot decode.
_DECODE_ERRORS = (
    "Invalid PNG data",
    "Invalid JPEG data",
    "jpeg::Uncompress failed",
    "Invalid GIF data",
    "Invalid BMP data",
    "Unknown image file format",
)


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


def _trained_on(model_path):
    """The --dataset of the run that wrote `model_path`, or `None`."""
    path = os.path.join(
        os.path.dirname(os.path.abspath(model_path)), "config.json"
    )
    try:
        with open(path) as f:
            return json.load(f).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None


def _evaluation_split(args):
    """`(split, why)`: --split, or the whole of a folder not trained on."""
    if args.split is not None:
        return args.split, "--split"
    if not os.path.isdir(args.dataset):
        return "test", "the dataset's test split"
    trained_on = _trained_on(args.model)
    if trained_on is None:
        return "all", "a folder; no config.json beside the model names its own"
    if os.path.isdir(trained_on) and os.path.samefile(trained_on, args.dataset):
        return "test", "the test split held out from the training folder"
    return "all", f"a folder the model was not trained on ({trained_on})"


def run_evaluate(args):
    import keras

    from keras_vit.data import load_datasets
    from keras_vit.model import outputs_probabilities
    from keras_vit.saving import class_names_for
    from keras_vit.saving import transform_for

    model = _load_model(args.model, args.unsafe)
    transform = transform_from_args(
        args, transform_for(_model_file(args.model))
    )
    _, height, width, channels = model.input_shape
    num_classes = model.output_shape[-1]
    split, why = _evaluation_split(args)
    whole = split == "all"
    data = load_datasets(
        args.dataset,
        image_size=(height, width),
        channels=channels,
        batch_size=args.batch_size,
        validation_split=0.0 if whole else args.validation_split,
        test_split=0.0 if whole else args.test_split,
        seed=args.seed,
        one_hot=True,
        data_dir=args.data_dir,
        skip_bad_images=args.skip_bad_images,
        check_images=args.check_images,
        progress=not args.json,
        input_range=transform,
    )
    if data.num_classes != num_classes:
        raise UsageError(
            f"The model predicts {num_classes} classes but {args.dataset!r} "
            f"has {data.num_classes}"
        )
    names = class_names_for(model, None, args.model)
    if (
        names is not None
        and os.path.isdir(args.dataset)
        and [str(n) for n in names] != [str(n) for n in data.class_names]
    ):
        raise UsageError(
            f"The class folders of {args.dataset!r} "
            f"({', '.join(map(str, data.class_names))}) are not the model's "
            f"classes ({', '.join(map(str, names))})"
        )
    dataset = data.train if whole else getattr(data, split)
    if dataset is None:
        raise UsageError(f"{args.dataset!r} has no {split} split")
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    with _damaged_images_named(args.dataset):
        loss, accuracy = model.evaluate(dataset, verbose=0)
    result = {
        "dataset": args.dataset,
        "split": split,
        "examples": data.sizes["train" if whole else split],
        "accuracy": round(float(accuracy), 4),
        "loss": round(float(loss), 4),
        "why": why,
    }
    if args.json:
        print(json.dumps(result))
    else:
        scored = (
            f"all {result['examples']} images of {args.dataset}"
            if whole
            else f"the {split} split of {args.dataset} "
            f"({result['examples']} examples)"
        )
        print(
            f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} "
            f"on {scored}: {why}"
        )
    return 0


def _read_images(paths, height, width, channels, transform=None):
    from keras_vit.preprocessing import BadImageError
    from keras_vit.preprocessing import read_images

    try:
        return read_images(paths, (height, width), channels, transform)
    except BadImageError as error:
        raise UsageError(str(error)) from None


def _pretrained_for_predict(weights, progress):
    from keras_vit.model import build_pretrained
    from keras_vit.model import read_pretrained

    checkpoint = read_pretrained(weights, progress=progress)
    if not checkpoint["config"]["num_classes"]:
        raise UsageError(
            f"The checkpoint {weights!r} has no classification head; "
            "fine-tune it first (keras-vit train --weights ...)"
        )
    model, _ = build_pretrained(checkpoint)
    return model, checkpoint["transform"]


def run_predict(args):
    import numpy as np

    from keras_vit.model import outputs_probabilities
    from keras_vit.saving import class_names_for
    from keras_vit.saving import transform_for

    if args.weights:
        # --json keeps stdout to the JSON document.
        model, base = _pretrained_for_predict(args.weights, not args.json)
        images_paths = args.inputs
        model_path = None
    else:
        if len(args.inputs) < 2:
            raise UsageError(
                "give a .keras model file and at least one image, or "
                "--weights NAME and images"
            )
        model_path, images_paths = args.inputs[0], args.inputs[1:]
        model_path = _model_file(model_path)  # labels.json lies beside it
        model = _load_model(model_path, args.unsafe)
        base = transform_for(model_path)
    transform = transform_from_args(args, base)
    _, height, width, channels = model.input_shape
    num_classes = model.output_shape[-1]
    names = class_names_for(model, args.labels, model_path)
    if names is None:
        names = [str(i) for i in range(num_classes)]
    images = _read_images(images_paths, height, width, channels, transform)
    outputs = np.asarray(model.predict(images, verbose=0), dtype=np.float64)
    if outputs_probabilities(model):
        probs = outputs  # the head's own softmax; no second one
    else:
        probs = np.exp(outputs - outputs.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
    k = min(args.top_k, num_classes)
    results = []
    for path, row in zip(images_paths, probs):
        top = np.argsort(-row)[:k]
        results.append(
            {
                "image": path,
                "top_k": [
                    {"label": names[i], "probability": round(float(row[i]), 4)}
                    for i in top
                ],
            }
        )
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            ranked = ", ".join(
                f"{t['label']} {t['probability']:.3f}" for t in result["top_k"]
            )
            print(f"{result['image']}: {ranked}")
    return 0


def run_weights(args):
    from keras_vit import presets
    from keras_vit.variants import VARIANTS

    if args.action == "list":
        if args.variant is not None and args.variant not in VARIANTS:
            raise UsageError(
                f"--variant must be one of {', '.join(VARIANTS)}. "
                f"Received: {args.variant!r}"
            )
        names = presets.list_presets(args.variant, args.labels)
        if args.json:
            rows = []
            for name in names:
                row = presets.get_preset(name).to_dict()
                row["cached"] = presets.cached_path(name) is not None
                rows.append(row)
            print(json.dumps(rows, indent=2))
            return 0
        _print_preset_table(presets, names)
        return 0
    preset = presets.get_preset(args.name)
    if args.action == "download":
        path = presets.preset_path(preset.name, progress=not args.quiet)
        print(path)
        return 0
    path = presets.cached_path(preset.name)
    if path is None:
        print(
            f"keras-vit weights: {preset.name!r} is not cached; run "
            f"`keras-vit weights download {preset.name}` (source: "
            f"{preset.source})",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


def _print_preset_table(presets, names):
    """One row a preset; every column is what its header says."""
    columns = (
        ("name", "<"),
        ("variant", "<"),
        ("image px", ">"),
        ("classes", ">"),
        ("top-1 %", ">"),
        ("file size", ">"),
        ("eval transform", "<"),
        ("cached", "<"),
    )
    rows = []
    for name in names:
        p = presets.get_preset(name)
        t = p.transform
        rows.append(
            (
                name,
                p.variant,
                str(p.image_size),
                str(p.num_classes),
                f"{p.accuracy:.1f}" if p.accuracy else "-",
                p.size or "-",
                "stretch"
                if t.resize == "stretch"
                else f"crop {t.crop_pct:g} {t.interpolation}",
                "yes" if presets.cached_path(name) else "no",
            )
        )
    widths = [
        max([len(header)] + [len(row[i]) for row in rows])
        for i, (header, _) in enumerate(columns)
    ]
    for row in [tuple(h for h, _ in columns)] + rows:
        print(
            "  ".join(
                f"{cell:{align}{width}}"
                for cell, (_, align), width in zip(row, columns, widths)
            ).rstrip()
        )
    print(
        "file size: as the source publishes it (- where it publishes none); "
        "eval transform: keras_vit.presets.Preset.transform"
    )


def run_attention(args):
    from keras_vit.attention import attention_maps
    from keras_vit.attention import attention_rollout
    from keras_vit.attention import class_token_attention
    from keras_vit.attention import mean_attention_distance
    from keras_vit.attention import model_grid
    from keras_vit.attention import model_patch_size
    from keras_vit.files import atomic_path
    from keras_vit.model import vit_config
    from keras_vit.plots import plot_head_maps
    from keras_vit.plots import plot_mean_attention_distance
    from keras_vit.plots import plot_rollout
    from keras_vit.saving import transform_for

    model = _load_model(args.model, args.unsafe)
    transform = transform_from_args(
        args, transform_for(_model_file(args.model))
    )
    grid = model_grid(model)
    _, height, width, channels = model.input_shape
    stems = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    if len(set(stems)) != len(stems):
        raise UsageError(
            "Image file names must differ (outputs are named by them)"
        )
    targets = [
        os.path.join(args.out, f"{stem}_{kind}.png")
        for stem in stems
        for kind in ("rollout", "heads")
    ] + [os.path.join(args.out, "mean_attention_distance.png")]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not args.overwrite:
        raise UsageError(
            f"{existing[0]!r} exists; pass --overwrite to replace it"
        )
    images = _read_images(args.images, height, width, channels, transform)
    maps = attention_maps(model, images)
    pooling = vit_config(model)["pooling"]
    rollouts = attention_rollout(
        maps,
        head_fusion=args.head_fusion,
        discard_ratio=args.discard_ratio,
        grid_size=grid,
        pooling=pooling,
    )
    heads = class_token_attention(maps, grid_size=grid)
    os.makedirs(args.out, exist_ok=True)
    figures = []
    for stem, image, rollout, head_maps in zip(stems, images, rollouts, heads):
        figures.append(
            (
                plot_rollout(
                    image, rollout, title=f"rollout ({args.head_fusion})"
                ),
                f"{stem}_rollout.png",
            )
        )
        figures.append(
            (
                plot_head_maps(
                    head_maps, image, title="last block, class token"
                ),
                f"{stem}_heads.png",
            )
        )
    patch = model_patch_size(model)
    distances = mean_attention_distance(maps, patch, grid_size=grid)
    figures.append(
        (
            plot_mean_attention_distance(distances, patch_size=patch[0]),
            "mean_attention_distance.png",
        )
    )
    for figure, name in figures:
        path = os.path.join(args.out, name)
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp)
        print(path)
    return 0


def main(argv=None):
    """Runs the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        from export.cli import main as export_main

        return export_main(argv[1:], prog="keras-vit export")
    args = build_parser().parse_args(argv)
    command = {
        "train": run_train,
        "evaluate": run_evaluate,
        "predict": run_predict,
        "attention": run_attention,
        "weights": run_weights,
    }[args.command]
    target = getattr(args, "out", None)
    return run(f"keras-vit {args.command}", command, args, target=target)


if __name__ == "__main__":
    sys.exit(main())
