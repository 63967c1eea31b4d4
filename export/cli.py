"""`python -m export`: every format in one command, verified, with a report.

python -m export MODEL.keras --to DIR [--formats saved_model,tflite,onnx]
    [--quantize float16,dynamic,int8] [--representative-data PATH]
    [--opset 17] [--overwrite] [--force] [--bench]
python -m export bench DIR [--model MODEL.keras] [--batch-size 8]
"""

import argparse
import datetime
import hashlib
import os
import sys

import numpy as np

from export._files import check_target
from export._memory import ExportMemoryError
from export._memory import check_memory
from export._memory import check_tflite_size
from export._metadata import describe
from export._model import exportable_model
from export._model import image_spec
from export._model import load_model
from export._model import output_names
from export._model import takes_any_size
from export.onnx_model import export_onnx
from export.quantize import AccuracyBudgetError
from export.quantize import format_measurements
from export.samples import as_image_files
from export.samples import folder_files
from export.saved_model import export_saved_model
from export.tflite import DEFAULT_MIN_TOP1_AGREEMENT
from export.tflite import export_tflite
from export.verify import VerificationError
from export.verify import artifact_size
from export.verify import check_samples
from export.verify import default_samples
from export.verify import format_table
from keras_vit.command import Parser
from keras_vit.command import log_options
from keras_vit.command import model_file_options
from keras_vit.command import run
from keras_vit.command import transform_from_args
from keras_vit.command import transform_options
from keras_vit.files import publish
from keras_vit.files import staging_path
from keras_vit.files import write_json
from keras_vit.preprocessing import IMAGE_EXTENSIONS
from keras_vit.preprocessing import BadImageError
from keras_vit.preprocessing import list_images
from keras_vit.preprocessing import read_images
from keras_vit.saving import class_names_for

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZE = ("float16", "dynamic", "int8")
ONNX_QUANTIZE = ("dynamic", "int8")


def _csv(choices, name):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"{name} must be a comma-separated list of "
                f"{', '.join(choices)}; received {text!r}"
            )
        return list(dict.fromkeys(items))

    return parse


def _input_range(text):
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input-range must be two numbers LOW,HIGH; received {text!r}"
        ) from None
    return low, high


def load_images(
    path, image_shape, input_range=(-1.0, 1.0), limit=None, split="train"
):
    """Images from a dataset name, a `.npy`/`.npz` array or image files.

    `"digits"`, `"tfds:NAME"` and `.csv` files of paths and labels are
    read through their `keras_vit.sources` adapter (the given `split`,
    preprocessed as `keras-vit train` does). Arrays are used as
    they are. Image files in a folder (at any depth) are decoded, resized
    to the model's size, converted to its channel count and scaled from
    [0, 255] to `input_range`. Beyond `limit` images, arrays and folders
    give a seeded sample spread over all of them (not the first ones, which
    in a class-by-class listing would be one class).
    """
    if _labelled_source(path):
        return _dataset_images(path, image_shape, input_range, limit, split)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No image data at the given path: {path!r}")
    if os.path.isfile(path) and path.endswith(".npy"):
        array = np.load(path, allow_pickle=False)
    elif os.path.isfile(path) and path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            key = "images" if "images" in data.files else data.files[0]
            array = data[key]
    elif os.path.isdir(path):
        files = list_images(path)
        if not files:
            raise ValueError(
                "The folder holds no image files "
                f"({', '.join(IMAGE_EXTENSIONS)}): {path!r}"
            )
        if limit is not None and len(files) > limit:
            # A seeded sample of the whole folder: the first files of a
            # sorted listing would all come from one class, and a
            # calibration or verification set of one class says little.
            files = [files[i] for i in _sample(len(files), limit)]
        height, width, channels = image_shape
        try:
            array = read_images(files, (height, width), channels, input_range)
        except BadImageError as error:
            raise ValueError(str(error)) from None
    else:
        raise ValueError(
            "Image data must be a .npy or .npz file or a folder of images. "
            f"Received: {path!r}"
        )
    if limit is not None and len(array) > limit:
        array = array[_sample(len(array), limit)]
    return check_samples(array, image_shape, name=path)


def _sample(count, limit):
    """Sorted indices of a seeded uniform sample of `limit` of `count`."""
    return np.sort(np.random.default_rng(0).choice(count, limit, False))


