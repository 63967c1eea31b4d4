"""The registry of pretrained checkpoints, its download cache and loading.

Downloads are served by a local HTTP server the tests start; Hub files come
from a pre-populated `huggingface_hub` cache. Nothing touches the network.
"""

import dataclasses
import hashlib
import os
import sys
import time
import zipfile

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import presets
from keras_vit.presets import DownloadError
from keras_vit.presets import Preset
from keras_vit.variants import VARIANTS
from keras_vit.variants import decode_variant
from tests.helpers import FileServer

# ------------------------------------------------------------- helpers


def _parameter_count(variant, image_size, num_classes, representation):
    """Parameters of a plain ViT, counted from the paper's formulas."""
    d = decode_variant(variant)
    width, patch, mlp = d["hidden_dim"], d["patch_size"], d["mlp_dim"]
    tokens = (image_size // patch) ** 2 + 1
    count = patch * patch * 3 * width + width  # patch embedding
    count += width + tokens * width  # class token, positions
    block = 4 * (width * width + width)  # query, key, value, out
    block += 2 * 2 * width  # two LayerNorms
    block += width * mlp + mlp + mlp * width + width  # MLP
    count += d["depth"] * block + 2 * width  # blocks, final LayerNorm
    head_in = width
    if representation:
        count += width * representation + representation
        head_in = representation
    if num_classes:
        count += head_in * num_classes + num_classes
    return count


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.stop()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An isolated registry and cache folder for each test."""
    monkeypatch.setattr(presets, "_REGISTRY", dict(presets._REGISTRY))
    monkeypatch.setenv("KERAS_VIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_VIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "home"


def _npz_bytes(tmp_path, arrays):
    path = tmp_path / "file.npz"
    np.savez(path, **arrays)
    return path.read_bytes()


@pytest.fixture(scope="module")
def ti16_npz(tmp_path_factory):
    """A Ti/16 checkpoint at 32x32 with 1000 classes, as bytes."""
    model = keras_vit.build_vit("Ti/16", image_size=32, num_classes=1000)
    rng = np.random.default_rng(0)
    for v in model.weights:
        v.assign(rng.normal(0, 0.02, v.shape).astype("float32"))
    path = tmp_path_factory.mktemp("ti16") / "ti16.npz"
    keras_vit.save_npz(model, path)
    return path.read_bytes(), model


def _files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder)
        for d, _, files in os.walk(folder)
        for f in files
    )


# ----------------------------------------------------------- the registry


def test_every_entry_is_well_formed():
    names = presets.list_presets()
    assert len(names) == len(set(names)) >= 40
    for name in names:
        p = presets.get_preset(name)
        assert p.name == name
        assert p.variant in VARIANTS, name
        assert p.image_size % p.patch_size == 0, name
        assert p.input_range == p.transform.input_range, name
        assert p.licence == "Apache-2.0"
        if p.labels == "imagenet-1k":
            assert p.num_classes == len(keras_vit.imagenet_labels()) == 1000
        elif p.labels == "imagenet-21k":
            assert p.num_classes == 21843
        elif "_clip_" in name:
            # CLIP's head is its image-text projection, not classes.
            assert p.num_classes in (512, 768), name
        else:
            assert p.num_classes == 0
        assert bool(p.url) != bool(p.hub_repo), name
        if p.url:
            assert p.url.startswith(
                "https://storage.googleapis.com/vit_models/"
            )
            assert p.url.endswith(".npz")
        else:
            # timm's QuickGELU names read the file of the plain name.
            assert p.hub_repo == f"timm/{name.replace('_quickgelu', '')}"
        if p.accuracy is not None:
            assert 70 < p.accuracy < 90 and p.accuracy_source, name
            assert p.labels == "imagenet-1k", name
        # What the arrays do not say comes with the preset.
        if "_clip_" in name:
            assert p.architecture["layer_norm_epsilon"] == 1e-5, name
            assert p.architecture["pre_norm"], name
        assert (p.architecture.get("activation") == "quick_gelu") == (
            "quickgelu" in name
        ), name
        if p.parameters is not None:
            count = _parameter_count(
                p.variant, p.image_size, p.num_classes, p.representation_size
            )
            assert abs(count - p.parameters) <= p.parameters_precision / 2, (
                name,
                count,
            )


def test_the_release_families_the_sources_list_are_covered():
    names = set(presets.list_presets())
    for stem in ("B_16", "B_32", "L_16", "L_32", "H_14"):
        assert f"imagenet21k/ViT-{stem}" in names
    for stem in ("B_16", "B_16-224", "L_16", "L_16-224"):
        assert f"imagenet21k+imagenet2012/ViT-{stem}" in names
    augreg = [n for n in names if n.startswith("augreg/")]
    for stem in ("Ti_16", "S_16", "S_32", "B_16", "B_32", "L_16"):
        mine = [n for n in augreg if n.startswith(f"augreg/{stem}-")]
        assert len(mine) == 2, stem  # ImageNet-21k and the 1k fine-tune
    for variant in ("Ti/16", "S/16", "S/32", "B/16", "B/32", "L/16"):
        timm = [
            n
            for n in presets.list_presets(variant, "imagenet-1k")
            if ".augreg" in n
        ]
        assert timm, variant
        assert presets.list_presets(variant, "imagenet-21k"), variant


def test_the_parameter_formula_matches_build_vit():
    for variant, size, classes, rep in (
        ("Ti/16", 32, 1000, None),
        ("S/32", 64, 0, 384),
    ):
        model = keras_vit.build_vit(
            variant,
            image_size=size,
            num_classes=max(classes, 1),
            include_top=bool(classes),
            representation_size=rep,
        )
        assert model.count_params() == _parameter_count(
            variant, size, classes, rep
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"variant": "X/16"}, "variant 'X/16'"),
        ({"variant": "B/15"}, "variant 'B/15'"),
        ({"image_size": 100}, "not a multiple of the patch size"),
        ({"num_classes": 999}, "label set has 1000"),
        ({"url": None}, "exactly one of url and hub_repo"),
        ({"hub_repo": "timm/x"}, "exactly one of url and hub_repo"),
        ({"sha256": "abc"}, "64 hex digits"),
        ({"url": "ftp://x/y.npz"}, r"not an http\(s\) or file address"),
    ],
)
def test_a_malformed_entry_is_refused(registry, change, message):
    good = Preset(
        name="mine",
        variant="B/16",
        image_size=224,
        num_classes=1000,
        labels="imagenet-1k",
        url="https://example.com/mine.npz",
    )
    presets.register_preset(good)
    with pytest.raises(ValueError, match="taken|exists"):
        presets.register_preset(good)
    bad = dataclasses.replace(good, name="bad", **change)
    with pytest.raises(ValueError, match=f"Malformed preset 'bad'.*{message}"):
        presets.register_preset(bad)
    assert "bad" not in presets.list_presets()


def test_unknown_names_are_refused_with_close_names():
    with pytest.raises(ValueError, match="vit_base_patch16_224.augreg"):
        presets.get_preset("vit_base_patch16_224.augreg_in21k_ft_in1")
    with pytest.raises(ValueError, match="preset name .* or a .npz"):
        keras_vit.build_vit(weights="vit_base_patch16_224.augreg_in21k_ft")
    with pytest.raises(ValueError, match="is a B/16 model"):
        keras_vit.build_vit(
            "S/16", weights="vit_base_patch16_224.augreg2_in21k_ft_in1k"
        )


def test_imagenet_labels_are_the_1000_classes_in_order():
    labels = keras_vit.imagenet_labels()
    assert len(labels) == 1000
    # WordNet gives the bird (134) and the machine (517) the same lemma.
    repeated = {n for n in labels if labels.count(n) > 1}
    assert repeated == {"crane"}
    assert [i for i, n in enumerate(labels) if n == "crane"] == [134, 517]
    assert labels[0].startswith("tench")
    assert labels[1].startswith("goldfish")
    assert labels[207].startswith("golden retriever")
    assert labels[999].startswith("toilet tissue")
    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    assert keras_vit.preset_labels(name) == labels
    assert keras_vit.preset_labels("imagenet21k/ViT-B_16") is None


# ------------------------------------------------------ HTTPS downloads


def _register(server, path, data, **fields):
    server.files[path] = data
    values = dict(
        name="test/" + path.strip("/"),
        variant="Ti/16",
        image_size=32,
        num_classes=1000,
        labels="imagenet-1k",
        url=server.url + path,
    )
    values.update(fields)
    return presets.register_preset(Preset(**values))


def test_first_load_downloads_and_caches_then_works_offline(
    registry, server, ti16_npz
):
    data, model = ti16_npz
    preset = _register(server, "/vit/ti16.npz", data)
    built = keras_vit.build_vit(weights=preset.name, progress=False)
    assert server.requests == 1
    assert built.input_shape == (None, 32, 32, 3)  # the preset's size
    assert built.output_shape == (None, 1000)  # the preset's classes
    assert keras_vit.class_names(built) == keras_vit.imagenet_labels()
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3))
    x = x.astype("float32")
    np.testing.assert_allclose(built(x), model(x), atol=1e-5)
    cached = presets.cached_path(preset.name)
    assert cached and cached.startswith(str(registry))
    assert _files_under(registry) == [os.path.relpath(cached, registry)]

    server.stop()  # no network from here on
    again = keras_vit.from_preset(preset.name, num_classes=5, image_size=48)
    assert again.output_shape == (None, 5)
    assert keras_vit.class_names(again) is None  # a new head
    same = keras_vit.from_preset(preset.name)
    assert keras_vit.class_names(same) == keras_vit.imagenet_labels()
    assert again.input_shape == (None, 48, 48, 3)
    assert presets.preset_path(preset.name) == cached


def test_a_backbone_only_preset_gives_features_not_a_zero_head(
    registry, server, tmp_path
):
    backbone = keras_vit.build_vit("Ti/16", image_size=32, include_top=False)
    keras_vit.save_npz(backbone, tmp_path / "b.npz")
    preset = _register(
        server,
        "/backbone.npz",
        (tmp_path / "b.npz").read_bytes(),
        num_classes=0,
        labels=None,
    )
    for model in (
        keras_vit.build_vit(weights=preset.name, progress=False),
        keras_vit.from_preset(preset.name, progress=False),
    ):
        assert model.output_shape == (None, 192)
    model = keras_vit.build_vit(weights=preset.name, num_classes=4)
    assert model.output_shape == (None, 4)  # asked for: a new head


def test_a_wrong_checksum_fails_and_caches_nothing(registry, server, tmp_path):
    data = _npz_bytes(tmp_path, {"a": np.arange(1000.0)})
    preset = _register(server, "/x.npz", data, sha256="0" * 64)
    with pytest.raises(DownloadError, match="Checksum mismatch.*not kept"):
        presets.preset_path(preset.name, progress=False)
    assert _files_under(registry) == []
    right = hashlib.sha256(data).hexdigest()
    presets.register_preset(
        dataclasses.replace(preset, sha256=right), overwrite=True
    )
    path = presets.preset_path(preset.name, progress=False)
    assert open(path, "rb").read() == data


@pytest.mark.parametrize("mode", ["cut", "no_length_half"])
def test_a_cut_transfer_leaves_nothing_and_a_retry_succeeds(
    registry, server, tmp_path, mode
):
    data = _npz_bytes(tmp_path, {"a": np.random.rand(50_000)})
    preset = _register(server, "/cut.npz", data)
    server.mode = mode
    with pytest.raises(DownloadError, match=str(server.url)):
        presets.preset_path(preset.name, progress=False)
    assert _files_under(registry) == []
    assert presets.cached_path(preset.name) is None
    server.mode = "full"
    path = presets.preset_path(preset.name, progress=False)
    assert open(path, "rb").read() == data


def test_the_published_size_is_checked(registry, server, tmp_path):
    data = _npz_bytes(tmp_path, {"a": np.zeros(1000)})
    preset = _register(server, "/sized.npz", data, size="391 MiB")
    with pytest.raises(DownloadError, match="publishes 391 MiB"):
        presets.preset_path(preset.name, progress=False)
    assert _files_under(registry) == []
    exact = f"{len(data)} B"
    presets.register_preset(
        dataclasses.replace(preset, size=exact), overwrite=True
    )
    assert presets.preset_path(preset.name, progress=False)


def test_offline_without_the_file_names_the_url_and_the_place(
    registry, server, monkeypatch, tmp_path
):
    preset = _register(server, "/off.npz", b"")
    monkeypatch.setenv("KERAS_VIT_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        presets.preset_path(preset.name)
    message = str(info.value)
    assert preset.url in message
    target = os.path.join(str(registry), "weights")
    assert target in message and "place it at" in message
    assert server.requests == 0
    # A file placed there by hand is used as it is.
    data = _npz_bytes(tmp_path, {"a": np.ones(3)})
    placed = message.split("place it at ")[1].split(", or")[0]
    os.makedirs(os.path.dirname(placed))
    with open(placed, "wb") as f:
        f.write(data)
    assert presets.preset_path(preset.name) == placed


def test_an_unreachable_server_is_one_clear_error(registry, server):
    preset = _register(server, "/gone.npz", b"")
    server.stop()
    with pytest.raises(DownloadError, match="Could not fetch.*gone.npz"):
        presets.preset_path(preset.name, progress=False)
    assert _files_under(registry) == []
    # No empty folders left behind either.
    assert not os.path.exists(os.path.join(registry, "weights"))


def test_the_size_check_cannot_refuse_a_correct_file():
    # Published rounding, or MB where MiB was meant: within tolerance.
    for published, actual in (
        ("37 MiB", 37.49 * 1024**2),
        ("37 MiB", 36.3 * 1024**2),
        ("391 MiB", 391e6),
        ("1.22 GiB", 1.2249 * 1024**3),
    ):
        expected, tolerance = presets._published_bytes(published)
        assert abs(actual - expected) <= tolerance, published
    # A file cut to half is refused.
    expected, tolerance = presets._published_bytes("37 MiB")
    assert abs(expected / 2 - expected) > tolerance


def test_progress_can_be_switched_off(registry, server, tmp_path, capsys):
    data = _npz_bytes(tmp_path, {"a": np.zeros(10)})
    quiet = _register(server, "/quiet.npz", data)
    presets.preset_path(quiet.name, progress=False)
    assert capsys.readouterr() == ("", "")
    loud = _register(server, "/loud.npz", data)
    presets.preset_path(loud.name, progress=True)
    out, err = capsys.readouterr()
    assert out == ""  # stdout keeps to a command's result
    assert "loud.npz: 100%" in err


def test_a_corrupt_npz_in_transit_fails_its_crc(registry, server, tmp_path):
    data = bytearray(_npz_bytes(tmp_path, {"a": np.random.rand(1000)}))
    with zipfile.ZipFile(tmp_path / "file.npz") as archive:
        offset = archive.infolist()[0].header_offset + 200
    data[offset] ^= 0xFF
    preset = _register(server, "/bad.npz", bytes(data))
    with pytest.raises(DownloadError, match="CRC|not a complete"):
        presets.preset_path(preset.name, progress=False)
    assert _files_under(registry) == []


# ----------------------------------------------------------- the Hub


def _hub_cache(root, repo, filename, data):
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(data)
    return snapshot / filename


def test_hub_files_come_from_the_huggingface_cache_offline(
    registry, monkeypatch, tmp_path, ti16_npz
):
    constants = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data, model = ti16_npz
    repo = "timm/vit_tiny_test.augreg_in21k_ft_in1k"
    preset = presets.register_preset(
        Preset(
            name="test-hub",
            variant="Ti/16",
            image_size=32,
            num_classes=1000,
            labels="imagenet-1k",
            hub_repo=repo,
            hub_file="weights.npz",
        )
    )
    with pytest.raises(DownloadError, match="offline mode") as info:
        presets.preset_path(preset.name)
    # A command the installed huggingface_hub has, and one sentence end.
    assert f"`hf download {repo} weights.npz`" in str(info.value)
    assert ".." not in str(info.value)
    import shutil

    assert shutil.which("hf", path=os.path.dirname(sys.executable))
    assert presets.cached_path(preset.name) is None
    stored = _hub_cache(cache, repo, "weights.npz", data)
    assert presets.preset_path(preset.name) == str(stored)
    assert presets.cached_path(preset.name) == str(stored)
    built = keras_vit.from_preset(preset.name)
    x = np.zeros((1, 32, 32, 3), "float32")
    np.testing.assert_allclose(built(x), model(x), atol=1e-5)
    assert _files_under(registry) == []  # the Hub cache, not ours


def test_an_unreachable_hub_fails_in_one_line_within_seconds(
    registry, monkeypatch, tmp_path, capfd
):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    server = FileServer()
    closed = server.url  # a port nothing listens on once stopped
    server.stop()
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    preset = presets.register_preset(
        Preset(
            name="test-hub-down",
            variant="Ti/16",
            image_size=32,
            num_classes=1000,
            labels="imagenet-1k",
            hub_repo="timm/nothing",
        )
    )
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        presets.preset_path(preset.name)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "\n" not in message and closed in message
    assert "`hf download timm/nothing model.safetensors`" in message
    out, err = capfd.readouterr()
    assert out == "" and "Retrying" not in err
    assert not os.path.exists(tmp_path / "hf" / "models--timm--nothing")


# ------------------------------------------------------ other checkpoints


def test_from_preset_reads_the_architecture_of_checkpoint_files(tmp_path):
    model = keras_vit.build_vit(
        image_size=24,
        patch_size=8,
        hidden_dim=24,
        depth=3,
        num_heads=3,
        mlp_dim=40,
        num_classes=6,
        representation_size=12,
    )
    keras_vit.save_npz(model, tmp_path / "m.npz")
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 24, 24, 3))
    for path in (tmp_path / "m.npz", tmp_path / "m.keras"):
        same = keras_vit.from_preset(str(path))
        assert same.get_layer("encoder_block_0").num_heads == 3
        np.testing.assert_allclose(same(x), model(x), atol=1e-6)
        new = keras_vit.from_preset(str(path), num_classes=2, image_size=40)
        assert new.output_shape == (None, 2)
        assert new.input_shape == (None, 40, 40, 3)


def test_fused_heads_of_a_non_standard_size_need_num_heads():
    from keras_vit.checkpoints import CheckpointError
    from keras_vit.checkpoints import checkpoint_config

    path = os.path.join(
        os.path.dirname(__file__), "fixtures", "vit_tiny_timm.safetensors"
    )
    with pytest.raises(CheckpointError, match="give num_heads"):
        checkpoint_config(path)
    config = checkpoint_config(path, num_heads=4)
    assert config["num_heads"] == 4 and config["hidden_dim"] == 32
    model = keras_vit.from_preset(path, num_heads=4)
    assert model.get_layer("encoder_block_0").num_heads == 4


def test_a_backbone_only_checkpoint_gets_a_fresh_head(tmp_path):
    dims = dict(patch_size=8, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    backbone = keras_vit.build_vit(image_size=16, include_top=False, **dims)
    keras_vit.save_npz(backbone, tmp_path / "backbone.npz")
    model = keras_vit.build_vit(
        image_size=16, num_classes=3, weights=tmp_path / "backbone.npz", **dims
    )
    assert not np.any(model.get_layer("head").kernel.numpy())
    report = keras_vit.load_weights(model, str(tmp_path / "backbone.npz"))
    assert report["skipped"]["head/kernel"].startswith("not in the checkpoint")
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3))
    features = keras.Model(model.input, model.get_layer("pooling").output)
    np.testing.assert_allclose(features(x), backbone(x), atol=1e-6)
    # from_preset without num_classes: the checkpoint has no head, nor the
    # model; with num_classes: a new head.
    assert keras_vit.from_preset(
        str(tmp_path / "backbone.npz")
    ).output_shape == (
        None,
        16,
    )
    assert keras_vit.from_preset(
        str(tmp_path / "backbone.npz"), num_classes=4
    ).output_shape == (None, 4)
