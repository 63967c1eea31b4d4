"""Pretrained ViT checkpoints by name: a registry, a download cache, labels.

`list_presets()` lists the registered checkpoints, `get_preset(name)` gives
one entry, `preset_path(name)` downloads a file once and returns its local
path, and `build_vit(weights=name)` / `from_preset(name)` build a model with
it. Every entry records the architecture (variant, image size, patch grid),
the class count and label set, the `pre_logits` width, the expected input
(pixels scaled to [-1, 1] for all of these releases), where the file comes
from, its published size, licence and the source's reported ImageNet-1k
top-1 accuracy where the source gives one.

Sources of the facts (file names, URLs, sizes, resolutions, accuracies):

- google-research/vision_transformer, README.md ("Available ViT models":
  the `gs://vit_models/imagenet21k`, `imagenet21k+imagenet2012` and
  `augreg` folders, and the table of recommended AugReg checkpoints with
  their sizes and ImageNet accuracies), vit_jax.ipynb (the `gsutil ls -l`
  listing of `gs://vit_models/imagenet21k` and `imagenet21k+imagenet2012`
  with each file's size), vit_jax/configs/models.py (the architectures).
  Licence of code and checkpoints: Apache-2.0. Files are served over HTTPS
  from https://storage.googleapis.com/vit_models/.
- huggingface/pytorch-image-models (timm), timm/models/vision_transformer.py
  `default_cfgs` (names, Hub repos `timm/<name>`, input sizes, class
  counts, licence `apache-2.0`, mean = std = 0.5, i.e. [-1, 1]) and
  results/results-imagenet.csv (top-1 accuracy and parameter count of each
  ImageNet-1k model, measured by timm).

The sources publish no checksums for these files. A download is checked
against the published size (a coarse guard, with a tolerance wide enough
never to refuse a correct file: 5% or one unit of the published figure),
`.npz` files against the CRC-32 of every array in the archive,
`.safetensors` files against their header and length. Hub downloads are
checked by `huggingface_hub` as it does: the length the server announces
(and, for files stored with Xet, the chunk hashes); keras-vit then checks
the `.safetensors` header and length. `register_preset` adds an entry (a
mirror, a private checkpoint) with a `sha256` that is then enforced.

Each entry also records its evaluation transform (`Preset.transform`, a
`keras_vit.transform.Transform`): the original releases are evaluated on
the whole image stretched to the model's size (as their input pipeline
does), timm's files with timm's own transform (the shorter side resized
to `size / crop_pct` with a bicubic filter, centre crop; `crop_pct` 0.9 at
224, 1.0 at 384). All of them scale pixels to [-1, 1] (mean = std = 0.5).

Files are cached under `$KERAS_VIT_HOME/weights` (default
`$KERAS_HOME/keras_vit/weights`, i.e. `~/.keras/keras_vit/weights`); Hub
files in the `huggingface_hub` cache. Set `KERAS_VIT_OFFLINE=1` (or
`HF_HUB_OFFLINE=1`) to never touch the network.
"""

import contextlib
import dataclasses
import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from keras_vit.transform import Transform
from keras_vit.variants import VARIANTS
from keras_vit.variants import decode_variant

_GCS = "https://storage.googleapis.com/vit_models/"
_LICENCE = "Apache-2.0"
IMAGENET_1K = "imagenet-1k"
IMAGENET_21K = "imagenet-21k"
_LABEL_SETS = {IMAGENET_1K: 1000, IMAGENET_21K: 21843, None: 0}