def _dataset_images(source, image_shape, input_range, limit, split):
    from keras_vit.data import load_datasets

    data = load_datasets(
        source,
        image_size=image_shape[:2],
        channels=image_shape[2],
        batch_size=64,
        input_range=input_range,
    )
    dataset = getattr(data, split) or data.train
    images = []
    for batch, _ in dataset:
        images.append(batch.numpy())
        if limit is not None and sum(map(len, images)) >= limit:
            break
    return check_samples(np.concatenate(images)[:limit], image_shape, source)


def _sha256(path):
    if os.path.isdir(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jobs(formats, quantize):
    if "saved_model" in formats:
        yield "saved_model", "saved_model", None
    if "tflite" in formats:
        yield "model.tflite", "tflite", None
        for mode in quantize:
            yield f"model.{mode}.tflite", "tflite", mode
    if "onnx" in formats:
        yield "model.onnx", "onnx", None
        for mode in quantize:
            if mode in ONNX_QUANTIZE:
                yield f"model.{mode}.onnx", "onnx", mode


def _labelled_source(path):
    """Whether `path` names a dataset with its own splits or labels:
    digits, `tfds:NAME` or a `.csv` file of paths and labels."""
    return (
        path == "digits"
        or path.startswith("tfds:")
        or (path.lower().endswith(".csv") and os.path.isfile(path))
    )


def _has_class_folders(path):
    return os.path.isdir(path) and any(
        os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
        for d in os.listdir(path)
    )


def labelled_images(path, image_shape, input_range, class_names, limit=1000):
    """`(images, labels)` to measure accuracy on; `labels` may be `None`.

    `digits` and `tfds:NAME` give their test split, a folder of class
    sub-folders or a `.csv` file a seeded sample of its images with their
    labels (matched to `class_names` by name where the model has them);
    other sources give images only.
    """
    from keras_vit.data import load_datasets

    dataset = _labelled_source(path) and not path.lower().endswith(".csv")
    if not (_labelled_source(path) or _has_class_folders(path)):
        return load_images(path, image_shape, input_range, limit), None
    data = load_datasets(
        path,
        image_size=image_shape[:2],
        channels=image_shape[2],
        batch_size=256,
        input_range=input_range,
        validation_split=0.1 if dataset else 0.0,
        test_split=0.2 if dataset else 0.0,
    )
    split = data.test if dataset and data.test is not None else data.train
    images, labels = [], []
    for batch, label in split:
        images.append(batch.numpy())
        labels.append(label.numpy())
        if sum(map(len, images)) >= limit:
            break
    images = np.concatenate(images)[:limit]
    labels = np.concatenate(labels)[:limit]
    names = data.class_names
    if class_names and set(names) <= set(class_names):
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.asarray([index[names[i]] for i in labels])
    return images, labels


def _choose_int8(
    fmt, model, representative, evaluation, samples, path, args, options
):
    """Builds the int8 candidates, keeps the best within budget at `path`.

    Each candidate is exported and verified on `samples` like any file,
    then measured on `evaluation`; the chosen one is moved to `path`, so
    its verification report is the file's. Returns `(report, chosen
    measurement, measurements)`.
    """
    import tempfile

    from export._common import to_pixels
    from export.quantize import choose

    images, labels = evaluation
    reference = np.argmax(np.asarray(model(images, training=False)), -1)
    if args.preprocessing:
        images = to_pixels(images, args.input_range)
    exporter = export_tflite if fmt == "tflite" else export_onnx
    reports = {}

    def build(keep_float, candidate):
        reports[candidate] = exporter(
            model,
            candidate,
            quantize="int8",
            representative_data=representative,
            samples=samples,
            min_top1_agreement=args.min_top1_agreement,
            force=True,  # Measured first; refused below if it failed.
            keep_float=keep_float,
            **options,
        )

    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as scratch:
        chosen, best, measurements = choose(
            build,
            images,
            labels,
            reference,
            args.max_accuracy_drop,
            scratch,
            "." + fmt,
        )
        publish(chosen, path)
        if os.path.isfile(chosen + ".data"):
            publish(chosen + ".data", path + ".data")
    report = reports[chosen]
    report.forced = report.forced and args.force
    return report, best, measurements


def run_export(args, log):
    """Exports, verifies and publishes every file asked for; returns
    `(reports, passed, model)`. Nothing is published unless all pass."""
    target = check_target(args.to, args.overwrite)
    model, shape = _export_model(args, log)
    inputs = _export_inputs(args, model, shape)
    options = {
        "preprocessing": args.preprocessing,
        "input_range": args.input_range,
        "class_names": inputs["class_names"],
    }
    reports, artifacts, choices = [], {}, {}
    with staging_path(target, directory=True) as staging:
        for name, fmt, mode in _jobs(args.formats, args.quantize):
            path = os.path.join(staging, name)
            log(f"exporting {name} ...")
            try:
                report, choice = _export_one(
                    fmt, mode, model, path, inputs, args, options, log
                )
            except VerificationError as error:
                report, choice = error.report, None
            if choice is not None:
                choices[name] = choice
            report.path = os.path.join(target, name)
            reports.append(report)
            if os.path.exists(path):
                artifacts[name] = {
                    "file": name,
                    "format": fmt,
                    "quantize": mode,
                    "bytes": artifact_size(path),
                    "sha256": _sha256(path),
                }
        passed = all(r.passed or r.forced for r in reports)
        report_data = {
            "passed": passed,
            "samples": int(len(inputs["samples"])),
            "compared": sorted({r.compared for r in reports}),
            "int8_choice": choices,
            "reports": [r.to_dict() for r in reports],
        }
        manifest = _manifest(
            args, model, shape, inputs["class_names"], artifacts
        )
        for name, data in (
            ("report.json", report_data),
            ("manifest.json", manifest),
        ):
            write_json(os.path.join(staging, name), data)
        if passed:
            publish(staging, target)
    return reports, passed, model


def _export_model(args, log):
    """`(model, image shape)`: the `.keras` file loaded as the exporters
    take it, its transform in `args.input_range`, every export checked to
    fit before anything is read or written."""
    tflite_only = [m for m in args.quantize if m not in ONNX_QUANTIZE]
    if "tflite" not in args.formats and (
        tflite_only or (args.quantize and "onnx" not in args.formats)
    ):
        raise ValueError(
            "--quantize applies to TFLite (float16, dynamic, int8) and ONNX "
            "(dynamic, int8); add tflite (or onnx) to --formats. Received: "
            f"--formats {','.join(args.formats)} --quantize "
            f"{','.join(args.quantize)}"
        )
    from keras_vit.saving import load_model as load_keras_model

    loaded = load_keras_model(args.model, unsafe=args.unsafe)
    model = exportable_model(loaded, any_size=True)
    shape = image_spec(model)
    patch = takes_any_size(model)
    if patch is not None:
        log(
            "the model takes any image size (multiples of "
            f"{patch[0]}x{patch[1]}): so do the float32 inputs of the "
            "SavedModel (serving_tensor) and of ONNX files written with "
            f"--no-preprocessing; TFLite takes its trained {shape[0]}x"
            f"{shape[1]}, and raw images are resized to it"
        )
    args.input_range = _model_transform(args)
    jobs = [(fmt, mode) for _, fmt, mode in _jobs(args.formats, args.quantize)]
    for fmt, mode in jobs:
        if fmt == "tflite":
            check_tflite_size(model, mode)
    check_memory(model, jobs)
    return model, shape


def _export_inputs(args, model, shape):
    """The calibration images (`representative`), the verification
    `samples`, the images int8 candidates are measured on (`evaluation`)
    and the `class_names`, read once for every file."""
    representative = None
    if args.representative_data:
        representative = load_images(
            args.representative_data, shape, args.input_range, limit=200
        )
    if "int8" in args.quantize and representative is None:
        raise ValueError(
            "--quantize int8 needs --representative-data (images from the "
            "training set) to calibrate activation ranges"
        )
    source = args.samples or args.representative_data
    if args.preprocessing and source and os.path.isdir(source):
        # Image files are verified on as they are, not as arrays.
        samples = folder_files(source, limit=64)
    elif args.samples:
        samples = load_images(
            args.samples, shape, args.input_range, limit=400, split="test"
        )
    elif representative is not None:
        samples = representative[:64]
    else:
        samples = None if args.preprocessing else default_samples(shape)
    if args.preprocessing:
        # Read once: files (given, or written from the arrays) for every
        # artifact's end-to-end check.
        samples = as_image_files(samples, shape, args.input_range)
    # --labels, else the names the model carries, else labels.json beside.
    class_names = class_names_for(model, args.labels, args.model)
    outputs = model.outputs[0].shape[-1]
    if class_names is not None and len(class_names) != outputs:
        raise ValueError(
            f"The model has {outputs} outputs but {len(class_names)} class "
            "names were found" + (f" in {args.labels!r}" if args.labels else "")
        )
    evaluation = None
    if "int8" in args.quantize:
        evaluation = labelled_images(
            args.samples or args.representative_data,
            shape,
            args.input_range,
            class_names,
        )
    return {
        "representative": representative,
        "samples": samples,
        "evaluation": evaluation,
        "class_names": class_names,
    }


def _export_one(fmt, mode, model, path, inputs, args, options, log):
    """Writes one verified file at `path`; returns `(report, the int8
    choice's record or None)`."""
    samples = inputs["samples"]
    representative = inputs["representative"]
    if mode == "int8":
        log(f"measuring int8 candidates for {os.path.basename(path)} ...")
        evaluation = inputs["evaluation"]
        report, best, measured = _choose_int8(
            fmt, model, representative, evaluation, samples, path, args, options
        )
        log(format_measurements(measured))
        return report, {
            "max_accuracy_drop": args.max_accuracy_drop,
            "labelled": evaluation[1] is not None,
            "images": int(len(evaluation[0])),
            "chosen": best.candidate,
            "chosen_keep_float": list(best.keep_float),
            "candidates": [m.to_dict() for m in measured],
        }
    if fmt == "saved_model":
        return export_saved_model(model, path, samples=samples, **options), None
    checked = dict(
        samples=samples,
        min_top1_agreement=args.min_top1_agreement,
        force=args.force,
        **options,
    )
    if fmt == "tflite":
        return export_tflite(model, path, mode, representative, **checked), None
    report = export_onnx(
        model,
        path,
        args.opset,
        quantize=mode,
        representative_data=representative,
        **checked,
    )
    return report, None


def _model_transform(args):
    """The transform the model's inputs were made with: --input-range, or
    the run's config.json (`keras_vit.saving.transform_for`), with the
    transform options given applied."""
    from keras_vit.saving import transform_for
    from keras_vit.transform import Transform

    if args.input_range is not None:
        base = Transform.from_input_range(args.input_range)
    else:
        base = transform_for(args.model)
    return transform_from_args(args, base)


def _manifest(args, model, shape, class_names, artifacts):
    import keras_vit

    return {
        "keras_vit_version": keras_vit.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "source_model": {
            "path": os.path.abspath(args.model),
            "sha256": _sha256(args.model),
        },
        **describe(
            shape,
            output_names(model),
            class_names,
            args.preprocessing,
            args.input_range,
            any_size=takes_any_size(model),
        ),
        "artifacts": artifacts,
    }


def run_bench(args):
    from export.bench import benchmark
    from export.bench import format_bench

    if args.tune:
        return _run_tune(args)
    if args.threads is not None and len(args.threads) != 1:
        raise ValueError(
            "Without --tune, --threads takes one thread count for LiteRT and "
            f"onnxruntime. Received: --threads {args.threads}"
        )
    model = load_model(args.model, unsafe=args.unsafe) if args.model else None
    rows = benchmark(
        args.directory,
        model=model,
        batch_size=args.batch_size,
        repeats=args.repeats,
        num_threads=args.threads[0] if args.threads else None,
    )
    print(format_bench(rows))
    if args.json:
        write_json(args.json, rows)


def _run_tune(args):
    import platform

    from export.bench import format_tuning
    from export.bench import read_manifest
    from export.bench import tune

    results = tune(
        args.directory,
        batch_size=args.batch_size,
        repeats=args.repeats,
        threads=args.threads,
    )
    print(format_tuning(results))
    manifest = read_manifest(args.directory)
    machine = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }
    for entry in manifest["artifacts"].values():
        result = results.get(entry["file"])
        if result is not None:
            entry["runtime_settings"] = {
                "batch1": result["batch1"],
                f"batch{result['batch_size']}": result["batchN"],
                "measured_on": machine,
            }
    write_json(os.path.join(args.directory, "manifest.json"), manifest)
    if args.json:
        write_json(args.json, results)
    print(f"wrote the fastest settings into {args.directory}/manifest.json")


