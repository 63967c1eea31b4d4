"""Trains a tiny ViT under a tf.distribute strategy; saves its weights.

    python tests/distributed_worker.py single|mirrored OUT.npz [tools]

`tools`: the optimizer with layer-wise learning-rate decay and an EMA of
the weights; the output also says what gradient accumulation raises.

`mirrored` splits the CPU into two logical devices first. Run by
tests/test_distributed.py in fresh processes, because devices and strategies
can be set up only once per process.
"""

import json
import sys

import numpy as np
import tensorflow as tf

import keras_vit
from keras_vit.training import compile_for_training
from keras_vit.training import distribution_strategy
from keras_vit.training import set_determinism


def main(mode, out, tools=False):
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )

    set_determinism(0)
    strategy = distribution_strategy(
        {"single": "default", "mirrored": "mirrored"}.get(mode, mode)
    )
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=64)
    images = rng.normal(size=(64, 8, 8, 3)) + labels[:, None, None, None]
    images = images.astype("float32")
    one_hot = np.eye(3, dtype="float32")[labels]
    # The global batch of 16 is split between the replicas.
    dataset = tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(16)
    with strategy.scope():
        model = keras_vit.build_vit(
            image_size=8,
            patch_size=4,
            hidden_dim=8,
            depth=1,
            num_heads=2,
            mlp_dim=16,
            num_classes=3,
        )
        refused = None
        if tools:
            try:
                compile_for_training(model, total_steps=8, accumulate=2)
            except ValueError as error:
                refused = str(error)
        options = dict(layer_decay=0.7, ema=0.9) if tools else {}
        compile_for_training(
            model, learning_rate=1e-2, total_steps=8, **options
        )
    history = model.fit(dataset, epochs=2, verbose=0)
    np.savez(out, *[np.asarray(w) for w in model.weights])
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "loss": [float(v) for v in history.history["loss"]],
                "accumulation_refused": refused,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], tools=sys.argv[3:] == ["tools"])