class DownloadError(OSError):
    """A checkpoint could not be fetched or failed its check; see message."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One pretrained checkpoint.

    Attributes:
        name: str. The registry name (the source's own name for the file).
        variant: str. One of `keras_vit.VARIANTS`.
        image_size: int. The side of the images it was trained on.
        num_classes: int. Classes of its head; 0 when it has none.
        labels: str or `None`. The label set of the head: `"imagenet-1k"`
            (names shipped, `imagenet_labels()`), `"imagenet-21k"` or
            `None`.
        representation_size: int or `None`. Width of its tanh `pre_logits`
            layer, if any.
        url: str or `None`. HTTPS address of the file.
        hub_repo: str or `None`. Hugging Face Hub repository of the file.
        hub_file: str. The file in `hub_repo`.
        size: str or `None`. The file size as the source publishes it
            (`"391 MiB"`, `"1.22 GiB"`).
        sha256: str or `None`. Hex SHA-256 of the file, enforced if given.
        licence: str.
        accuracy: float or `None`. ImageNet-1k top-1 (%) reported by the
            source, at `image_size`.
        accuracy_source: str or `None`. Where `accuracy` comes from.
        parameters: int or `None`. Parameter count the source reports, to
            the precision it reports it (`parameters_precision`).
        parameters_precision: int. The rounding unit of `parameters`.
        input_range: tuple or `None`. The pixel range the model expects;
            `None` when its normalization differs per channel (ImageNet's
            or CLIP's mean/std: `transform` gives it).
        description: str.
        transform: `keras_vit.transform.Transform`. How an image becomes
            the model's input at evaluation (resize, crop, filter,
            mean/std), as the source measured `accuracy` with.
        architecture: dict. `ViTConfig` fields beyond the variant's that
            the file's arrays do not say (`activation`,
            `layer_norm_epsilon`), and those its family fixes (`pooling`,
            `layer_scale`, ...). Empty for the original ViT.
    """

    name: str
    variant: str
    image_size: int
    num_classes: int
    labels: str | None
    representation_size: int | None = None
    url: str | None = None
    hub_repo: str | None = None
    hub_file: str = "model.safetensors"
    size: str | None = None
    sha256: str | None = None
    licence: str = _LICENCE
    accuracy: float | None = None
    accuracy_source: str | None = None
    parameters: int | None = None
    parameters_precision: int = 10_000
    input_range: tuple | None = (-1.0, 1.0)
    description: str = ""
    transform: Transform = Transform()
    architecture: dict = dataclasses.field(default_factory=dict)

    @property
    def patch_size(self):
        return decode_variant(self.variant)["patch_size"]

    @property
    def grid_size(self):
        side = self.image_size // self.patch_size
        return (side, side)

    @property
    def source(self):
        if self.hub_repo:
            return f"hf://{self.hub_repo}/{self.hub_file}"
        return self.url

    @property
    def file_name(self):
        if self.hub_repo:
            return self.hub_file
        return os.path.basename(urllib.parse.urlsplit(self.url).path)

    def to_dict(self):
        out = dataclasses.asdict(self)
        out.update(
            patch_size=self.patch_size,
            grid_size=list(self.grid_size),
            input_range=(
                None if self.input_range is None else list(self.input_range)
            ),
            source=self.source,
            transform=self.transform.to_dict(),
        )
        return out


_REGISTRY = {}


def register_preset(preset, overwrite=False):
    """Adds a `Preset` to the registry (a mirror, your own checkpoint).

    Raises:
        TypeError: `preset` is not a `Preset`.
        ValueError: the entry is malformed, or the name is taken and
            `overwrite` is false.
    """
    if not isinstance(preset, Preset):
        raise TypeError(
            f"Expected a keras_vit.presets.Preset. Received: {preset!r}"
        )
    if preset.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A preset named {preset.name!r} exists; pass overwrite=True to "
            "replace it"
        )
    _check_preset(preset)
    _REGISTRY[preset.name] = preset
    return preset


def _check_preset(p):
    problems = []
    if p.variant not in VARIANTS:
        problems.append(f"variant {p.variant!r} is not one of {VARIANTS}")
    elif p.image_size % p.patch_size:
        problems.append(
            f"image_size {p.image_size} is not a multiple of the patch size "
            f"{p.patch_size}"
        )
    if p.labels not in _LABEL_SETS:
        problems.append(f"labels {p.labels!r} not one of {list(_LABEL_SETS)}")
    elif p.labels and _LABEL_SETS[p.labels] != p.num_classes:
        problems.append(
            f"{p.num_classes} classes but the {p.labels} label set has "
            f"{_LABEL_SETS[p.labels]}"
        )
    if bool(p.url) == bool(p.hub_repo):
        problems.append("exactly one of url and hub_repo must be given")
    if p.url and not p.url.startswith(("https://", "http://", "file://")):
        problems.append(f"url {p.url!r} is not an http(s) or file address")
    if p.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", p.sha256):
        problems.append(f"sha256 {p.sha256!r} is not 64 hex digits")
    if p.size is not None:
        _published_bytes(p.size)
    if problems:
        raise ValueError(f"Malformed preset {p.name!r}: " + "; ".join(problems))


def list_presets(variant=None, labels=None):
    """Names of the registered checkpoints, optionally filtered.

    >>> "vit_base_patch16_224.augreg2_in21k_ft_in1k" in list_presets("B/16")
    True
    """
    return [
        name
        for name, p in _REGISTRY.items()
        if (variant is None or p.variant == variant)
        and (labels is None or p.labels == labels)
    ]


def is_preset(name):
    return isinstance(name, str) and name in _REGISTRY