def _cpu_name():
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def export_parser(prog="python -m export"):
    parser = Parser(
        prog=prog,
        parents=[model_file_options(), log_options(), transform_options()],
        description=(
            "Export a .keras image model to SavedModel, TFLite and ONNX; "
            "reload each artifact in its runtime and compare it with the "
            "model at batch 1 and a larger batch. Writes DIR/report.json and "
            "DIR/manifest.json. Exits 1 if any artifact fails (then nothing "
            "is written), 2 on a usage error. `bench DIR` "
            "times the artifacts."
        ),
    )
    parser.add_argument("model", help="the .keras model file")
    parser.add_argument(
        "--to", required=True, metavar="DIR", help="output folder"
    )
    parser.add_argument(
        "--formats",
        type=_csv(FORMATS, "--formats"),
        default=list(FORMATS),
        help="comma-separated formats (default: saved_model,tflite,onnx)",
    )
    parser.add_argument(
        "--quantize",
        type=_csv(QUANTIZE, "--quantize"),
        default=[],
        help="extra quantized files: float16,dynamic,int8 for TFLite; "
        "dynamic,int8 also for ONNX (int8 needs --representative-data)",
    )
    _data_options(parser)
    _check_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace DIR")
    parser.add_argument(
        "--bench", action="store_true", help="also time every artifact"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines"
    )
    return parser


