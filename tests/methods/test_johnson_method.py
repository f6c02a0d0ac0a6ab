"""The feed-forward Johnson method with the shipped ultrasound network: contract, intensity
mapping, bad input, another architecture, the CLI and a real pydicom ultrasound frame."""

import json
import os
import shutil

import numpy as np
import pytest

from stylejax import cli
from stylejax.data import io
from stylejax.data.ultrasound import ultrasounds
from stylejax.methods import johnson as M
from stylejax.methods.registry import get_method
from stylejax.train.transform_net import HELDOUT_SEED0, META_FILE


@pytest.fixture(scope="module")
def pair():
    seeds = [HELDOUT_SEED0 + 7]
    return (ultrasounds(seeds, (64, 64), "lq").images[0],
            ultrasounds(seeds, (64, 64), "hq").images[0])


def test_registry_and_shipped_network(pair):
    assert get_method("johnson").config_class is M.JohnsonConfig
    assert os.path.exists(os.path.join(M.shipped_network(), META_FILE))
    lq, hq = pair
    out = M.transfer(lq)
    assert out.shape == lq.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0.02
    # the network brings the held-out LQ image closer to its HQ ground truth
    assert np.mean((out - hq) ** 2) < np.mean((lq - hq) ** 2)
    # deterministic without a noise seed; the noise seed changes the output, reproducibly
    np.testing.assert_array_equal(M.transfer(lq), out)
    n1, n2 = M.transfer(lq, noise_seed=1), M.transfer(lq, noise_seed=1)
    np.testing.assert_array_equal(n1, n2)
    # an image outside [0, 1] is min-max mapped: an affine copy gives the same result
    x = (lq - lq.min()) / (lq.max() - lq.min())
    np.testing.assert_allclose(M.transfer(x * 200.0 - 7.0), M.transfer(x), atol=1e-5)


def test_bad_input(pair, tmp_path):
    lq, _ = pair
    with pytest.raises(ValueError, match="2-D"):
        M.transfer(lq[None, None])
    bad = lq.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        M.transfer(bad)
    with pytest.raises(ValueError, match="too small"):
        M.transfer(lq[:5, :5])
    with pytest.raises(ValueError, match="constant"):
        M.transfer(np.full((16, 16), 5.0))
    with pytest.raises(ValueError, match="noise_seed"):
        M.JohnsonConfig(noise_seed=-1)
    with pytest.raises(ValueError, match="not found"):
        M.transfer(lq, network=str(tmp_path / "nothing"))
    # a checkpoint of another architecture
    other = tmp_path / "other"
    shutil.copytree(M.shipped_network(), other)
    with open(other / META_FILE) as f:
        meta = json.load(f)
    meta["num_residual"] = int(meta["num_residual"]) + 1
    with open(other / META_FILE, "w") as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match="another architecture"):
        M.transfer(lq, network=str(other))
    adain_dir = os.path.join(os.path.dirname(M.shipped_network()), "adain_ct", "adain")
    with pytest.raises(ValueError, match="not an exported transform network"):
        M.transfer(lq, network=adain_dir)


def test_cli(pair, tmp_path):
    lq, hq = pair
    io.write_image(str(tmp_path / "lq.png"), lq)
    io.write_image(str(tmp_path / "hq.png"), hq)
    out = tmp_path / "out.png"
    rc = cli.main(["nst", "--method", "johnson", "--content", str(tmp_path / "lq.png"),
                   "--style", str(tmp_path / "hq.png"), "-o", str(out), "--quiet"])
    assert rc in (0, None) and out.exists()
    img = io.read_image(str(out), normalize=True)
    assert img.shape == lq.shape


def test_real_pydicom_ultrasound_frame(pydicom_test_file):
    pydicom = pytest.importorskip("pydicom")
    path = pydicom_test_file("examples_ybr_color.dcm")
    ds = pydicom.dcmread(path)
    frame = np.asarray(ds.pixel_array[0], np.float32)   # RGB (pydicom converts YBR)
    grey = (frame @ np.array([0.299, 0.587, 0.114], np.float32))[:96, :96]
    out = get_method("johnson").run(grey, [grey], config=M.JohnsonConfig())
    assert out.image.shape == grey.shape and np.all(np.isfinite(out.image))
    assert out.extra["styles_ignored"] == 1 and out.steps == 0
