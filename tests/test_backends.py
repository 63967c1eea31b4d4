"""The model's tests on Keras' JAX and PyTorch backends."""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import pytest

from tests.helpers import BACKEND_PORTABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_model_tests_pass_on_another_backend(backend):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("started from the TensorFlow run only")
    if importlib.util.find_spec(backend) is None:
        pytest.skip(
            f"{backend} is not installed (pip install 'keras-vit[{backend}]')"
        )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            # Counting the parameters of L/16 and H/14 is the same arithmetic
            # on every backend, and building H/14 takes 18 s on JAX.
            "-k",
            "not test_parameter_counts_match_the_original",
            *BACKEND_PORTABLE,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    tail = done.stdout[-3000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) >= 100, tail
