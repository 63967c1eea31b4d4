import keras
import numpy as np
from keras import ops

from keras_vit.layers._utils import check_non_negative_int
from keras_vit.layers._utils import normalize_pair

_RESIZE_METHODS = ("bilinear", "bicubic", "nearest")


def _filter_weights(source, target, method="bicubic"):
    """`(target, source)` weights of an antialiased resize (PIL's rule).

    Sample positions `(i + 0.5) * source / target`, the filter widened by
    `max(source / target, 1)`, each row normalized: PyTorch's
    `interpolate(..., antialias=True)` (bicubic with a = -0.5), which timm
    uses to resample position embeddings. Keras ops: `target` may be known
    only when the model runs.
    """
    inverse = ops.divide(float(source), ops.cast(target, "float32"))
    widening = ops.maximum(inverse, 1.0)
    centres = (ops.cast(ops.arange(target), "float32") + 0.5) * inverse
    pixels = ops.cast(ops.arange(source), "float32") + 0.5
    x = ops.abs(pixels[None, :] - centres[:, None]) / widening
    if method == "bicubic":
        a = -0.5
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        weights = ops.where(x < 1.0, near, ops.where(x < 2.0, far, 0.0))
    else:
        weights = ops.maximum(1.0 - x, 0.0)
    return weights / ops.sum(weights, axis=1, keepdims=True)


