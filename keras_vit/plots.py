"""Pictures of attention (matplotlib, imported only when a plot is made).

Each function returns a `matplotlib.figure.Figure` without touching pyplot's
global state; saving it is the caller's: `figure.savefig("rollout.png")`.
"""

import numpy as np


def _figure(width, height):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Plots need matplotlib: pip install matplotlib "
            '(or pip install "keras-vit[plot]")'
        ) from None
    return Figure(figsize=(width, height), dpi=100)


def _displayable(image):
    """An image as [0, 1] floats for imshow, whatever its input range."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _upsample(grid_map, shape):
    """Nearest-neighbour upsampling of a patch grid to the image's pixels."""
    gh, gw = grid_map.shape
    return np.kron(grid_map, np.ones((shape[0] // gh, shape[1] // gw)))


def plot_rollout(image, rollout, alpha=0.6, title=None, size=4.0):
    """The image with its attention rollout laid over it.

    Args:
        image: array `(height, width[, channels])`, any value range.
        rollout: array `(grid_height, grid_width)`, e.g. one image of
            `attention_rollout(...)`.
        alpha: float. Opacity of the rollout. Defaults to `0.6`.
        title: str or `None`.
        size: float. Figure side in inches (100 pixels each). Defaults to
            `4.0`.

    Returns:
        A `matplotlib.figure.Figure` with the image on the left and the
        overlay on the right.
    """
    picture = _displayable(image)
    heat = _upsample(np.asarray(rollout, dtype=np.float64), picture.shape)
    heat = heat / heat.max() if heat.max() > 0 else heat
    figure = _figure(2 * size, size)
    left, right = figure.subplots(1, 2)
    cmap = "gray" if picture.ndim == 2 else None
    left.imshow(picture, cmap=cmap)
    left.set_title("image")
    right.imshow(picture, cmap=cmap)
    right.imshow(heat, cmap="inferno", alpha=alpha, vmin=0.0, vmax=1.0)
    right.set_title(title or "attention rollout")
    for axis in (left, right):
        axis.axis("off")
    return figure


def plot_head_maps(head_maps, image=None, title=None, size=2.0):
    """One panel per head: where the class token looks.

    Args:
        head_maps: array `(heads, grid_height, grid_width)`, e.g. one image
            of `class_token_attention(...)`.
        image: optional array `(height, width[, channels])` to draw under
            each map.
        title: str or `None`.
        size: float. Panel side in inches. Defaults to `2.0`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    head_maps = np.asarray(head_maps, dtype=np.float64)
    heads = len(head_maps)
    columns = min(heads, 4)
    rows = -(-heads // columns)
    figure = _figure(columns * size, rows * size)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for index, axis in enumerate(axes):
        axis.axis("off")
        if index >= heads:
            continue
        heat = head_maps[index]
        if image is not None:
            picture = _displayable(image)
            heat = _upsample(heat, picture.shape)
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axis.imshow(heat, cmap="inferno", alpha=0.6)
        else:
            axis.imshow(heat, cmap="inferno")
        axis.set_title(f"head {index}", fontsize=8)
    if title:
        figure.suptitle(title)
        figure.subplots_adjust(top=0.8 if rows == 1 else 0.9)
    return figure


def plot_mean_attention_distance(distances, patch_size=None, size=4.0):
    """Mean attention distance of every head against block depth.

    Args:
        distances: array `(depth, heads)` from `mean_attention_distance`.
        patch_size: optional int, drawn as a reference line.
        size: float. Figure height in inches. Defaults to `4.0`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    distances = np.asarray(distances, dtype=np.float64)
    depth, heads = distances.shape
    figure = _figure(1.25 * size, size)
    axis = figure.subplots()
    for head in range(heads):
        axis.scatter(np.arange(depth), distances[:, head], s=14, label=None)
    if patch_size:
        axis.axhline(patch_size, color="gray", linewidth=0.8, linestyle="--")
    axis.set_xlabel("encoder block")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_xticks(np.arange(depth))
    axis.set_title(f"{heads} heads per block")
    return figure
