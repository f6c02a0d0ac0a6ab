"""The feed-forward AdaIN method with the shipped CT decoders: contract, properties, CLI."""

import json
import os
import shutil

import numpy as np
import pytest
import scipy.ndimage

from stylejax import cli
from stylejax.data import io
from stylejax.data.ct import ct_slices
from stylejax.methods import adain as M
from stylejax.methods.registry import get_method
from stylejax.models import adain as models_adain


@pytest.fixture(scope="module")
def slices():
    # seed 123456 is not in the decoders' training pool (seeds 0..95)
    return ct_slices([123456, 123457], (64, 64), kernels=("soft", "lung"))


def test_reexport_and_registry():
    assert M.adain is models_adain.adain
    assert get_method("adain").config_class is M.AdaINConfig
    assert set(models_adain.VARIANTS) < set(M.DECODERS)
    for v in M.DECODERS:
        assert os.path.exists(os.path.join(M.shipped_decoder(v), "adain.json"))


def test_properties_in_hu(slices):
    soft, lung = slices.images[0, 0], slices.images[1, 1]
    out = M.transfer(soft, lung)
    assert out.shape == soft.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    # HU in, HU out: air stays near -1000 and the body near soft tissue.
    assert out.min() < -500 and out.max() > 0
    # alpha = 0 ignores the style; AdaIN(f, f) = f, so the content as its own style
    # gives the alpha = 0 result.
    a0 = M.transfer(soft, lung, alpha=0.0)
    np.testing.assert_allclose(a0, M.transfer(soft, slices.images[1, 0], alpha=0.0), atol=1e-3)
    np.testing.assert_allclose(M.transfer(soft, soft, alpha=1.0), a0, atol=0.5)
    # [0, 1] input (display image): result in [0, 1].
    unit = np.clip((soft + 1000) / 2000, 0, 1)
    u = M.transfer(unit, np.clip((lung + 1000) / 2000, 0, 1))
    assert u.min() >= 0 and u.max() <= 1 and u.std() > 0.05


def _anisotropy(image, body):
    """Ratio of the larger to the smaller mean squared first difference (rows vs columns)
    over neighbouring body pixels: ~1 for isotropic texture, large for stripes."""
    gy = np.diff(image, axis=0)[body[1:] & body[:-1]]
    gx = np.diff(image, axis=1)[body[:, 1:] & body[:, :-1]]
    a, b = np.mean(gy ** 2), np.mean(gx ** 2)
    return max(a, b) / min(a, b)


@pytest.mark.parametrize("variant", M.DECODERS)
def test_shipped_decoders_draw_no_stripes(slices, variant):
    # Decoders fed sub-sampled features drew grid-aligned stripes to meet the style
    # loss's pixel-scale statistics (row/column difference energy 2.5-7x apart inside
    # the body); the true kernels' textures are isotropic (1.05-1.3 here).
    a, b = slices.images[0], slices.images[1]  # two seeds, [soft, lung] each
    body = scipy.ndimage.binary_erosion(slices.labels[0] != 0, iterations=2)  # no outline
    limit = 1.25 * max(_anisotropy(a[0], body), _anisotropy(a[1], body))
    for content, style in ((a[0], b[1]), (a[1], b[0])):  # soft -> lung, lung -> soft
        out = M.transfer(content, style, variant=variant)
        assert _anisotropy(out, body) < limit


@pytest.mark.parametrize("variant", M.DECODERS)
def test_shipped_decoders_draw_no_border_lines(slices, variant):
    # The encoder's zero padding made edge responses at the image border, which AdaIN
    # rescaled and the decoders drew as lines 200-700 HU bright or dark along some sides;
    # with the reflect margin the outer pixels continue the air next to them. Slices and
    # their transposes put air along all four sides (the 64 px body touches left/right).
    a, b = slices.images[0], slices.images[1]
    air = slices.labels[0] == 0
    for content, style, air in ((a[0], b[1], air), (a[1], b[0], air),
                                (a[0].T, b[1].T, air.T)):
        out = M.transfer(content, style, variant=variant)
        # outer two rows minus rows 3..6, top and bottom, over columns that are air in
        # rows 0..7 (0 HU up to noise for the true images)
        top, bottom = air[:8].all(0), air[-8:].all(0)
        assert top.sum() > 16 and bottom.sum() > 16
        steps = [out[:2, top].mean() - out[3:7, top].mean(),
                 out[-2:, bottom].mean() - out[-7:-3, bottom].mean()]
        assert max(abs(s) for s in steps) < 40.0, steps


