"""A training recipe for ViTs: optimizer, schedule, loss and callbacks.

`compile_for_training` sets up AdamW (no weight decay on biases,
LayerNorms, the class token and the position embedding), linear warm-up then
cosine decay, label smoothing and global-norm gradient clipping.
`training_callbacks` gives the best-model checkpoint, resumable backups, a
CSV log, TensorBoard and early stopping. `distribution_strategy` picks a
`tf.distribute` strategy by name.
"""

import contextlib
import csv
import importlib.util
import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from keras_vit.layers import ClassToken
from keras_vit.layers import PositionEmbedding
from keras_vit.optimizers import LayerDecayAdamW
from keras_vit.optimizers import LayerDecaySGD
from keras_vit.recipes import PRECISIONS  # noqa: F401 (re-exported)
from keras_vit.recipes import STRATEGIES

logger = logging.getLogger(__name__)

# CPU feature flags (as Linux names them) of native bfloat16 matrix products.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
MIN_BF16_CPU_WIDTH = 128
OPTIMIZERS = ("adamw", "sgd")


def no_decay_variables(model):
    """Variables that weight decay must not shrink.

    Biases, LayerNorm scales and offsets, the class token and the position
    embedding: decaying them toward zero only hurts (they are not weights
    that multiply an input).
    """
    excluded = {}
    # LayerNorm scales and offsets are vectors, caught by their rank below;
    # the token and the position table are layers of the model (or of a
    # model nested in it), found through the public `layers` lists.
    pending = list(model.layers)
    while pending:
        layer = pending.pop()
        if isinstance(layer, (ClassToken, PositionEmbedding)):
            for v in layer.trainable_variables:
                excluded[id(v)] = v
        pending.extend(getattr(layer, "layers", ()))
    for v in model.trainable_variables:
        if len(v.shape) <= 1 or v.name.endswith("bias"):
            excluded[id(v)] = v
    return list(excluded.values())


