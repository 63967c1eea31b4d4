import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit.attention import attention_maps
from keras_vit.attention import attention_rollout
from keras_vit.attention import class_token_attention
from keras_vit.attention import fuse_heads
from keras_vit.attention import mean_attention_distance
from keras_vit.attention import model_grid
from keras_vit.cli import main
from tests.helpers import to_numpy


def _model(**overrides):
    config = dict(
        image_size=16,
        patch_size=4,
        hidden_dim=16,
        depth=3,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
    )
    config.update(overrides)
    model = keras_vit.build_vit(**config)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))
    return model


def _images(n, shape=(16, 16, 3), seed=0):
    return (
        np.random.default_rng(seed)
        .uniform(-1, 1, (n, *shape))
        .astype("float32")
    )


def test_maps_shape_rows_and_agreement_with_each_block():
    model = _model()
    images = _images(5)
    maps = attention_maps(model, images, batch_size=2)
    assert maps.shape == (3, 5, 2, 17, 17)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert (maps >= 0).all()
    # Block 0's weights, computed by hand from the embedded tokens.
    x = images
    for name in (
        "patch_extractor",
        "patch_embedding",
        "class_token",
        "position_embedding",
    ):
        x = model.get_layer(name)(x)
    block = model.get_layer("encoder_block_0")
    _, weights = block.attention(
        block.attention_norm(x), return_attention_scores=True
    )
    np.testing.assert_allclose(maps[0], to_numpy(weights), atol=1e-6)
    # The model itself is unchanged and still callable.
    assert model(images).shape == (5, 3)


def test_non_square_gap_and_reloaded_models(tmp_path):
    model = _model(image_size=(8, 20), patch_size=4, pooling="gap")
    assert model_grid(model) == (2, 5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = _images(3, (8, 20, 3))
    maps = attention_maps(loaded, images)
    np.testing.assert_allclose(maps, attention_maps(model, images), atol=1e-6)
    rollout = attention_rollout(maps, grid_size=(2, 5), pooling="gap")
    assert rollout.shape == (3, 2, 5)
    np.testing.assert_allclose(rollout.sum(axis=(1, 2)), 1.0, atol=1e-6)
    assert class_token_attention(maps, grid_size=(2, 5)).shape == (3, 2, 2, 5)
    with pytest.raises(ValueError, match=r"non-square.*10 patches"):
        attention_rollout(maps)


def _uniform_maps(depth=2, batch=1, heads=2, grid=3):
    tokens = grid * grid + 1
    return np.full((depth, batch, heads, tokens, tokens), 1.0 / tokens)


def test_uniform_attention_gives_a_uniform_rollout():
    for fusion in ("mean", "max", "min"):
        rollout = attention_rollout(_uniform_maps(), head_fusion=fusion)
        np.testing.assert_allclose(rollout, 1.0 / 9, atol=1e-12)


def test_class_token_attending_to_one_patch_peaks_there():
    maps = _uniform_maps(depth=3)
    target = 5  # patch index 4 -> grid (1, 1)
    maps[-1, :, :, 0, :] = 0.0
    maps[-1, :, :, 0, target] = 1.0
    rollout = attention_rollout(maps)[0]
    assert np.unravel_index(rollout.argmax(), rollout.shape) == (1, 1)
    assert rollout[1, 1] > 2 * np.delete(rollout.ravel(), 4).max()
    heads = class_token_attention(maps)[0]
    assert heads[:, 1, 1].tolist() == [1.0, 1.0]
    sharper = attention_rollout(maps, discard_ratio=0.5)[0]
    assert sharper[1, 1] >= rollout[1, 1]


def test_mean_attention_distance():
    depth, heads, grid, patch = 2, 2, 4, 8
    tokens = grid * grid + 1
    maps = np.zeros((depth, 1, heads, tokens, tokens))
    maps[:, :, 0] = np.eye(tokens)  # head 0 attends only to itself
    maps[:, :, 1, :, 1:] = 1.0 / (tokens - 1)  # head 1 spreads evenly
    distances = mean_attention_distance(maps, patch)
    assert distances.shape == (depth, heads)
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-12)
    # Mean distance between two random cells of a 4x4 grid, times 8 px.
    centres = (
        np.array([(r, c) for r in range(grid) for c in range(grid)]) * patch
    )
    expected = np.linalg.norm(centres[:, None] - centres[None], axis=-1).mean()
    np.testing.assert_allclose(distances[:, 1], expected, rtol=1e-9)


def test_argument_errors():
    maps = _uniform_maps()
    with pytest.raises(ValueError, match=r"head_fusion.*'median'"):
        fuse_heads(maps, "median")
    with pytest.raises(ValueError, match=r"discard_ratio=1.0"):
        attention_rollout(maps, discard_ratio=1.0)
    with pytest.raises(
        ValueError, match=r"\(depth, batch, heads, tokens, tokens\).*\(2, 3\)"
    ):
        attention_rollout(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"grid_size=\(2, 2\), 9 patches"):
        class_token_attention(maps, grid_size=2)
    with pytest.raises(ValueError, match=r"\(B, 16, 16, 3\).*\(2, 8, 8, 3\)"):
        attention_maps(_model(), np.zeros((2, 8, 8, 3)))
    flat_in = keras.Input((4,))
    with pytest.raises(ValueError, match=r"built by `keras_vit.build_vit`"):
        attention_maps(
            keras.Model(flat_in, keras.layers.Dense(2)(flat_in)),
            np.zeros((1, 4)),
        )


def test_plots_return_figures():
    from keras_vit.plots import plot_head_maps
    from keras_vit.plots import plot_mean_attention_distance
    from keras_vit.plots import plot_rollout

    maps = attention_maps(_model(), _images(1))
    image = _images(1)[0]
    figure = plot_rollout(image, attention_rollout(maps)[0])
    assert figure.get_size_inches().tolist() == [8.0, 4.0]
    assert len(plot_head_maps(class_token_attention(maps)[0], image).axes) == 2
    assert plot_mean_attention_distance(mean_attention_distance(maps, 4)).axes


def test_cli_writes_pngs_of_the_expected_size(tmp_path, capsys):
    model = _model(channels=1)
    model.save(tmp_path / "m.keras")
    paths = []
    for i in range(2):
        pixels = np.random.default_rng(i).integers(
            0, 255, (20, 20, 3), np.uint8
        )
        path = tmp_path / f"img{i}.png"
        tf.io.write_file(str(path), tf.io.encode_png(pixels))
        paths.append(str(path))
    out = tmp_path / "out"
    assert (
        main(
            ["attention", str(tmp_path / "m.keras"), *paths, "--out", str(out)]
        )
        == 0
    )
    expected = {
        "img0_rollout.png": (400, 800),
        "img0_heads.png": (200, 400),
        "img1_rollout.png": (400, 800),
        "img1_heads.png": (200, 400),
        "mean_attention_distance.png": (400, 500),
    }
    for name, (height, width) in expected.items():
        data = (out / name).read_bytes()
        assert len(data) > 1000
        image = tf.io.decode_png(data)
        assert tuple(image.shape[:2]) == (height, width), name
    capsys.readouterr()
    assert (
        main(
            [
                "attention",
                str(tmp_path / "m.keras"),
                paths[0],
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err