def close_names(name, n=3):
    """Registered names that resemble `name` (for error messages)."""
    return difflib.get_close_matches(str(name), list(_REGISTRY), n=n)


def get_preset(name):
    """The `Preset` registered under `name`.

    Raises:
        ValueError: no such preset (the message lists close names).
    """
    if is_preset(name):
        return _REGISTRY[name]
    close = close_names(name)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ValueError(
        f"Unknown preset: {name!r}.{hint} `keras_vit.list_presets()` (or "
        "`keras-vit weights list`) lists them all."
    )


# ---------------------------------------------------------------- labels


def _resource(name):
    return os.path.join(os.path.dirname(__file__), "resources", name)


def imagenet_labels():
    """The 1,000 ImageNet-1k class names in the order of the class indices.

    The WordNet synsets in class order and their lemmas, as timm ships them
    (timm/data/_info/imagenet_synsets.txt and imagenet_synset_to_lemma.txt,
    Apache-2.0); the file is `keras_vit/resources/imagenet1k_labels.tsv`.

    >>> imagenet_labels()[0]
    'tench, Tinca tinca'
    """
    with open(_resource("imagenet1k_labels.tsv"), encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t", 1)[1] for line in f]


def preset_labels(name):
    """Class names of a preset's head, or `None` when not shipped."""
    if get_preset(name).labels == IMAGENET_1K:
        return imagenet_labels()
    return None


# ---------------------------------------------------------- the cache


def weights_home():
    """The folder downloaded checkpoint files are cached in."""
    from keras_vit.files import keras_vit_home

    return os.path.join(keras_vit_home(), "weights")


def _offline():
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("KERAS_VIT_OFFLINE", "HF_HUB_OFFLINE")
    )


def _cache_path(preset):
    parts = urllib.parse.urlsplit(preset.url)
    relative = urllib.parse.unquote(parts.path).lstrip("/")
    folder = re.sub(r"[^A-Za-z0-9._+-]", "_", parts.netloc) or "local"
    return os.path.join(weights_home(), folder, *relative.split("/"))


def cached_path(name):
    """The local path of a preset's file if it is cached, else `None`."""
    preset = get_preset(name)
    if preset.hub_repo:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        path = try_to_load_from_cache(preset.hub_repo, preset.hub_file)
        return path if isinstance(path, str) else None
    path = _cache_path(preset)
    return path if os.path.isfile(path) else None


def preset_path(name, progress=True):
    """Downloads a preset's file once and returns its local path.

    A file is downloaded under a temporary name, checked (published size,
    `sha256` when known, the archive's CRCs or the safetensors header) and
    only then renamed into the cache: an interrupted or corrupt transfer
    leaves nothing behind, and the next call starts again.

    Args:
        name: str. A name from `list_presets()`.
        progress: bool. Show a progress bar while downloading. Defaults to
            `True`.

    Returns:
        The path of the file.

    Raises:
        ValueError: unknown name.
        DownloadError: the file is not cached and cannot be fetched (the
            message names the address and where to place the file by
            hand), or the download failed its check.
    """
    preset = get_preset(name)
    if preset.hub_repo:
        return _hub_path(preset, progress)
    target = _cache_path(preset)
    if os.path.isfile(target):
        return target
    if _offline():
        raise DownloadError(_manual_hint(preset, target, "offline mode"))
    return _download(preset, target, progress)


def _manual_hint(preset, target, cause):
    return (
        f"Could not fetch checkpoint {preset.name!r} from {preset.url} "
        f"({cause}). Download that file on a machine with internet access "
        f"and place it at {target}, or pass the file's path as weights=."
    )


# Seconds to wait for a server to answer; a stalled transfer fails after as
# long without data.
TIMEOUT = 20