def make_optimizer(
    model,
    *,
    learning_rate=1e-3,
    total_steps,
    warmup_steps=0,
    weight_decay=0.05,
    clipnorm=1.0,
    min_learning_rate=0.0,
    optimizer="adamw",
    momentum=0.9,
    layer_decay=None,
    ema=None,
    accumulate=None,
):
    """AdamW (or SGD) with linear warm-up, cosine decay and clipping.

    Args:
        model: the model whose variables it will train.
        learning_rate: float. Peak learning rate, reached after warm-up.
            Defaults to `1e-3`.
        total_steps: int. Training steps in all.
        warmup_steps: int. Steps of linear warm-up from 0. Defaults to `0`.
        weight_decay: float. Decoupled weight decay, not applied to
            `no_decay_variables(model)`. Defaults to `0.05`.
        clipnorm: float or `None`. Clip the global gradient norm to this.
            Defaults to `1.0`.
        min_learning_rate: float. Learning rate at the end of the cosine.
            Defaults to `0.0`.
        optimizer: `"adamw"` (training from scratch) or `"sgd"` (SGD with
            `momentum`, the ViT paper's fine-tuning optimizer). Defaults to
            `"adamw"`.
        momentum: float. Momentum of `"sgd"`. Defaults to `0.9`.
        layer_decay: float in (0, 1] or `None`. Layer-wise learning-rate
            decay: block `i` of `depth` at `layer_decay ** (depth - i)`
            times the rate, the embeddings lowest, the heads at the full
            rate (`keras_vit.optimizers`). Defaults to `None` (off).
        ema: float in (0, 1) or `None`. Keep an exponential moving average
            of the weights with this momentum (Keras' `use_ema`); `fit`
            ends with the averaged weights in the model, and
            `training_callbacks` validates and checkpoints with them.
            Defaults to `None` (off).
        accumulate: int >= 2 or `None`. Apply the mean gradient of this
            many batches as one update (Keras'
            `gradient_accumulation_steps`): the update of a batch this
            many times larger. `total_steps` and `warmup_steps` count
            batches. Defaults to `None` (every batch).

    Returns:
        A `keras.optimizers.AdamW` or `keras.optimizers.SGD`, or with
        `layer_decay` a `keras_vit.optimizers.LayerDecayAdamW` or
        `LayerDecaySGD`.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"`optimizer` must be one of {OPTIMIZERS}. "
            f"Received: optimizer={optimizer!r}"
        )
    if total_steps <= warmup_steps:
        raise ValueError(
            "`total_steps` must exceed `warmup_steps`. Received: "
            f"total_steps={total_steps}, warmup_steps={warmup_steps}"
        )
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=total_steps - warmup_steps,
        alpha=min_learning_rate / learning_rate,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    common = dict(
        learning_rate=schedule,
        global_clipnorm=clipnorm,
        **_averaging(ema, accumulate),
    )
    if layer_decay is not None:
        common["layer_decay"] = layer_decay
    if optimizer == "sgd":
        kind = keras.optimizers.SGD if layer_decay is None else LayerDecaySGD
        result = kind(
            momentum=momentum, weight_decay=weight_decay or None, **common
        )
    else:
        kind = (
            keras.optimizers.AdamW if layer_decay is None else LayerDecayAdamW
        )
        result = kind(weight_decay=weight_decay, **common)
    if weight_decay:
        result.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return result


def _averaging(ema, accumulate):
    """Keras' EMA and gradient-accumulation arguments, checked."""
    options = {}
    if ema is not None:
        if (
            isinstance(ema, bool)
            or not isinstance(ema, (int, float))
            or not (0.0 < ema < 1.0)
        ):
            raise ValueError(
                f"`ema` must be a momentum in (0, 1). Received: ema={ema!r}"
            )
        options.update(use_ema=True, ema_momentum=float(ema))
    if accumulate is not None:
        if (
            isinstance(accumulate, bool)
            or not isinstance(accumulate, int)
            or accumulate < 2
        ):
            raise ValueError(
                "`accumulate` must be an int >= 2 (batches per update). "
                f"Received: accumulate={accumulate!r}"
            )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            # Keras applies the accumulated update inside a `cond`, where
            # tf.distribute cannot all-reduce (keras-team/keras#20582).
            raise ValueError(
                "Gradient accumulation does not run under a tf.distribute "
                f"strategy of {replicas} replicas in Keras "
                f"{keras.__version__}; the replicas already make the batch "
                "larger: raise the global batch size instead. Received: "
                f"accumulate={accumulate}"
            )
        options["gradient_accumulation_steps"] = accumulate
    return options


