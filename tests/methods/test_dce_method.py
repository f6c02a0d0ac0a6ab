"""The ``dce`` method and ``stylejax dce``: the forward pass equals the model's own
translation, bad series fail clearly, files round-trip through the command."""

import dataclasses

import numpy as np
import pytest

from stylejax.cli import main
from stylejax.data.dce import dce
from stylejax.methods import dce as M
from stylejax.methods import registry
from stylejax.train import dce as T


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = dataclasses.replace(T.smoke(), temporal="convlstm").validate()
    net = T.build_munit(cfg, seed=3)
    path = str(tmp_path_factory.mktemp("dce_model"))
    T.save(path, net, cfg)
    s = dce(100000, (cfg.size, cfg.size), cfg.frames)
    return path, T.load(path)[0], s


def test_translation_matches_the_network_and_cli(model, tmp_path):
    path, net, s = model
    out = M.translate(s.ce, s.non_ce, direction="ce-to-non-ce", network=path)
    ref = np.asarray(net.translate(s.ce[None], to="non_ce", style_series=s.non_ce[None]))[0]
    assert out.shape == s.ce.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # intensities outside [0, 1]: scaled to a 0.5 peak and back
    big = M.translate(s.non_ce * 1000, s.ce * 1000, direction="non-ce-to-ce", network=path)
    x = s.non_ce * 1000
    unit = np.asarray(net.translate((x / (x.max() / 0.5))[None], to="ce",
                                    style_series=(s.ce / (s.ce.max() * 2))[None]))[0]
    np.testing.assert_allclose(big, unit * x.max() / 0.5, rtol=1e-4, atol=1e-3)
    # the method protocol and the command line
    res = registry.get_method("dce").run(s.ce, [s.non_ce], config=M.DCEConfig(network=path))
    np.testing.assert_allclose(res.image, out, atol=1e-6)
    assert res.steps == 0 and res.extra == {"direction": "ce-to-non-ce"}
    np.save(tmp_path / "ce.npy", s.ce)
    import tifffile
    tifffile.imwrite(tmp_path / "ref.tif", s.non_ce)
    assert main(["dce", "--series", str(tmp_path / "ce.npy"), "--reference",
                 str(tmp_path / "ref.tif"), "--network", path, "-o",
                 str(tmp_path / "out.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), out, atol=1e-6)
    assert main(["dce", "--series", str(tmp_path / "nope.npy"), "--reference",
                 str(tmp_path / "ref.tif"), "--network", path, "-o",
                 str(tmp_path / "o.npy")]) == 2


def test_bad_series(model):
    path, _, s = model
    bad = s.ce.copy()
    bad[1, 3, 3] = np.nan
    cases = [(s.ce[0], "single frame"), (s.ce[:2], "trained on"), (bad, "non-finite"),
             ([s.ce[0], s.ce[1][:-4], s.ce[2]], "different sizes"),
             (np.zeros_like(s.ce), "constant"), (s.ce[:, :30, :30], "multiples")]
    for series, match in cases:
        with pytest.raises(ValueError, match=match):
            M.translate(series, s.non_ce, network=path)
    with pytest.raises(ValueError, match="shape"):
        M.translate(s.ce, s.non_ce[:, :16, :16], network=path)
    with pytest.raises(ValueError, match="not found"):
        M.translate(s.ce, s.non_ce, network=path + "_missing")
    with pytest.raises(ValueError, match="direction"):
        M.DCEConfig(direction="sideways")