def test_bad_input(slices, tmp_path):
    soft, lung = slices.images[0, 0], slices.images[1, 1]
    method = get_method("adain")
    cfg = M.AdaINConfig()
    with pytest.raises(ValueError, match="2-D"):
        M.transfer(soft[None, None], lung)
    bad = soft.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        M.transfer(bad, lung)
    with pytest.raises(ValueError, match="another size"):
        M.transfer(soft, lung[:48, :48])
    with pytest.raises(ValueError, match="exactly one style"):
        method.run(soft, [lung, lung], config=cfg)
    with pytest.raises(ValueError, match="alpha"):
        M.AdaINConfig(alpha=1.5)
    with pytest.raises(ValueError, match="variant"):
        M.AdaINConfig(variant="gatys")
    with pytest.raises(ValueError, match="constant"):
        M.transfer(np.full((64, 64), 0.5, np.float32), np.full((64, 64), 0.5, np.float32))
    # A decoder exported for other encoder weights is refused.
    other = tmp_path / "other"
    shutil.copytree(M.shipped_decoder("adain"), other)
    meta = json.loads((other / "adain.json").read_text())
    meta["encoder"]["seed"] = 7
    (other / "adain.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match the encoder"):
        M.transfer(soft, lung, decoder=str(other))
    with pytest.raises(ValueError, match="not found"):
        M.transfer(soft, lung, decoder=str(tmp_path / "missing"))


def test_cli_keeps_hounsfield_units(pydicom_test_file, tmp_path, capsys):
    # A CT DICOM goes through the CLI in HU (modality LUT), as through the Python API,
    # and the result is written in HU: read back from .dcm (rescale slope/intercept, to
    # within half a count) and .npy it equals transfer() on the same HU arrays.
    content_path = pydicom_test_file("CT_small.dcm")
    content = io.read_image(content_path)
    style = ct_slices([123458], content.shape, kernels=("lung",)).images[0, 0]
    s = tmp_path / "s.dcm"
    io.write_image(s, style)
    style = io.read_image(s)
    expect = M.transfer(content, style, variant="context-aware")
    for out_name, atol in (("out.dcm", 0.5), ("out.npy", 1e-3)):
        o = tmp_path / out_name
        code = cli.main(["nst", "--method", "adain", "--variant", "context-aware", "--content",
                         content_path, "--style", str(s), "-o", str(o), "--json", "--quiet"])
        assert code == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["method"] == "adain" and summary["variant"] == "context-aware"
        out = io.read_image(o)
        np.testing.assert_allclose(out, expect, atol=atol)
        assert out.min() < -500 and out.max() > 500  # HU, not [0, 1]
        if out_name.endswith(".dcm"):
            import pydicom
            assert pydicom.dcmread(o).RescaleType == "HU"
    # A PNG gets the model window -1000..1000 HU -> 0..255.
    code = cli.main(["nst", "--method", "adain", "--content", content_path, "--style", str(s),
                     "-o", str(tmp_path / "out.png"), "--quiet"])
    assert code == 0
    png = io.read_image(tmp_path / "out.png", normalize=True)
    np.testing.assert_allclose(png, np.clip((expect + 1000) / 2000, 0, 1), atol=1 / 255 + 1e-4)
    # HU content with a [0, 1] display style image is refused by name.
    io.write_image(tmp_path / "s.png", np.clip((style + 1000) / 2000, 0, 1))
    code = cli.main(["nst", "--method", "adain", "--content", content_path, "--style",
                     str(tmp_path / "s.png"), "-o", str(tmp_path / "x.dcm"), "--quiet"])
    assert code == 2 and "same units" in capsys.readouterr().err


def test_real_ct_slice_runs(pydicom_test_file):
    path = pydicom_test_file("CT_small.dcm")
    real = io.read_image(path)  # HU through the modality LUT
    style = ct_slices([123458], real.shape, kernels=("lung",)).images[0, 0]
    out = M.transfer(real, style, variant="context-aware")
    assert out.shape == real.shape and np.all(np.isfinite(out))