def compile_for_training(
    model,
    *,
    learning_rate=1e-3,
    total_steps,
    warmup_steps=0,
    weight_decay=0.05,
    label_smoothing=0.1,
    clipnorm=1.0,
    jit_compile=False,
    optimizer="adamw",
    layer_decay=None,
    ema=None,
    accumulate=None,
):
    """Compiles `model` with the recipe; labels must be one-hot.

    The loss is categorical cross-entropy with `label_smoothing`, on logits
    (or on probabilities for a model whose head ends in a softmax); the
    metric is `accuracy`. The optimizer is `make_optimizer`'s, with its
    `layer_decay`, `ema` and `accumulate`.
    """
    from keras_vit.model import outputs_probabilities

    model.compile(
        optimizer=make_optimizer(
            model,
            learning_rate=learning_rate,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            optimizer=optimizer,
            layer_decay=layer_decay,
            ema=ema,
            accumulate=accumulate,
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=not outputs_probabilities(model),
            label_smoothing=label_smoothing,
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
    if jit_compile and not model.jit_compile:
        # Keras turns XLA off with only a warning, e.g. under TensorFlow op
        # determinism (`set_determinism(seed, ops=True)`).
        raise ValueError(
            "`jit_compile=True` cannot be honoured: Keras does not compile "
            "this model with XLA while TensorFlow op determinism is on or a "
            "layer does not support XLA. Turn determinism off "
            "(`set_determinism(seed, ops=False)`, `--no-deterministic`) or "
            "pass `jit_compile=False`."
        )
    return model


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup files are replaced atomically.

    Keras writes the backup weights and the epoch counter in place, so a run
    killed during that write leaves a backup that cannot be read. Here each
    file is written under a temporary name and renamed over the old one:
    at any moment the backup is a complete earlier or later state.

    This overrides `BackupAndRestore._save_model` and reads its private
    paths and counters, because Keras has no public hook for how a backup
    is written. Its public `double_checkpoint=True` is not the same: it
    copies the previous files aside and still writes in place, so every
    epoch copies the whole weights file once more, and a half-written epoch
    counter (invalid JSON) is not recovered. The names this relies on are
    pinned by `tests/test_training.py::test_the_backup_relies_on_keras_names`.
    """

    def _save_model(self):
        from keras_vit.files import atomic_path
        from keras_vit.files import check_free_space
        from keras_vit.files import write_error
        from keras_vit.saving import state_bytes

        try:
            os.makedirs(self.backup_dir, exist_ok=True)
        except OSError as error:
            raise write_error(self.backup_dir, error) from None
        # Weights first: a crash between the two renames leaves the new
        # weights with the old epoch count, and that epoch is redone.
        with atomic_path(self._weights_path, suffix=".weights.h5") as tmp:
            check_free_space(tmp, int(state_bytes(self.model) * 1.1) + 2**20)
            self.model.save_weights(tmp, overwrite=True)
        with atomic_path(self._training_metadata_path) as tmp:
            with open(tmp, "w") as f:
                json.dump(
                    {
                        "epoch": self._current_epoch,
                        "batch": self._last_batch_seen,
                    },
                    f,
                )
                f.flush()
                os.fsync(f.fileno())


def backed_up_epochs(backup_dir):
    """Epochs finished by the run whose backup is in `backup_dir` (0: none)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` whose file is one header and one row per finished epoch.

    Listed before the backup callback, an epoch's row is written before its
    backup; a run killed between the two redoes that epoch on resume. So at
    the start of every run the file is cut back to the epochs the backup
    holds (none for a fresh run), and rows are then appended: never a second
    header, never a repeated or missing epoch.
    """

    def __init__(self, filename, backup_dir):
        super().__init__(filename, append=True)
        self._backup_dir = backup_dir

    def on_train_begin(self, logs=None):
        done = backed_up_epochs(self._backup_dir)
        rows = []
        if os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                rows = list(csv.reader(f))
        header = rows[:1]
        kept = [
            r
            for r in rows[1:]
            if r and r[0] != "epoch" and r[0].isdigit() and int(r[0]) < done
        ]
        if rows and not kept:
            os.remove(self.filename)  # A fresh header comes next.
        elif rows:
            from keras_vit.files import atomic_path

            with atomic_path(self.filename) as tmp:
                with open(tmp, "w", newline="") as f:
                    csv.writer(f).writerows(header + kept)
        super().on_train_begin(logs)


def _ema_optimizer(model):
    """The model's optimizer if it keeps an average of the weights."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(optimizer, "use_ema", False) and optimizer.built:
        return optimizer
    return None


@contextlib.contextmanager
def averaged_weights(model):
    """Within it, `model` computes with the exponential moving average of
    its weights that its optimizer keeps (`make_optimizer(ema=...)`);
    the trained weights are back afterwards. Does nothing without EMA."""
    optimizer = _ema_optimizer(model)
    if optimizer is None:
        yield model
        return
    variables = optimizer._trainable_variables
    trained = [keras.ops.copy(v.value) for v in variables]
    for variable, average in zip(
        variables, optimizer._model_variables_moving_average
    ):
        variable.assign(average)
    try:
        yield model
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever `monitor` improves, atomically.

    Args:
        filepath: str. A `.keras` path; replaced by rename, never
            half-written.
        monitor: str. The logged value to watch. Defaults to
            `"val_accuracy"`.
        mode: `"max"` or `"min"`. Defaults to `"max"`.
    """

    def __init__(self, filepath, monitor="val_accuracy", mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(
                f"`mode` must be 'max' or 'min'. Received: {mode!r}"
            )
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.mode = mode
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better:
            from keras_vit.saving import save_model_atomic

            with averaged_weights(self.model):
                save_model_atomic(self.model, self.filepath)
            self.best = value  # Only once the file is in place.


def training_callbacks(
    out_dir, monitor="val_accuracy", patience=None, tensorboard=True, ema=False
):
    """Callbacks that keep a run's results and let a killed run resume.

    - `best.keras`: the model at its best `monitor` value;
    - `backup/`: `BackupAndRestore` state, so that the same command run
      again after a crash resumes from the last finished epoch;
    both replaced atomically, so a crash while writing them leaves the
    previous complete file;
    - `history.csv`: one header and one row per finished epoch, also
      after any number of resumes (`ResumableCSVLogger`);
    - `logs/`: TensorBoard, when the tensorboard package is installed;
    - early stopping after `patience` epochs without improvement, if set
      (the best epoch's weights restored, or with `ema` the average at the
      stop);
    - `TerminateOnNaN`;
    - with `ema` (an optimizer with `use_ema`), validation and
      `best.keras` use the averaged weights (Keras' `SwapEMAWeights`,
      `averaged_weights`).
    """
    mode = "min" if "loss" in monitor else "max"
    backup = os.path.join(out_dir, "backup")
    callbacks = [
        # Before the backup: see ResumableCSVLogger.
        ResumableCSVLogger(os.path.join(out_dir, "history.csv"), backup),
        AtomicBackupAndRestore(backup),
        BestModelCheckpoint(
            os.path.join(out_dir, "best.keras"), monitor=monitor, mode=mode
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if ema:
        # Validation scores the average: Keras swaps it in and back.
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=False))
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        logger.warning(
            "TensorBoard logs skipped: the tensorboard package is not "
            "installed (pip install tensorboard)."
        )
    elif tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"))
        )
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=patience,
                # The trained weights of the best epoch, not the average.
                restore_best_weights=not ema,
            )
        )
    return callbacks


def _cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU feature flags the Linux kernel reports; empty elsewhere."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def hardware_precision(hidden_dim=None, cpuinfo="/proc/cpuinfo"):
    """The dtype policy that trains fastest on this machine's hardware.

    On a GPU: `"mixed_bfloat16"` from compute capability 8.0 (bfloat16
    tensor cores), `"mixed_float16"` from 7.0, else `"float32"`. On a CPU:
    `"mixed_bfloat16"` when it multiplies bfloat16 natively (AMX or
    AVX-512 BF16), else `"float32"`, since bfloat16 emulated in float32
    arithmetic is slower than float32 itself. On a CPU, models narrower
    than `MIN_BF16_CPU_WIDTH` stay float32: their steps are made of many
    small ops rather than large matrix products, and the casts cost more
    than bfloat16 saves (BENCHMARKS.md has both measurements). Variables
    stay float32 under either mixed policy.

    Args:
        hidden_dim: int or `None`. Width of the model to train; `None`
            means wide enough.
        cpuinfo: path of the kernel's CPU description. Defaults to
            `"/proc/cpuinfo"`; machines without it get `"float32"` on CPU.

    Returns:
        One of `PRECISIONS`.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = tuple(details.get("compute_capability") or (0, 0))
        if capability >= (8, 0):
            return "mixed_bfloat16"
        if capability >= (7, 0):
            return "mixed_float16"
        return "float32"
    if hidden_dim is not None and hidden_dim < MIN_BF16_CPU_WIDTH:
        return "float32"
    if _cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS):
        return "mixed_bfloat16"
    return "float32"


def distribution_strategy(name="auto"):
    """A `tf.distribute` strategy by name.

    `"auto"`: `MirroredStrategy` when there are several GPUs, else the
    default strategy; `"default"`: the default (one device);
    `"mirrored"`: `MirroredStrategy` over all local devices (GPUs, or the
    CPU's logical devices); `"multiworker"`:
    `MultiWorkerMirroredStrategy` configured by `TF_CONFIG`; `"tpu"`:
    `TPUStrategy` on the TPU that `TPUClusterResolver` finds.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(STRATEGIES)}. "
            f"Received: strategy={name!r}"
        )
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or (
            tf.config.list_logical_devices("CPU")
        )
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                '`strategy="multiworker"` reads the cluster from the '
                "TF_CONFIG environment variable, which is not set."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def set_determinism(seed, ops=True):
    """Seeds Python, NumPy and TensorFlow; with `ops`, deterministic TF ops.

    Op determinism (`tf.config.experimental.enable_op_determinism`) makes
    two runs bitwise identical on one machine, at a cost: GPU kernels switch
    to deterministic algorithms (slower), a few ops run on the CPU, and
    Keras compiles no XLA (`compile_for_training(jit_compile=True)` then
    raises). TensorFlow offers no way to turn it off again in a process.
    """
    keras.utils.set_random_seed(seed)
    if ops:
        tf.config.experimental.enable_op_determinism()


def fit_with_strategy_loop(
    model,
    train,
    *,
    epochs,
    strategy,
    global_batch_size,
    validation=None,
    on_epoch_end=None,
):
    """Trains a compiled model with a `strategy.run` loop instead of `fit`.

    Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy`
    (keras-team/keras#20585): it reduces per-replica batches and metrics
    in ways the collective strategy rejects. This loop runs the same model,
    optimizer and loss through `strategy.run`; tf.distribute's collective
    all-reduce combines the gradients, so every worker ends with the same
    weights.

    Args:
        model: a model compiled with `compile_for_training`, built in
            `strategy.scope()`.
        train: batched `tf.data.Dataset` of `(images, one_hot_labels)`,
            batched with the global batch size.
        epochs: int. Number of passes over `train`.
        strategy: the `tf.distribute.Strategy` the model was built under.
        global_batch_size: int. Batch size of `train`.
        validation: optional dataset like `train`, evaluated after each
            epoch.
        on_epoch_end: optional callable `(epoch, logs)`.

    Returns:
        A dict of per-epoch lists: `loss`, `accuracy` and, with
        `validation`, `val_loss` and `val_accuracy`.
    """
    loss_config = model.loss.get_config()
    loss_fn = keras.losses.CategoricalCrossentropy(
        from_logits=True,
        label_smoothing=loss_config.get("label_smoothing", 0.0),
        reduction=None,
    )
    optimizer = model.optimizer

    def replica_train(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = loss_fn(labels, logits)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size
            )
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return _sums(per_example, logits, labels)

    @tf.function
    def train_step(images, labels):
        out = strategy.run(replica_train, args=(images, labels))
        return [strategy.reduce("SUM", v, axis=None) for v in out]

    eval_step = _eval_step(model, strategy, loss_fn)

    history = {}
    for epoch in range(epochs):
        logs = dict(
            zip(("loss", "accuracy"), _run_epoch(strategy, train, train_step))
        )
        if validation is not None:
            with averaged_weights(model):
                val = _run_epoch(strategy, validation, eval_step)
            logs.update(val_loss=val[0], val_accuracy=val[1])
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    if epochs:
        # As `fit` ends: the averaged weights into the model (with EMA).
        optimizer = getattr(model.optimizer, "inner_optimizer", None)
        (optimizer or model.optimizer).finalize_variable_values(
            model.trainable_variables
        )
    return history


def evaluate_with_strategy_loop(model, dataset, strategy):
    """`(loss, accuracy)` of a model on a dataset, via `strategy.run`."""
    loss_fn = keras.losses.CategoricalCrossentropy(
        from_logits=True, reduction=None
    )
    return _run_epoch(strategy, dataset, _eval_step(model, strategy, loss_fn))


def _eval_step(model, strategy, loss_fn):
    def replica_eval(images, labels):
        logits = model(images, training=False)
        return _sums(loss_fn(labels, logits), logits, labels)

    @tf.function
    def eval_step(images, labels):
        out = strategy.run(replica_eval, args=(images, labels))
        return [strategy.reduce("SUM", v, axis=None) for v in out]

    return eval_step


def _run_epoch(strategy, dataset, step):
    """Sums (loss, correct, count) over a dataset; returns means."""
    totals = np.zeros(3)
    for images, labels in strategy.experimental_distribute_dataset(dataset):
        totals += [float(v) for v in step(images, labels)]
    return totals[0] / totals[2], totals[1] / totals[2]


def _sums(per_example_loss, logits, labels):
    correct = tf.cast(
        tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), tf.float32
    )
    count = tf.cast(tf.shape(correct)[0], tf.float32)
    return (
        tf.reduce_sum(tf.cast(per_example_loss, tf.float32)),
        tf.reduce_sum(correct),
        count,
    )
