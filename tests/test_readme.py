"""The README's first example works after the README's install step.

The install step is `pip install -e .`: keras-vit's core dependencies and
what they depend on. The first code block runs in a fresh interpreter in
which every other installed distribution (scikit-learn, tensorflow-datasets,
Pillow, matplotlib, the export converters, ...) cannot be imported, so it
passes only if its whole code path needs nothing more. The preset's file
comes from a pre-populated Hugging Face cache, offline, with the registry
entry made small (a Ti/16 at 32x32 in place of a B/16 at 224) so that the
test stays fast; the code path is the same.
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PRESET = "vit_base_patch16_224.augreg2_in21k_ft_in1k"


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _readme_blocks(language):
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _core_closure():
    """The distributions `pip install -e .` installs: the core
    dependencies of pyproject.toml and, recursively, theirs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r).name for r in project["dependencies"]]
    seen = set()
    while todo:
        name = _normalize(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(
                {"extra": ""}
            ):
                continue
            todo.append(requirement.name)
    return seen


def _blocked_modules(allowed):
    """Top-level modules that only distributions outside `allowed` give."""
    providers = importlib.metadata.packages_distributions()
    blocked = []
    for module, dists in providers.items():
        names = {_normalize(d) for d in dists}
        if names & {"keras-vit"} or names & allowed:
            continue
        blocked.append(module)
    return sorted(blocked)


def test_the_install_step_is_the_core_install():
    (install,) = [b for b in _readme_blocks("bash") if "pip install -e ." in b]
    assert "pip install -e .  " in install or "pip install -e .\n" in install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name for r in project["dependencies"]}
    # The presets on the Hub need it; it is installed by `pip install -e .`.
    assert "huggingface-hub" in core


def test_the_first_example_runs_with_only_the_core_install(tmp_path):
    first = _readme_blocks("python")[0]
    assert f'name = "{PRESET}"' in first
    allowed = _core_closure()
    assert {"keras", "tensorflow", "huggingface-hub"} <= allowed
    blocked = _blocked_modules(allowed)
    # What a fresh environment would lack must really be kept out here.
    for extra in ("sklearn", "PIL", "tensorflow_datasets", "matplotlib"):
        assert extra in blocked or extra not in sys.modules
    script = textwrap.dedent(
        """
        import dataclasses, importlib.abc, json, sys

        BLOCKED = set(json.loads(sys.argv[1]))

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.partition(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(
                        f"No module named {name!r} (not installed by "
                        "`pip install -e .`)", name=name)
                return None

        sys.meta_path.insert(0, Block())

        import numpy as np
        import safetensors.numpy
        import keras_vit
        from keras_vit import checkpoints, presets

        name = sys.argv[2]
        # A small stand-in for the B/16 file: same code path, fast.
        small = dataclasses.replace(
            presets.get_preset(name), variant="Ti/16", image_size=32)
        presets._REGISTRY[name] = small
        model = keras_vit.build_vit("Ti/16", image_size=32)
        rng = np.random.default_rng(0)
        for v in model.weights:
            v.assign(rng.normal(0, 0.02, v.shape).astype("float32"))
        arrays = {k: np.ascontiguousarray(v)
                  for k, v in checkpoints.model_arrays(model).items()}
        import huggingface_hub.constants as constants
        commit = "0" * 40
        repo = constants.HF_HUB_CACHE + "/models--timm--" + name
        import os
        os.makedirs(repo + "/refs")
        open(repo + "/refs/main", "w").write(commit)
        os.makedirs(repo + "/snapshots/" + commit)
        safetensors.numpy.save_file(
            arrays, repo + "/snapshots/" + commit + "/model.safetensors")
        import tensorflow as tf
        pixels = tf.cast(tf.random.uniform((300, 400, 3), 0, 255), tf.uint8)
        tf.io.write_file("photo.jpg", tf.io.encode_jpeg(pixels))

        exec(compile(sys.argv[3], "README.md", "exec"), {})
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        print(json.dumps({"blocked_but_loaded": loaded}))
        """
    )
    env = dict(os.environ)
    env.update(
        HF_HUB_CACHE=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        KERAS_VIT_HOME=str(tmp_path / "home"),
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(blocked), PRESET, first],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"blocked_but_loaded": []}
    # The block printed one ImageNet class name.
    from keras_vit import imagenet_labels

    assert lines[-2] in imagenet_labels()