def _data_options(parser):
    """Where calibration and verification images come from."""
    parser.add_argument(
        "--representative-data",
        metavar="PATH",
        help="training images to calibrate int8 (also used for verification "
        "without --samples): digits, tfds:NAME, a .csv file of image paths "
        "and labels, a .npy/.npz array or a folder of image files",
    )
    parser.add_argument(
        "--samples",
        metavar="PATH",
        help="images to verify with, like --representative-data: with "
        "preprocessing, a folder's files (up to 64) go through each file "
        "raw; arrays are written as PNG files (default: the representative "
        "data, and 8 generated files of several sizes and formats)",
    )
    parser.add_argument(
        "--input-range",
        type=_input_range,
        metavar="LOW,HIGH",
        help="range the model's inputs were scaled to in training, the "
        "same for every channel (default: the transform in config.json "
        "beside the model, else -1,1, what keras-vit train uses; "
        "--mean/--std say the same per channel)",
    )


def _check_options(parser):
    """How files are checked and what goes into them."""
    parser.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (default 17)"
    )
    parser.add_argument(
        "--min-top1-agreement",
        type=float,
        default=DEFAULT_MIN_TOP1_AGREEMENT,
        help="required top-1 agreement of quantized files (default "
        f"{DEFAULT_MIN_TOP1_AGREEMENT})",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.5,
        metavar="POINTS",
        help="int8: build full int8, ViT-aware int8 (LayerNorm, softmax, "
        "GELU in float) and ViT-aware with float patch embedding and head; "
        "measure each on --samples (labelled: accuracy; else top-1 "
        "agreement); keep the smallest (then fastest) within POINTS of the "
        "float model, "
        "or refuse with the numbers (default 0.5)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write quantized files even below --min-top1-agreement",
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="JSON list of class names (default: labels.json beside the model)",
    )
    parser.add_argument(
        "--preprocessing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="files take decoded uint8 images of any size and resize and "
        "scale them inside as training did (SavedModel also takes encoded "
        "files); --no-preprocessing: float32 model inputs (default: on)",
    )