def resize_position_embedding(
    embedding,
    source_grid,
    target_grid,
    num_prefix_tokens=1,
    method="bilinear",
    antialias=False,
):
    """Resizes a position embedding from one patch grid to another.

    The rows of the prefix tokens (the class token) are kept as they are;
    the patch rows are laid out on the `source_grid`, resized as an image
    to `target_grid` and flattened again in row-major order.

    Args:
        embedding: array of shape `(1, num_prefix_tokens + gh * gw, D)`.
        source_grid: int or tuple `(gh, gw)`. Grid of `embedding`.
        target_grid: int or tuple `(gh', gw')`. Grid to resize to.
        num_prefix_tokens: int. Leading rows that are not patches.
            Defaults to `1`.
        method: `"bilinear"`, `"bicubic"` or `"nearest"`, with half-pixel
            centers. Defaults to `"bilinear"`.
        antialias: bool. Resize with PyTorch's antialiased filters (bicubic
            a = -0.5, widened when shrinking), as timm resamples the
            position embeddings of its `.safetensors` files and of
            `dynamic_img_size` models. `False`: Keras' `image.resize`
            without antialiasing, as timm resamples `.npz` files (bilinear).
            Defaults to `False`.

    Returns:
        A NumPy array of shape `(1, num_prefix_tokens + gh' * gw', D)`.

    Example:

    >>> table = np.zeros((1, 1 + 4 * 4, 8), "float32")
    >>> resize_position_embedding(table, 4, (6, 3)).shape
    (1, 19, 8)
    """
    if method not in _RESIZE_METHODS:
        raise ValueError(
            f"`method` must be one of {_RESIZE_METHODS}. "
            f"Received: method={method!r}"
        )
    source_grid = normalize_pair(source_grid, "source_grid")
    target_grid = normalize_pair(target_grid, "target_grid")
    embedding = np.asarray(embedding)
    expected = num_prefix_tokens + source_grid[0] * source_grid[1]
    if embedding.ndim != 3 or embedding.shape[:2] != (1, expected):
        raise ValueError(
            "`embedding` must have shape (1, num_prefix_tokens + gh * gw, D) "
            f"= (1, {expected}, D) for source_grid={source_grid} and "
            f"num_prefix_tokens={num_prefix_tokens}. "
            f"Received: embedding.shape={embedding.shape}"
        )
    prefix = embedding[:, :num_prefix_tokens]
    if source_grid == target_grid:
        return embedding.copy()
    dim = embedding.shape[-1]
    # (1, gh * gw, D) -> (1, gh, gw, D): the grid as a D-channel image.
    grid = embedding[:, num_prefix_tokens:].reshape(1, *source_grid, dim)
    if antialias:
        if method == "nearest":
            raise ValueError(
                '`antialias=True` filters with "bilinear" or "bicubic". '
                f"Received: method={method!r}"
            )
        rows, cols = (
            ops.convert_to_numpy(_filter_weights(n, m, method))
            for n, m in zip(source_grid, target_grid)
        )
        resized = np.einsum(
            "ih,bhwd,jw->bijd", rows, grid.astype("float64"), cols
        )
        resized = resized.astype(embedding.dtype).reshape(1, -1, dim)
        return np.concatenate([prefix, resized], axis=1)
    resized = ops.image.resize(
        grid.astype("float32"),
        target_grid,
        interpolation=method,
        antialias=False,
        data_format="channels_last",
    )
    resized = ops.convert_to_numpy(resized).astype(embedding.dtype)
    # (1, gh', gw', D) -> (1, gh' * gw', D)
    resized = resized.reshape(1, target_grid[0] * target_grid[1], dim)
    return np.concatenate([prefix, resized], axis=1)


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learnable position embedding to a token sequence.

    Self-attention treats its inputs as a set: permuting the patches
    permutes its outputs and nothing else. The position embedding, one
    learned `D`-vector per token position, is what tells the model where
    each patch came from.

    Args:
        grid_size: int, tuple of two ints or `None`. Patch grid
            `(grid_height, grid_width)` the patch rows come from. It is
            needed to resize the table to another grid; when `None` the grid
            is taken to be square. Defaults to `None`.
        num_prefix_tokens: int. Number of leading tokens that are not
            patches (the class token). Defaults to `1`.
        initializer: initializer for the table. Defaults to
            `RandomNormal(stddev=0.02)`.
        patch_size: int, tuple of two ints or `None`. When given, the
            layer follows the image size at run time: it is called as
            `layer(tokens, images=images)` and resamples its `grid_size`
            table in the graph to the images' patch grid (PyTorch's
            antialiased bicubic filter, as timm's `dynamic_img_size`).
            Defaults to `None` (a fixed grid).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, num_prefix_tokens + num_patches, hidden_dim)`.

    Output shape:
        Same as the input.

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> layer = PositionEmbedding(grid_size=4)
    >>> tuple(layer(tokens).shape)
    (2, 17, 64)
    >>> layer.resized_embedding((6, 6)).shape
    (1, 37, 64)
    """

    def __init__(
        self,
        grid_size=None,
        num_prefix_tokens=1,
        initializer=None,
        patch_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # With a patch size the table follows the images' size at run time.
        self.patch_size = (
            None
            if patch_size is None
            else normalize_pair(patch_size, "patch_size")
        )
        self.grid_size = (
            None
            if grid_size is None
            else normalize_pair(grid_size, "grid_size")
        )
        self.num_prefix_tokens = check_non_negative_int(
            num_prefix_tokens, "num_prefix_tokens"
        )
        if initializer is None:
            initializer = keras.initializers.RandomNormal(stddev=0.02)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if self.patch_size is not None:
            self._build_dynamic(input_shape)
            return
        if len(input_shape) != 3 or None in input_shape[1:]:
            raise ValueError(
                "`PositionEmbedding` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with known num_tokens and "
                f"hidden_dim. Received: input_shape={tuple(input_shape)}"
            )
        length = input_shape[1]
        if self.grid_size is not None:
            expected = (
                self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
            )
            if length != expected:
                raise ValueError(
                    "The sequence length must equal num_prefix_tokens + "
                    "grid_height * grid_width. "
                    f"Received: sequence length={length}, "
                    f"grid_size={self.grid_size}, "
                    f"num_prefix_tokens={self.num_prefix_tokens}"
                )
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, length, input_shape[2]),
            initializer=self.initializer,
        )

    def _build_dynamic(self, input_shape):
        if self.grid_size is None:
            raise ValueError(
                "A `PositionEmbedding` that follows the image size "
                "(`patch_size` given) needs the `grid_size` its table is "
                "trained for. Received: grid_size=None"
            )
        if len(input_shape) != 3 or input_shape[2] is None:
            raise ValueError(
                "`PositionEmbedding` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        rows = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, rows, input_shape[2]),
            initializer=self.initializer,
        )

    def call(self, inputs, images=None):
        table = ops.cast(self.embedding, inputs.dtype)
        if self.patch_size is not None:
            if images is None:
                raise ValueError(
                    "A `PositionEmbedding` that follows the image size is "
                    "called with `images=` (the model's input)."
                )
            table = self._table_for(images, table)
        # (B, L, D) + (1, L, D)
        return inputs + table

    def _table_for(self, images, table):
        """The table resampled in the graph to the images' patch grid:
        PyTorch's antialiased bicubic filter, as timm's
        `dynamic_img_size` models resample theirs."""
        (g0, g1), dim = self.grid_size, table.shape[-1]
        shape = ops.shape(images)
        rows = shape[1] // self.patch_size[0]
        cols = shape[2] // self.patch_size[1]
        prefix = table[:, : self.num_prefix_tokens]
        grid = ops.reshape(table[:, self.num_prefix_tokens :], (g0, g1 * dim))
        weights = ops.cast(_filter_weights(g0, rows), table.dtype)
        x = ops.matmul(weights, grid)  # (rows, g1 * D)
        x = ops.transpose(ops.reshape(x, (rows, g1, dim)), (1, 0, 2))
        x = ops.reshape(x, (g1, rows * dim))
        weights = ops.cast(_filter_weights(g1, cols), table.dtype)
        x = ops.matmul(weights, x)  # (cols, rows * D)
        x = ops.transpose(ops.reshape(x, (cols, rows, dim)), (1, 0, 2))
        x = ops.reshape(x, (1, rows * cols, dim))  # row-major patches
        return ops.concatenate([prefix, x], axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, images=None):
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def _current_grid(self):
        if self.grid_size is not None:
            return self.grid_size
        num_patches = self.embedding.shape[1] - self.num_prefix_tokens
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(
                "Cannot infer the patch grid of a non-square position "
                "embedding; create the layer with `grid_size`. "
                f"Received: num_patches={num_patches}"
            )
        return (side, side)

    def resized_embedding(self, grid_size, method="bilinear", antialias=False):
        """Returns this layer's table resized to another patch grid.

        Args:
            grid_size: int or tuple of two ints. Target patch grid.
            method: `"bilinear"`, `"bicubic"` or `"nearest"`. Defaults to
                `"bilinear"`.
            antialias: bool. As in `resize_position_embedding`.

        Returns:
            A NumPy array `(1, num_prefix_tokens + gh * gw, hidden_dim)`
            that can be assigned to a `PositionEmbedding` built for that grid.
        """
        if not self.built:
            raise ValueError(
                "The layer must be built before its embedding can be resized."
            )
        return resize_position_embedding(
            ops.convert_to_numpy(self.embedding),
            self._current_grid(),
            grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            method=method,
            antialias=antialias,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": self.grid_size,
                "num_prefix_tokens": self.num_prefix_tokens,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        if self.patch_size is not None:
            config["patch_size"] = self.patch_size
        return config
