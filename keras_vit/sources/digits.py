"""scikit-learn's 8x8 handwritten digits (offline) as a data source."""

import numpy as np

from keras_vit.sources.arrays import array_splits
from keras_vit.sources.base import Source


class DigitsSource(Source):
    """The 1,797 digits of `sklearn.datasets.load_digits`, gray levels
    0-16 made 8-bit (0-255) so that they scale like any image."""

    name = "digits"

    def _load(self):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError(
                'The "digits" dataset comes from scikit-learn: '
                "pip install scikit-learn"
            ) from None
        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        return images[..., None], digits.target

    def native_shape(self):
        return (8, 8, 1)

    def count(self):
        return 1797

    def class_names(self):
        return [str(i) for i in range(10)]

    def splits(self, validation_split, test_split, seed):
        images, labels = self._load()
        return array_splits(images, labels, validation_split, test_split, seed)
