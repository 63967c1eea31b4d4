"""A TensorFlow Datasets dataset (`tfds:NAME`) as a data source."""

from keras_vit.sources.base import Rows
from keras_vit.sources.base import Source


def tfds_builder(source, data_dir):
    """The `tfds` builder of `"tfds:NAME"`, or one clear error."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "`tfds:` datasets need TensorFlow Datasets: "
            "pip install tensorflow-datasets"
        ) from None
    name = source[len("tfds:") :]
    if not name:
        raise ValueError(
            f"Expected `tfds:NAME`, e.g. `tfds:cifar10`. Received: {source!r}"
        )
    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError.
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(
            "Unknown TensorFlow Datasets name; see "
            "https://www.tensorflow.org/datasets/catalog. "
            f"Received: {name!r} ({first_line})"
        ) from None


def supervised_keys(info):
    keys = info.supervised_keys
    if not keys:
        raise ValueError(
            f"TensorFlow Datasets' {info.name!r} has no (image, label) "
            "supervised keys."
        )
    return keys


class TfdsSource(Source):
    """`tfds:NAME`, read with `tfds.load(..., as_supervised=True)`.

    `tfds_splits`: `(train, validation, test)` split strings, any of them
    `None`; by default the dataset's `train`, `validation` and `test`
    splits where they exist, else `validation_split` of `train`.
    """

    name = "tfds"

    def __init__(self, source, data_dir=None, tfds_splits=None):
        self.source = source
        self.data_dir = data_dir
        self.tfds_splits = tfds_splits
        self.builder = tfds_builder(source, data_dir)

    def native_shape(self):
        info = self.builder.info
        shape = info.features[supervised_keys(info)[0]].shape
        return tuple(int(s) if s is not None else 224 for s in shape)

    def count(self):
        splits = self.builder.info.splits
        return sum(split.num_examples for split in splits.values()) or None

    def class_names(self):
        info = self.builder.info
        label = info.features[supervised_keys(info)[1]]
        names = getattr(label, "names", None) or range(label.num_classes)
        return [str(n) for n in names]

    def _split_names(self, validation_split):
        if self.tfds_splits is not None:
            return self.tfds_splits
        info = self.builder.info
        available = set(info.splits.keys()) if info.splits else set()
        train, validation = "train", None
        if "validation" in available:
            validation = "validation"
        elif validation_split > 0:
            cut = int(round(100 * (1 - validation_split)))
            train, validation = f"train[:{cut}%]", f"train[{cut}%:]"
        test = "test" if "test" in available else None
        return train, validation, test

    def splits(self, validation_split, test_split, seed):
        import tensorflow_datasets as tfds

        splits = {}
        names = self._split_names(validation_split)
        for name, split in zip(("train", "validation", "test"), names):
            if split is None:
                splits[name] = (None, 0)
                continue
            dataset = tfds.load(
                self.source[len("tfds:") :],
                split=split,
                as_supervised=True,
                data_dir=self.data_dir,
                # The training split reads its files in a new order each
                # epoch (the pipeline shuffles examples on top).
                shuffle_files=name == "train",
                read_config=tfds.ReadConfig(
                    shuffle_seed=seed, shuffle_reshuffle_each_iteration=True
                ),
            )
            count = int(dataset.cardinality().numpy())
            count = count if count > 0 else 10_000
            splits[name] = (
                Rows(
                    keys=dataset,
                    fetch=lambda image, label: (image, label),
                    buffer=min(count, 10_000),
                ),
                count,
            )
        return splits