def _thread_list(text):
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive thread counts such as 1,2,4; got {text!r}"
        )
    return counts


def bench_parser(prog="python -m export bench"):
    parser = Parser(
        prog=prog,
        parents=[model_file_options(), log_options()],
        description="Median batch-1 and batch-N latency and images/s of every "
        "artifact in an export folder, and of the Keras model, side by side.",
    )
    parser.add_argument(
        "directory", help="a folder written by python -m export"
    )
    parser.add_argument("--model", help="the .keras model, to time Keras too")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--tune",
        action="store_true",
        help="time every TFLite file with each thread count and every ONNX "
        "file with each thread count and graph optimization level, and "
        "write the fastest at batch 1 and N into manifest.json",
    )
    parser.add_argument(
        "--threads",
        type=_thread_list,
        help="thread counts for --tune, e.g. 1,2,4 (default: 1, 2, 4, ... "
        "and every core); without --tune, the one count LiteRT and "
        "onnxruntime run with (default: every core)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the rows as JSON"
    )
    return parser


def main(argv=None, prog="python -m export"):
    """Runs the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        args = bench_parser(f"{prog} bench").parse_args(argv[1:])
        return run(f"{prog} bench", run_bench, args)
    args = export_parser(prog).parse_args(argv)

    def nothing_written(error):
        if isinstance(error, AccuracyBudgetError):
            print(format_measurements(error.measurements), file=sys.stderr)
        print(f"nothing was written at {args.to!r}", file=sys.stderr)

    return run(
        prog,
        _export_command,
        args,
        on_failure=nothing_written,
        failures=(AccuracyBudgetError, ExportMemoryError),
        target=args.to,
    )


def _export_command(args):
    log = (
        (lambda _: None)
        if args.quiet
        else (lambda m: print(m, file=sys.stderr, flush=True))
    )
    reports, passed, model = run_export(args, log)
    print(format_table(reports))
    if not passed:
        print(
            f"error: verification failed; nothing was written at {args.to!r}",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {args.to} (report.json, manifest.json)")
    if args.bench:
        from export.bench import benchmark
        from export.bench import format_bench

        print(format_bench(benchmark(args.to, model=model)))
    return 0
