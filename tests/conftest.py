"""Every test sees 8 fake CPU devices; XLA_FLAGS must be set before jax is imported."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

DATA_DIR = os.environ.get("ATM_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture
def data_dir():
    """The real data directory; a skip normally, a failure under ATM_REQUIRE_DATA=1."""
    if not os.path.isdir(DATA_DIR):
        if os.environ.get("ATM_REQUIRE_DATA") == "1":
            pytest.fail(f"ATM_REQUIRE_DATA=1 but the data directory {DATA_DIR} is missing (set ATM_DATA_DIR)")
        pytest.skip(f"real data not found at {DATA_DIR}")
    return os.path.abspath(DATA_DIR)
