import os

import numpy as np
import pytest
import tensorflow as tf

from keras_vit.image_files import find_bad_images
from keras_vit.image_files import looks_complete
from tests.test_data import _bmp


def _encoded(fmt, rng=np.random.default_rng(0)):
    pixels = rng.integers(0, 255, (9, 7, 3), np.uint8)
    if fmt == "png":
        return tf.io.encode_png(pixels).numpy()
    if fmt == "jpeg":
        return tf.io.encode_jpeg(pixels).numpy()
    pil = pytest.importorskip("PIL.Image")
    import io

    buffer = io.BytesIO()
    pil.fromarray(pixels).save(buffer, format=fmt.upper())
    return buffer.getvalue()


def _ends(data):
    return data[:32], data[-64:], len(data)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "bmp"])
def test_complete_files_are_recognised_by_their_ends(fmt, tmp_path):
    if fmt == "bmp":
        _bmp(tmp_path / "x.bmp", np.zeros((5, 6, 3), np.uint8))
        data = (tmp_path / "x.bmp").read_bytes()
    else:
        data = _encoded(fmt)
    assert looks_complete(*_ends(data))
    half = data[: len(data) // 2]
    if fmt != "bmp":  # A BMP's end is pixels; its header declares the size.
        assert not looks_complete(*_ends(half))
    else:
        assert not looks_complete(half[:32], half[-64:], len(half))


def test_doubtful_files_are_not_called_complete():
    jpeg = _encoded("jpeg")
    assert looks_complete(*_ends(jpeg + b"\0" * 40))  # zero padding after EOI
    for data in (
        b"",
        b"this is not an image",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 20,
    ):
        assert not looks_complete(data[:32], data[-64:], len(data))


def _folder(tmp_path, count=12):
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    files = []
    for i in range(count):
        path = root / "a" / f"{i}.png"
        path.write_bytes(_encoded("png"))
        files.append(str(path))
    return root, files


class _Decoder:
    """Records what was decoded in full; names files that contain 'bad'."""

    def __init__(self):
        self.decoded = []

    def __call__(self, paths):
        self.decoded.append(list(paths))
        return [
            i
            for i, p in enumerate(paths)
            if "bad" in os.path.basename(p)
            or not os.path.exists(p)
            or os.path.getsize(p) < 50
        ]


def test_only_doubtful_files_are_decoded_and_results_are_cached(tmp_path):
    root, files = _folder(tmp_path)
    truncated = root / "a" / "bad_truncated.png"
    truncated.write_bytes(_encoded("png")[:40])
    files.append(str(truncated))
    decoder = _Decoder()
    bad = find_bad_images(files, str(root), decode=decoder)
    assert bad == [len(files) - 1]
    assert decoder.decoded == [[str(truncated)]]
    # A rerun reads the cache: nothing decoded, the same answer.
    decoder.decoded.clear()
    assert find_bad_images(files, str(root), decode=decoder) == bad
    assert decoder.decoded == []
    # A file damaged since is checked again, and found.
    with open(files[0], "r+b") as f:
        f.truncate(40)
    assert find_bad_images(files, str(root), decode=decoder) == [0, *bad]
    assert decoder.decoded == [[files[0]]]


def test_decode_checks_every_file(tmp_path):
    root, files = _folder(tmp_path, count=5)
    decoder = _Decoder()
    assert (
        find_bad_images(files, str(root), check="decode", decode=decoder) == []
    )
    assert decoder.decoded == [files]
    with pytest.raises(ValueError, match="check='quick'"):
        find_bad_images(files, check="quick", decode=decoder)


def test_unreadable_files_go_to_the_decoder(tmp_path):
    root, files = _folder(tmp_path, count=2)
    missing = str(root / "a" / "bad_gone.png")
    decoder = _Decoder()
    assert find_bad_images([*files, missing], None, decode=decoder) == [2]
    assert decoder.decoded == [[missing]]


def test_the_default_decoder_is_tensorflows(tmp_path):
    root, files = _folder(tmp_path, count=3)
    damaged = root / "a" / "damaged.png"
    data = bytearray(_encoded("png"))
    data[40:60] = b"\0" * 20  # header and end intact, middle damaged
    damaged.write_bytes(bytes(data))
    files.append(str(damaged))
    assert find_bad_images(files, None, check="headers") == []
    assert find_bad_images(files, None, check="decode") == [3]
