import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit import build_vit
from keras_vit.training import compile_for_training
from keras_vit.training import distribution_strategy
from keras_vit.training import hardware_precision
from keras_vit.training import make_optimizer
from keras_vit.training import no_decay_variables
from keras_vit.training import training_callbacks

TINY = dict(
    image_size=8, patch_size=4, hidden_dim=8, depth=1, num_heads=2, mlp_dim=16
)


def test_no_decay_variables_are_biases_norms_token_and_positions():
    model = build_vit(**TINY, num_classes=3)
    excluded = {v.path for v in no_decay_variables(model)}
    assert "class_token/token" in excluded
    assert "position_embedding/embedding" in excluded
    assert "encoder_norm/gamma" in excluded and "encoder_norm/beta" in excluded
    assert "head/bias" in excluded
    assert "encoder_block_0/attention/query_bias" in excluded
    assert "encoder_block_0/attention_norm/gamma" in excluded
    decayed = {v.path for v in model.trainable_variables} - excluded
    assert decayed == {
        "patch_embedding/kernel",
        "encoder_block_0/attention/query_kernel",
        "encoder_block_0/attention/key_kernel",
        "encoder_block_0/attention/value_kernel",
        "encoder_block_0/attention/output_kernel",
        "encoder_block_0/mlp/dense_0/kernel",
        "encoder_block_0/mlp/dense_1/kernel",
        "head/kernel",
    }


def test_weight_decay_touches_only_kernels():
    model = build_vit(**TINY, num_classes=3)
    for v in model.trainable_variables:
        v.assign(np.ones(v.shape, "float32"))
    optimizer = make_optimizer(
        model, learning_rate=0.1, total_steps=10, weight_decay=0.5
    )
    variables = model.trainable_variables
    # Zero gradients: Adam's step is zero, only decay can move a variable.
    optimizer.apply_gradients(
        [(np.zeros(v.shape, "float32"), v) for v in variables]
    )
    excluded = {id(v) for v in no_decay_variables(model)}
    for v in variables:
        values = keras.ops.convert_to_numpy(v)
        if id(v) in excluded:
            np.testing.assert_array_equal(values, 1.0)
        else:
            np.testing.assert_allclose(values, 1.0 - 0.1 * 0.5, rtol=1e-6)


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    model = build_vit(**TINY, num_classes=3)
    optimizer = make_optimizer(
        model, learning_rate=1e-2, total_steps=110, warmup_steps=10
    )
    schedule = optimizer._learning_rate
    lr = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(lr, [0.0, 5e-3, 1e-2, 5e-3, 0.0], atol=1e-7)
    assert optimizer.global_clipnorm == 1.0
    with pytest.raises(ValueError, match=r"total_steps=5, warmup_steps=5"):
        make_optimizer(model, total_steps=5, warmup_steps=5)


def test_compile_uses_label_smoothing_on_one_hot_labels():
    model = compile_for_training(
        build_vit(**TINY, num_classes=3),
        total_steps=4,
        label_smoothing=0.2,
    )
    assert model.loss.get_config()["label_smoothing"] == 0.2
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_callbacks(tmp_path):
    kinds = [
        type(c).__name__ for c in training_callbacks(str(tmp_path), patience=3)
    ]
    for name in (
        "AtomicBackupAndRestore",
        "BestModelCheckpoint",
        "ResumableCSVLogger",
        "TerminateOnNaN",
        "TensorBoard",
        "EarlyStopping",
    ):
        assert name in kinds
    # A row is written before its epoch's backup (see ResumableCSVLogger).
    assert kinds.index("ResumableCSVLogger") < kinds.index(
        "AtomicBackupAndRestore"
    )
    kinds = [
        type(c).__name__
        for c in training_callbacks(str(tmp_path), tensorboard=False)
    ]
    assert "TensorBoard" not in kinds and "EarlyStopping" not in kinds


def test_strategies_by_name(monkeypatch):
    assert distribution_strategy("auto").num_replicas_in_sync == 1
    assert distribution_strategy("mirrored").num_replicas_in_sync >= 1
    with pytest.raises(ValueError, match=r"auto, default.*strategy='ps'"):
        distribution_strategy("ps")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r"TF_CONFIG"):
        distribution_strategy("multiworker")


CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse sse2 avx avx2 fma {extra}
"""


@pytest.mark.parametrize(
    "extra, hidden_dim, expected",
    [
        ("avx512f avx512_bf16", 192, "mixed_bfloat16"),
        ("avx512f amx_bf16 amx_tile", None, "mixed_bfloat16"),
        ("avx512f avx512_bf16", 64, "float32"),  # Narrow: stays float32.
        ("avx512f avx512_vnni", 768, "float32"),  # No native bfloat16.
        ("", 768, "float32"),
    ],
)
def test_hardware_precision_on_cpus(
    extra, hidden_dim, expected, tmp_path, monkeypatch
):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [])
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(vendor="AuthenticAMD", extra=extra))
    assert hardware_precision(hidden_dim, cpuinfo=cpuinfo) == expected
    assert hardware_precision(768, cpuinfo=tmp_path / "absent") == "float32"


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((9, 0), "mixed_bfloat16"),
        ((8, 0), "mixed_bfloat16"),
        ((7, 5), "mixed_float16"),
        ((6, 1), "float32"),
    ],
)
def test_hardware_precision_on_gpus(capability, expected, monkeypatch):
    gpu = object()
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda kind: [gpu] if kind == "GPU" else [],
    )
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda device: {"compute_capability": capability},
    )
    assert hardware_precision(32) == expected


def test_xla_is_refused_loudly_under_op_determinism():
    # Keras itself only warns and trains without XLA.
    from keras_vit.training import set_determinism

    set_determinism(0, ops=True)
    model = build_vit(**TINY, num_classes=3)
    with pytest.raises(ValueError, match="op determinism is on"):
        compile_for_training(model, total_steps=10, jit_compile=True)


def test_the_backup_relies_on_keras_names(tmp_path):
    # AtomicBackupAndRestore overrides a private method and reads private
    # attributes of keras.callbacks.BackupAndRestore; if a Keras release
    # renames them, this fails instead of backups silently going wrong.
    from keras_vit.training import AtomicBackupAndRestore

    backup = AtomicBackupAndRestore(str(tmp_path / "backup"))
    for name in (
        "_save_model",
        "_weights_path",
        "_training_metadata_path",
        "_current_epoch",
        "_last_batch_seen",
    ):
        assert hasattr(keras.callbacks.BackupAndRestore, name) or hasattr(
            backup, name
        ), name
    model = build_vit(**TINY, num_classes=3)
    compile_for_training(model, total_steps=4)
    x = np.zeros((4, 8, 8, 3), "float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt  # killed after the first epoch

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[backup, Stop()])
    assert sorted(os.listdir(tmp_path / "backup")) == [
        "latest.weights.h5",
        "training_metadata.json",
    ]
    # Keras' own restore reads the files written here.
    resumed = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[resumed])
    assert history.epoch == [1, 2]


@pytest.mark.parametrize(
    "activation, from_logits", [(None, True), ("softmax", False)]
)
def test_the_training_loss_reads_the_heads_output_kind(activation, from_logits):
    model = build_vit(**TINY, num_classes=3, classifier_activation=activation)
    compile_for_training(model, total_steps=10)
    assert model.loss.get_config()["from_logits"] is from_logits
