import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Caches and downloads of the run go to a fresh folder, not the user's.
os.environ.setdefault("KERAS_VIT_HOME", tempfile.mkdtemp(prefix="keras-vit-"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings  # noqa: E402

# A small example budget by default; `--hypothesis-profile=thorough` for more.
for _name, _examples in (("keras_vit_ci", 6), ("thorough", 60)):
    settings.register_profile(
        _name,
        max_examples=_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
settings.load_profile("keras_vit_ci")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts from the float32 policy and a known seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


def pytest_collection_modifyitems(config, items):
    """On the JAX or PyTorch backend, only the portable tests run."""
    from tests.helpers import BACKEND_PORTABLE

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    root = str(config.rootpath)
    skip = pytest.mark.skip(
        reason=f"needs the TensorFlow backend (running on {backend})"
    )
    for item in items:
        path = os.path.relpath(str(item.path), root)
        if not path.startswith(BACKEND_PORTABLE):
            item.add_marker(skip)


# Scripts run by hand or in subprocesses, not test modules.
collect_ignore = [
    "fixtures/make_golden.py",
    "fixtures/make_transform_golden.py",
    "fixtures/make_family_golden.py",
    "fixtures/make_saved_models.py",
    "distributed_worker.py",
]
