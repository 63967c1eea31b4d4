"""What the `keras-vit` and `python -m export` command lines share.

- `Parser`: usage errors in one line, exit status 2.
- `model_file_options`, `log_options`: the flags both define (`--unsafe`,
  `--verbose`), defined once, as argparse parent parsers.
- `run`: one error convention. A mistake the user can fix (a bad value, a
  missing file, an unknown name: `ValueError`, `TypeError`,
  `FileNotFoundError`, `ImportError`) prints `PROG: error: MESSAGE` and exits
  2; a failure of the machine (full disk, lost permission, a download that
  failed: `OSError`, TensorFlow's own out-of-space errors) prints the same
  line and exits 1. Anything else is a bug and keeps its traceback.
- `quiet_startup`: when a command line starts (and neither `--verbose` nor
  the user's own `TF_CPP_MIN_LOG_LEVEL` says otherwise), TensorFlow's C++
  log level is set before TensorFlow loads, its start-up banner lines are
  dropped, and known-harmless warnings are silenced.

Standard library only: it runs before TensorFlow is imported.
"""

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import warnings


class UsageError(ValueError):
    """A command-line mistake, reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One clear line instead of the usage block.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag(flag, help_text):
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(flag, action="store_true", help=help_text)
    return parent


def model_file_options():
    """A parent parser with `--unsafe` (loading `.keras` files with code)."""
    return _flag(
        "--unsafe",
        "load model files that contain serialized Python code (Lambda "
        "layers); only for files you trust",
    )


def log_options():
    """A parent parser with `--verbose` (TensorFlow's logs and warnings)."""
    return _flag(
        "--verbose",
        "show TensorFlow's, LiteRT's and the converters' own log lines and "
        "warnings (hidden by default)",
    )


def _numbers(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(
            f"expected one number or three (R,G,B), received {text!r}"
        )
    return values


def transform_options():
    """A parent parser with the evaluation transform's options
    (`keras_vit.transform.Transform`): `--resize`, `--crop-pct`,
    `--interpolation`, `--mean`, `--std`. Each one given overrides the
    model's own transform (its preset's, or its run's `config.json`)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "image transform (default: the model's own: its preset's, or the "
        "one in config.json beside it, else stretch, bilinear, [-1, 1])"
    )
    group.add_argument(
        "--resize",
        choices=("stretch", "crop"),
        help="stretch the whole image to the model's size, or crop: resize "
        "the shorter side to size/crop-pct and cut out the centre (timm)",
    )
    group.add_argument(
        "--crop-pct",
        type=float,
        help="with --resize crop: the kept fraction, in (0, 1] (timm: 0.9 "
        "at 224, 1.0 at 384)",
    )
    group.add_argument(
        "--interpolation",
        choices=("bilinear", "bicubic"),
        help="resize filter (both antialiased)",
    )
    group.add_argument(
        "--mean",
        type=_numbers,
        help="normalization mean of pixels in [0, 1]: one number or R,G,B "
        "(0.5: inputs in [-1, 1]; ImageNet: 0.485,0.456,0.406)",
    )
    group.add_argument(
        "--std",
        type=_numbers,
        help="normalization std, like --mean (0.5; ImageNet: "
        "0.229,0.224,0.225)",
    )
    return parent


def transform_from_args(args, base=None):
    """`base` (a `Transform`, default the default one) with the options
    given on the command line applied. A bad combination is a usage
    error naming the values."""
    import dataclasses

    from keras_vit.transform import Transform

    base = base or Transform()
    given = {
        key: getattr(args, key)
        for key in ("resize", "crop_pct", "interpolation", "mean", "std")
        if getattr(args, key, None) is not None
    }
    if "crop_pct" in given and given.get("resize", base.resize) != "crop":
        raise UsageError("--crop-pct needs --resize crop")
    if given.get("resize") == "crop" and "crop_pct" not in given:
        given.setdefault("crop_pct", base.crop_pct)
    try:
        return dataclasses.replace(base, **given)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run(prog, function, args, on_failure=None, failures=(), target=None):
    """Runs `function(args)` under the shared error convention.

    Returns the exit status: `function`'s own (or 0 for `None`), 2 for a
    usage error, 1 for a failed write or download and for the exception
    types in `failures` (a command's own "could not be done" errors).
    `on_failure(error)` may print more lines after a failure's error line.
    A write failure is reported as one on `target` (the output path) when
    given, whatever library raised it.
    """
    from keras_vit.files import is_write_failure
    from keras_vit.files import write_error

    def report(error, status):
        if status == 1 and target is not None and is_write_failure(error):
            error = write_error(target, error)
        print(f"{prog}: error: {_first_line(error)}", file=sys.stderr)
        if on_failure is not None and status == 1:
            on_failure(error)
        return status

    try:
        status = function(args)
    except failures as error:
        return report(error, 1)
    except BrokenPipeError:  # e.g. `keras-vit weights list | head`
        return 0
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        return report(error, 2)
    except OSError as error:  # a full disk, a failed download, ...
        return report(error, 1)
    except Exception as error:  # TensorFlow's own error for a full disk
        if not is_write_failure(error):
            raise
        return report(error, 1)
    return 0 if status is None else status


# Start-up notices of TensorFlow (written through absl before its log level
# applies) and LiteRT: they say nothing about the user's run.
_NOTICES = (
    "Created TensorFlow Lite XNNPACK delegate for CPU",
    "fully_quantize: ",
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning",
)
# Python warnings that are notices, not problems, in these commands.
_HARMLESS_WARNINGS = (
    # LiteRT's tf.lite.Interpreter deprecation notice (the export verifies
    # with ai_edge_litert's interpreter where it is installed).
    r".*tf\.lite\.Interpreter is deprecated.*",
    # Keras' notice when a tf.data pipeline is given with shuffle=True; the
    # pipelines here shuffle themselves.
    r".*shuffle.*tf\.data.*",
    r".*`build\(\)` was called on layer.*",
)
# Root-logger warnings of onnxruntime's quantizer: advice, not problems.
_HARMLESS_LOG_LINES = ("pre-processing before quantization",)
_COMMAND_MODULES = ("keras_vit", "keras_vit.cli", "export", "export.cli")
_quiet = False


class _DropHarmless(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        return not any(line in message for line in _HARMLESS_LOG_LINES)


def is_command_line():
    """Whether this process is `keras-vit` or `python -m keras_vit|export`."""
    if sys.argv and os.path.basename(sys.argv[0]).startswith("keras-vit"):
        return True
    argv = getattr(sys, "orig_argv", [])
    for i, item in enumerate(argv[:-1]):
        if item == "-m":
            return argv[i + 1] in _COMMAND_MODULES
    return False


def quiet_startup():
    """Quiets TensorFlow for a command line; does nothing in other programs.

    Called first thing by the `keras_vit` and `export` packages, so that it
    runs before TensorFlow loads.
    """
    global _quiet
    if not is_command_line() or "--verbose" in sys.argv[1:]:
        return
    _quiet = True
    logging.getLogger().addFilter(_DropHarmless())
    for pattern in _HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("tf2onnx", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return  # The user's own setting, or too late to apply one.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if os.environ.get("KERAS_VIT_LIGHT_IMPORT") == "1":
        return  # `keras-vit weights`: no TensorFlow to load.
    with without_notices():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def without_notices():
    """Passes stderr (file descriptor 2) through, less `_NOTICES` lines.

    For C++ libraries that announce themselves on stderr whatever the log
    level (TensorFlow before its logging starts, LiteRT's CPU delegate, the
    TFLite quantizer). Only in a quiet command line (`quiet_startup`);
    elsewhere stderr is left alone.
    """
    if not _quiet:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not any(mark in line for mark in _NOTICES)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


# -- what several commands share ---------------------------------------------


def number(convert, valid, expected):
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


positive_int = number(int, lambda v: v > 0, "a positive integer")


rate = number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


positive_float = number(float, lambda v: v > 0, "a positive number")


fraction = number(float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]")


momentum = number(float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")


at_least_two = number(int, lambda v: v >= 2, "an integer >= 2")


non_negative_int = number(int, lambda v: v >= 0, "a non-negative integer")


def data_options(parser):
    parser.add_argument(
        "--dataset",
        default="digits",
        help="digits (default; scikit-learn's, offline), tfds:NAME (e.g. "
        "tfds:cifar10), a folder with one sub-folder of images per class, "
        "or a .csv file of image paths and labels",
    )
    parser.add_argument(
        "--data-dir", help="TensorFlow Datasets data folder (tfds: only)"
    )
    parser.add_argument(
        "--validation-split",
        type=rate,
        default=0.1,
        help="fraction of the training data held out for validation when "
        "the dataset has no validation split (default 0.1)",
    )
    parser.add_argument(
        "--test-split",
        type=rate,
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


def model_file(path):
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


def load_model_file(path, unsafe):
    """Loads a `.keras` file, or the `model.keras` of a `train --out` folder."""
    from keras_vit.saving import load_model

    return load_model(model_file(path), unsafe=unsafe)


@contextlib.contextmanager
def damaged_images_named(dataset):
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


def source_options(args):
    """The `load_datasets` keywords of `data_options`' flags."""
    return dict(
        seed=args.seed,
        data_dir=args.data_dir,
        skip_bad_images=args.skip_bad_images,
        check_images=args.check_images,
    )
