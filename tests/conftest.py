"""Test configuration: 8 virtual CPU devices so sharding code runs here."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402


@pytest.fixture
def pydicom_test_file():
    """``get(name)``: the path of a file pydicom ships in its wheel; skips when absent."""
    def get(name: str) -> str:
        from pydicom.data import get_testdata_file
        try:
            path = get_testdata_file(name, download=False)
        except Exception:  # noqa: BLE001 - any failure to find the bundled file
            path = None
        if not path:
            pytest.skip(f"pydicom's {name} is not installed")
        return path
    return get