class _Progress:
    """A one-line download progress on standard error (not stdout, which
    keeps to a command's result)."""

    def __init__(self, name, total, enabled):
        self.name, self.total, self.enabled = name, total, enabled
        self.done, self.shown = 0, -1

    def update(self, count):
        self.done += count
        if not self.enabled:
            return
        percent = int(100 * self.done / self.total) if self.total else None
        mib = self.done / 1024**2
        if percent is not None and percent == self.shown:
            return
        self.shown = percent
        what = f"{percent:3d}%" if percent is not None else f"{mib:.1f} MiB"
        sys.stderr.write(f"\rdownloading {self.name}: {what}")
        sys.stderr.flush()

    def close(self):
        if self.enabled and self.shown != -1:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _fetch(url, path, progress, name):
    """Streams `url` into `path`; raises `OSError` or `ValueError` with the
    cause (a cut transfer: fewer bytes than the server announced)."""
    request = urllib.request.Request(url, headers={"User-Agent": "keras-vit"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _Progress(name, total, progress)
        try:
            with open(path, "wb") as f:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and bar.done != total:
        raise ValueError(
            f"the transfer was cut after {bar.done} of {total} bytes"
        )


def _made_folders(target):
    """The folders `os.makedirs` would create for `target`'s parent,
    outermost first (removed again when a download fails)."""
    made, folder = [], os.path.dirname(os.path.abspath(target))
    while folder and not os.path.isdir(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    return made[::-1]


def _download(preset, target, progress):
    from keras_vit.files import publish

    created = _made_folders(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(target))
    published = False
    try:
        path = os.path.join(workdir, os.path.basename(target))
        try:
            _fetch(preset.url, path, progress, preset.file_name)
        except KeyboardInterrupt:
            raise
        except (OSError, ValueError, urllib.error.URLError) as error:
            cause = getattr(error, "reason", None) or error
            raise DownloadError(
                _manual_hint(preset, target, str(cause) or repr(cause))
            ) from error
        verify_file(path, preset)
        publish(path, target)
        published = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not published:
            for folder in reversed(created):  # innermost first
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only if empty
    return target


def _reachable(url, timeout=5.0):
    """`None` if a TCP connection to `url`'s host opens within `timeout`
    seconds, else the reason (no name resolution, refused, timed out)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout):
            return None
    except OSError as error:
        return str(error) or type(error).__name__


@contextlib.contextmanager
def _quiet_hub_logs():
    """`huggingface_hub` logs each retry as a warning; the error that ends
    the call says all of it in one line."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def _hub_path(preset, progress):
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import are_progress_bars_disabled
        from huggingface_hub.utils import disable_progress_bars
        from huggingface_hub.utils import enable_progress_bars
    except ImportError as error:
        raise ImportError(
            f"Checkpoint {preset.name!r} is on the Hugging Face Hub and "
            "needs huggingface_hub, a keras-vit dependency: reinstall "
            "keras-vit (`pip install keras-vit`)."
        ) from error
    offline = _offline()
    cached = cached_path(preset.name)
    if cached is None and not offline:
        # One quick look before huggingface_hub's retries (five, 30 s).
        unreachable = _reachable(constants.ENDPOINT)
        if unreachable:
            raise DownloadError(
                _hub_hint(preset, f"{constants.ENDPOINT}: {unreachable}")
            )
    was_off = are_progress_bars_disabled()
    if progress:
        enable_progress_bars()
    else:
        disable_progress_bars()
    try:
        with _quiet_hub_logs():
            path = hf_hub_download(
                preset.hub_repo,
                preset.hub_file,
                local_files_only=offline or cached is not None,
            )
    except huggingface_hub.errors.HfHubHTTPError as error:
        raise DownloadError(_hub_hint(preset, error)) from error
    except (OSError, ValueError) as error:
        # LocalEntryNotFoundError (offline, not cached) is an OSError.
        cause = error
        if offline:
            cause = "offline mode (HF_HUB_OFFLINE or KERAS_VIT_OFFLINE)"
        raise DownloadError(_hub_hint(preset, cause)) from error
    finally:
        if was_off:
            disable_progress_bars()
        else:
            enable_progress_bars()
    if preset.sha256 is not None:
        verify_file(path, preset)
    elif path.endswith(".safetensors"):
        _check_safetensors(path, preset, os.path.getsize(path))
    return path


def _one_line(error):
    text = " ".join(str(error).split())
    return text.rstrip(".")


def _hub_hint(preset, error):
    return (
        f"Could not fetch checkpoint {preset.name!r} from the Hugging Face "
        f"Hub (repository {preset.hub_repo!r}, file {preset.hub_file!r}): "
        f"{_one_line(error)}. With internet access run `hf download "
        f"{preset.hub_repo} {preset.hub_file}` to fill the cache, or "
        "download the file and pass its path as weights=."
    )


# ---------------------------------------------------------- checks


_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _published_bytes(size):
    """`"391 MiB"` -> (bytes, tolerance).

    The tolerance is one unit of the last published digit or 5% of the
    size, whichever is larger: wide enough for any rounding (or MB for
    MiB), so a correct file is never refused; a cut transfer is caught by
    the announced length and the archive's own checks.
    """
    m = re.fullmatch(r"\s*([0-9]+)(?:\.([0-9]+))?\s*(B|KiB|MiB|GiB)\s*", size)
    if not m:
        raise ValueError(
            f"A size must read like '391 MiB' or '1.22 GiB'. Received: {size!r}"
        )
    whole, decimals, unit = m.groups()
    decimals = decimals or ""
    value = float(f"{whole}.{decimals}" if decimals else whole)
    unit_bytes = _UNITS[unit]
    expected = value * unit_bytes
    return expected, max(unit_bytes / 10 ** len(decimals), 0.05 * expected)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path, preset):
    """Checks a downloaded file; raises `DownloadError` naming the fault."""
    actual = os.path.getsize(path)
    if preset.sha256 is not None:
        digest = _sha256(path)
        if digest != preset.sha256:
            raise DownloadError(
                f"Checksum mismatch for {preset.name!r} from "
                f"{preset.source}: SHA-256 {digest}, expected "
                f"{preset.sha256}. The file was not kept."
            )
    if preset.size is not None:
        expected, tolerance = _published_bytes(preset.size)
        if abs(actual - expected) > tolerance:
            raise DownloadError(
                f"The file of {preset.name!r} from {preset.source} is "
                f"{actual} bytes; the source publishes {preset.size}. "
                "The transfer was cut or the file changed; it was not kept."
            )
    if path.endswith(".npz"):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise DownloadError(
                f"The file of {preset.name!r} from {preset.source} is not a "
                f"complete .npz archive ({error}); it was not kept."
            ) from error
        if bad is not None:
            raise DownloadError(
                f"The file of {preset.name!r} from {preset.source} fails "
                f"its CRC check at {bad!r}; it was not kept."
            )
    elif path.endswith(".safetensors"):
        _check_safetensors(path, preset, actual)


def _check_safetensors(path, preset, actual):
    problem = None
    with open(path, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < size <= min(actual - 8, 100 * 1024**2):
            problem = "no valid header length"
        else:
            try:
                header = json.loads(f.read(size))
                end = max(
                    info["data_offsets"][1]
                    for key, info in header.items()
                    if key != "__metadata__"
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                problem = "an unreadable header"
            else:
                if 8 + size + end != actual:
                    problem = (
                        f"{actual} bytes where its header describes "
                        f"{8 + size + end}"
                    )
    if problem:
        raise DownloadError(
            f"The file of {preset.name!r} from {preset.source} is not a "
            f"complete .safetensors file ({problem}); it was not kept."
        )


# -------------------------------------------------------- the registry

_TIMM_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L"}
_TIMM_SIZES["huge"] = "H"


def _timm(name, accuracy=None, parameters=None, description=""):
    """An entry of timm's `default_cfgs`, from its name alone."""
    m = re.fullmatch(r"vit_([a-z]+)_patch([0-9]+)_([0-9]+)\.(\w+)", name)
    size, patch, resolution, tag = m.groups()
    if tag.endswith("in1k"):
        num_classes, labels = 1000, IMAGENET_1K
    elif tag == "orig_in21k":
        num_classes, labels = 0, None  # timm dropped head and pre_logits
    else:
        num_classes, labels = 21843, IMAGENET_21K
    return Preset(
        name=name,
        variant=f"{_TIMM_SIZES[size]}/{patch}",
        image_size=int(resolution),
        num_classes=num_classes,
        labels=labels,
        hub_repo=f"timm/{name}",
        licence="Apache-2.0",
        accuracy=accuracy,
        accuracy_source=(
            "timm results/results-imagenet.csv" if accuracy else None
        ),
        parameters=parameters,
        description=description,
        # timm's default_cfgs: bicubic, crop_pct 0.9 at 224 (1.0 above).
        transform=Transform(
            resize="crop",
            crop_pct=0.9 if int(resolution) == 224 else 1.0,
            interpolation="bicubic",
        ),
    )


def _gcs(
    path,
    variant,
    image_size,
    size,
    labels,
    representation_size=None,
    accuracy=None,
    description="",
):
    return Preset(
        name=path,
        variant=variant,
        image_size=image_size,
        num_classes=_LABEL_SETS[labels],
        labels=labels,
        representation_size=representation_size,
        url=_GCS + urllib.parse.quote(path) + ".npz",
        size=size,
        accuracy=accuracy,
        accuracy_source=(
            "google-research/vision_transformer README" if accuracy else None
        ),
        description=description,
    )


_ORIGINAL_21K = "Original release: ImageNet-21k pretraining (ViT paper)."
_ORIGINAL_1K = (
    "Original release: ImageNet-21k pretraining, fine-tuned on ImageNet-1k."
)
_AUGREG_21K = (
    "AugReg (Steiner et al., 2021): ImageNet-21k pretraining, the "
    "recommended checkpoint of its size."
)
_AUGREG_1K = (
    "AugReg: the recommended ImageNet-21k checkpoint of its size fine-tuned "
    "on ImageNet-1k at 384."
)
_AUGREG_LONG = "-i21k-300ep-lr_0.001-"
_FINETUNE_384 = "--imagenet2012-steps_20k-lr_{}-res_384"

_PRESETS = [
    # gs://vit_models/imagenet21k (sizes: vit_jax.ipynb listing). These
    # files keep the tanh pre_logits layer of the pretraining head.
    _gcs(
        "imagenet21k/ViT-B_8",
        "B/8",
        224,
        "393.72 MiB",
        IMAGENET_21K,
        768,
        description=_ORIGINAL_21K,
    ),
    _gcs(
        "imagenet21k/ViT-B_16",
        "B/16",
        224,
        "393.69 MiB",
        IMAGENET_21K,
        768,
        description=_ORIGINAL_21K,
    ),
    _gcs(
        "imagenet21k/ViT-B_32",
        "B/32",
        224,
        "400.01 MiB",
        IMAGENET_21K,
        768,
        description=_ORIGINAL_21K,
    ),
    _gcs(
        "imagenet21k/ViT-L_16",
        "L/16",
        224,
        "1.22 GiB",
        IMAGENET_21K,
        1024,
        description=_ORIGINAL_21K,
    ),
    _gcs(
        "imagenet21k/ViT-L_32",
        "L/32",
        224,
        "1.23 GiB",
        IMAGENET_21K,
        1024,
        description=_ORIGINAL_21K,
    ),
    _gcs(
        "imagenet21k/ViT-H_14",
        "H/14",
        224,
        "2.46 GiB",
        IMAGENET_21K,
        1280,
        description=_ORIGINAL_21K,
    ),
    # gs://vit_models/imagenet21k+imagenet2012: "-224" files at 224, the
    # others at the paper's fine-tuning resolution, 384.
    _gcs(
        "imagenet21k+imagenet2012/ViT-B_16",
        "B/16",
        384,
        "331.4 MiB",
        IMAGENET_1K,
        description=_ORIGINAL_1K,
    ),
    _gcs(
        "imagenet21k+imagenet2012/ViT-B_16-224",
        "B/16",
        224,
        "330.29 MiB",
        IMAGENET_1K,
        description=_ORIGINAL_1K,
    ),
    _gcs(
        "imagenet21k+imagenet2012/ViT-B_32",
        "B/32",
        384,
        "336.89 MiB",
        IMAGENET_1K,
        description=_ORIGINAL_1K,
    ),
    _gcs(
        "imagenet21k+imagenet2012/ViT-L_16",
        "L/16",
        384,
        "1.14 GiB",
        IMAGENET_1K,
        description=_ORIGINAL_1K,
    ),
    _gcs(
        "imagenet21k+imagenet2012/ViT-L_16-224",
        "L/16",
        224,
        "1.13 GiB",
        IMAGENET_1K,
        description=_ORIGINAL_1K,
    ),
    _gcs(
        "imagenet21k+imagenet2012/ViT-L_32",
        "L/32",
        384,
        "1.14 GiB",
        IMAGENET_1K,
        description=_ORIGINAL_1K,
    ),
]
# gs://vit_models/augreg: the README's recommended checkpoints, each with
# its ImageNet-1k fine-tune at 384 and that fine-tune's accuracy.
for _variant, _stem, _size, _lr, _accuracy in (
    ("Ti/16", "Ti_16", "37 MiB", "0.03", 78.22),
    ("S/16", "S_16", "115 MiB", "0.03", 83.73),
    ("S/32", "S_32", "118 MiB", "0.01", 79.58),
    ("B/16", "B_16", "391 MiB", "0.03", 85.49),
    ("B/32", "B_32", "398 MiB", "0.01", 83.59),
    ("L/16", "L_16", "1243 MiB", "0.01", 85.59),
):
    _hparams = {
        "Ti_16": "aug_none-wd_0.03-do_0.0-sd_0.0",
        "S_16": "aug_light1-wd_0.03-do_0.0-sd_0.0",
        "S_32": "aug_none-wd_0.1-do_0.0-sd_0.0",
        "B_16": "aug_medium1-wd_0.1-do_0.0-sd_0.0",
        "B_32": "aug_light1-wd_0.1-do_0.0-sd_0.0",
        "L_16": "aug_strong1-wd_0.1-do_0.0-sd_0.0",
    }[_stem]
    _pretrained = f"augreg/{_stem}{_AUGREG_LONG}{_hparams}"
    _PRESETS.append(
        _gcs(
            _pretrained,
            _variant,
            224,
            _size,
            IMAGENET_21K,
            description=_AUGREG_21K,
        )
    )
    _PRESETS.append(
        _gcs(
            _pretrained + _FINETUNE_384.format(_lr),
            _variant,
            384,
            None,
            IMAGENET_1K,
            accuracy=_accuracy,
            description=_AUGREG_1K,
        )
    )

# timm's Hub repositories (model.safetensors in each).
_PRESETS += [
    _timm(
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        85.108,
        86_570_000,
        "AugReg ImageNet-21k checkpoint re-fine-tuned on ImageNet-1k by "
        "timm; the best B/16 at 224.",
    ),
    _timm(
        "vit_base_patch8_224.augreg2_in21k_ft_in1k",
        86.252,
        86_580_000,
        "AugReg ImageNet-21k checkpoint re-fine-tuned on ImageNet-1k by timm.",
    ),
]
for _name, _accuracy, _parameters in (
    ("vit_tiny_patch16_224", 75.452, 5_720_000),
    ("vit_tiny_patch16_384", 78.438, 5_790_000),
    ("vit_small_patch32_224", 76.010, 22_880_000),
    ("vit_small_patch32_384", 80.476, 22_920_000),
    ("vit_small_patch16_224", 81.402, 22_050_000),
    ("vit_small_patch16_384", 83.814, 22_200_000),
    ("vit_base_patch32_224", 80.732, 88_220_000),
    ("vit_base_patch32_384", 83.358, 88_300_000),
    ("vit_base_patch16_224", 84.534, 86_570_000),
    ("vit_base_patch16_384", 86.010, 86_860_000),
    ("vit_base_patch8_224", 85.838, 86_580_000),
    ("vit_large_patch16_224", 85.856, 304_330_000),
    ("vit_large_patch16_384", 87.096, 304_720_000),
):
    _PRESETS.append(
        _timm(
            _name + ".augreg_in21k_ft_in1k",
            _accuracy,
            _parameters,
            "AugReg: ImageNet-21k pretraining, ImageNet-1k fine-tune.",
        )
    )
for _name in (
    "vit_tiny_patch16_224",
    "vit_small_patch32_224",
    "vit_small_patch16_224",
    "vit_base_patch32_224",
    "vit_base_patch16_224",
    "vit_base_patch8_224",
    "vit_large_patch16_224",
):
    _PRESETS.append(
        _timm(
            _name + ".augreg_in21k",
            description="AugReg: ImageNet-21k pretraining (21,843 classes).",
        )
    )
for _name, _accuracy, _parameters in (
    ("vit_base_patch16_224", 81.782, 86_570_000),
    ("vit_base_patch16_384", 84.212, 86_860_000),
    ("vit_large_patch32_384", 81.508, 306_630_000),
):
    _PRESETS.append(
        _timm(
            _name + ".orig_in21k_ft_in1k",
            _accuracy,
            _parameters,
            "Original release, ImageNet-1k fine-tune, as timm converted it.",
        )
    )
for _name in (
    "vit_base_patch32_224",
    "vit_base_patch16_224",
    "vit_large_patch32_224",
    "vit_large_patch16_224",
    "vit_huge_patch14_224",
):
    _PRESETS.append(
        _timm(
            _name + ".orig_in21k",
            description="Original release, ImageNet-21k pretraining; timm "
            "keeps the backbone only (no head, no pre_logits).",
        )
    )

# ------------------------------------------- the families fine-tuned today

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _family(
    name,
    variant,
    image_size,
    num_classes,
    architecture,
    description,
    crop_pct=0.9,
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    hub_repo=None,
):
    """A timm checkpoint of a ViT family, as timm's `default_cfgs` has it."""
    transform = Transform(
        resize="crop",
        crop_pct=crop_pct,
        interpolation="bicubic",
        mean=mean,
        std=std,
    )
    return Preset(
        name=name,
        variant=variant,
        image_size=image_size,
        num_classes=num_classes,
        labels=IMAGENET_1K if num_classes == 1000 else None,
        hub_repo=hub_repo or f"timm/{name}",
        licence="Apache-2.0",
        description=description,
        transform=transform,
        # The same for every channel, else (ImageNet's, CLIP's mean/std)
        # no single range: `transform` says it.
        input_range=transform.input_range,
        architecture=dict(architecture),
    )


_DEIT = "DeiT (Touvron et al., 2021): ImageNet-1k only, strong augmentation."
_DEIT_DISTILLED = (
    "DeiT distilled from a CNN teacher: a distillation token and a second "
    "head (head_dist), the two heads averaged."
)
_DINOV2 = (
    "DINOv2 (Oquab et al., 2023): self-supervised on LVD-142M; features "
    "only (no head), LayerScale; 518x518 (37x37 patches of 14)."
)
_DINOV2_REG = _DINOV2[:-1] + "; 4 register tokens (Darcet et al., 2024)."
_CLIP_OPENAI = (
    "OpenAI CLIP image tower (Radford et al., 2021), QuickGELU as trained; "
    "the head is CLIP's image-text projection (no classes)."
)
_CLIP_OPENAI_TIMM = (
    "OpenAI CLIP image tower with GELU where it was trained with QuickGELU, "
    "as timm's vit_*_clip_224.openai computes it (use the _quickgelu_ name "
    "for CLIP's own outputs); the head is the image-text projection."
)
_CLIP_LAION = (
    "OpenCLIP image tower trained on LAION-2B (GELU); the head is the "
    "image-text projection (no classes)."
)
_SIGLIP = (
    "SigLIP (Zhai et al., 2023) image tower trained on WebLI: no class "
    "token, attention pooling (MAP head); features only."
)
_CLIP = dict(pre_norm=True, layer_norm_epsilon=1e-5)
_FAMILY_PRESETS = []
for _size, _variant in (("tiny", "Ti/16"), ("small", "S/16"), ("base", "B/16")):
    _FAMILY_PRESETS += [
        _family(
            f"deit_{_size}_patch16_224.fb_in1k", _variant, 224, 1000, {}, _DEIT
        ),
        _family(
            f"deit_{_size}_distilled_patch16_224.fb_in1k",
            _variant,
            224,
            1000,
            dict(distillation_token=True),
            _DEIT_DISTILLED,
        ),
    ]
for _size, _variant in (("small", "S/14"), ("base", "B/14"), ("large", "L/14")):
    _FAMILY_PRESETS += [
        _family(
            f"vit_{_size}_patch14_dinov2.lvd142m",
            _variant,
            518,
            0,
            dict(layer_scale=1e-5),
            _DINOV2,
            crop_pct=1.0,
        ),
        _family(
            f"vit_{_size}_patch14_reg4_dinov2.lvd142m",
            _variant,
            518,
            0,
            dict(layer_scale=1e-5, num_registers=4, class_token_position=False),
            _DINOV2_REG,
            crop_pct=1.0,
        ),
    ]
for _stem, _variant, _width, _openai_crop, _laion_crop, _laion_mean in (
    ("vit_base_patch16", "B/16", 512, 0.9, 1.0, _CLIP_MEAN),
    ("vit_base_patch32", "B/32", 512, 0.9, 0.9, _CLIP_MEAN),
    ("vit_large_patch14", "L/14", 768, 1.0, 1.0, (0.5, 0.5, 0.5)),
):
    _laion_std = _CLIP_STD if _laion_mean == _CLIP_MEAN else (0.5, 0.5, 0.5)
    _FAMILY_PRESETS += [
        _family(
            f"{_stem}_clip_224.openai",
            _variant,
            224,
            _width,
            _CLIP,
            _CLIP_OPENAI_TIMM,
            crop_pct=_openai_crop,
            mean=_CLIP_MEAN,
            std=_CLIP_STD,
        ),
        _family(
            f"{_stem}_clip_quickgelu_224.openai",
            _variant,
            224,
            _width,
            dict(_CLIP, activation="quick_gelu"),
            _CLIP_OPENAI,
            crop_pct=_openai_crop,
            mean=_CLIP_MEAN,
            std=_CLIP_STD,
            hub_repo=f"timm/{_stem}_clip_224.openai",
        ),
        _family(
            f"{_stem}_clip_224.laion2b",
            _variant,
            224,
            _width,
            _CLIP,
            _CLIP_LAION,
            crop_pct=_laion_crop,
            mean=_laion_mean,
            std=_laion_std,
        ),
    ]
for _resolution in (224, 384):
    _FAMILY_PRESETS.append(
        _family(
            f"vit_base_patch16_siglip_{_resolution}.webli",
            "B/16",
            _resolution,
            0,
            dict(class_token=False, pooling="map"),
            _SIGLIP,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
    )
_PRESETS += _FAMILY_PRESETS

for _preset in _PRESETS:
    register_preset(_preset)
del _preset, _PRESETS, _FAMILY_PRESETS
