"""``stylejax nst``: generated flags, JSON output, label inputs, mr2NST's baseline, a
feed-forward method plugged in through the registry, and clear errors for bad input."""

import argparse
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from stylejax import cli
from stylejax.data import io
from stylejax.methods import base, registry

SIZE = 24
SHALLOW = ["--content-taps", "relu2_1", "--style-taps", "relu1_1,relu2_1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nst")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    content = (0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    style = rng.random((SIZE, SIZE + 4)).astype(np.float32)
    paths = {"content": tmp / "content.npy", "style": tmp / "style.npy",
             "style2": tmp / "style2.npy", "labels": tmp / "labels.npy",
             "bad_labels": tmp / "bad_labels.npy"}
    io.write_image(paths["content"], content)
    io.write_image(paths["style"], style)
    io.write_image(paths["style2"], style[::-1] ** 2)
    io.write_image(paths["labels"], (xx * 2).astype(np.int64))
    io.write_image(paths["bad_labels"], xx.astype(np.float32) + 0.5)
    return tmp, {k: str(v) for k, v in paths.items()}


def _gatys(tmp, paths, *extra):
    return ["nst", "--content", paths["content"], "--style", paths["style"], "-o",
            str(tmp / "out.npy"), "--weights", "random", "--steps", "4", "--lr", "0.02",
            "--quiet", "--json", *SHALLOW, *extra]


def test_gatys_json_and_label_inputs(files, capsys):
    tmp, paths = files
    assert cli.main(_gatys(tmp, paths)) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert {"method", "variant", "steps", "seconds", "loss_initial", "loss_final", "output",
            "extractor"} <= set(summary)
    assert summary["method"] == "gatys" and summary["variant"] == "basic"
    assert summary["steps"] == 4 and summary["extractor"] == "vgg19"
    assert summary["loss_initial"] == pytest.approx(1.0)  # normalised: starts at beta
    assert summary["loss_final"] < summary["loss_initial"]
    assert io.read_image(summary["output"]).shape == (SIZE, SIZE)
    assert "random weights" in captured.err

    assert cli.main(_gatys(tmp, paths, "--variant", "local", "--content-labels",
                           paths["labels"])) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["variant"] == "local" and summary["labels"] == [0, 1]


def test_help_lists_generated_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nst", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--method {" + ",".join(registry.METHODS) + "}", "--content-weight", "--no-normalize", "--lr",
                 "--work-size", "--no-histogram", "--refiner-steps", "--content-labels",
                 "gatys options", "mr2nst options", "examples:",
                 "(default: gatys 300, mr2nst 400)"):
        assert flag in out
    assert "--remat" not in out  # removed: it raised peak memory (issue 15)


def test_building_the_parser_does_not_import_jax():
    code = ("import argparse, sys\n"
            "from stylejax.commands import nst\n"
            "nst.register(argparse.ArgumentParser().add_subparsers())\n"
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_mr2nst_exact_histogram_matching_json(files, capsys):
    tmp, paths = files
    out = tmp / "ehm.npy"
    argv = ["nst", "--method", "mr2nst", "--variant", "ehm", "--content", paths["content"],
            "--style", paths["style"], paths["style2"], "-o", str(out), "--quiet", "--json"]
    assert cli.main(argv) == 0  # exact histogram matching: no extractor is built
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "mr2nst" and summary["variant"] == "ehm"
    assert summary["extractor"] is None and summary["scale_weights"] is None
    refs = np.concatenate([io.read_image(paths["style"]).ravel(),
                           io.read_image(paths["style2"]).ravel()])
    n, m = SIZE * SIZE, refs.size  # rank k takes the reference value of rank (k + 1/2) m / n
    index = (2 * np.arange(n) + 1) * m // (2 * n)
    np.testing.assert_array_equal(np.sort(io.read_image(out).ravel()), np.sort(refs)[index])


def test_bad_input_gives_clear_errors(files, capsys, monkeypatch):
    tmp, paths = files
    cases = [
        (["--variant", "fancy"], "variant must be one of basic, augmented, local, average"),
        (["--work-size", "64"], "--work-size is an option of --method mr2nst, not gatys"),
        (["--style-taps", "relu1_1,relu9_9"], "unknown tap(s) ['relu9_9']"),
        (["--variant", "local", "--content-labels", paths["bad_labels"]],
         "a label map must hold integer values"),
        (["--variant", "local"], "needs content_labels"),
        (["--content-weight", "-1"], "content_weight must be finite and >= 0"),
    ]
    for extra, message in cases:
        assert cli.main(_gatys(tmp, paths, *extra)) == 2, extra
        assert message in capsys.readouterr().err
    missing = _gatys(tmp, paths)
    missing[2] = str(tmp / "missing.png")
    assert cli.main(missing) == 2
    for extra in (["--method", "cyclegan"], ["--levels", "a,b"], ["--remat"],
                  ["--style-weights", "relu1_1"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(_gatys(tmp, paths, *extra))
        assert exit_info.value.code == 2
    capsys.readouterr()
    stylex = _gatys(tmp, paths, "--extractor", "stylex")
    assert cli.main(stylex) == 2
    assert "--weights random is for VGG" in capsys.readouterr().err
    del stylex[stylex.index("--weights"):stylex.index("--weights") + 2]
    monkeypatch.setitem(sys.modules, "stylejax.metrics.stylex", None)
    assert cli.main(stylex) == 2
    assert "StyleX metric is not available" in capsys.readouterr().err


# ---------------------------------------------- a feed-forward method through the registry


@dataclasses.dataclass(frozen=True)
class BlendConfig:
    network: str | None = base.option(None, "trained blend network (.npy with its mixing weight)")
    gain: float = base.option(1.0, "output gain")


class Blend:
    """A stand-in feed-forward method: a 'network' (one trained mixing weight, loaded
    from the file the config names) applied in one forward pass."""

    name = "blend"
    help = "blend toward the mean style image (test method)"
    config_class = BlendConfig
    inputs = ()
    json_extra = ("weight",)

    def needs_extractor(self, config):
        return False

    def run(self, content, styles, *, extractor, config, progress=False):
        assert extractor is None
        weight = float(np.load(config.network))
        image = np.clip(config.gain * ((1 - weight) * content + weight * np.mean(
            [s.mean() for s in styles])), 0, 1).astype(np.float32)
        return base.TransferResult(image, 0, 0.0, np.nan, np.nan, np.array([np.nan] * 2),
                                   {"weight": weight})


def test_a_feed_forward_method_plugs_in_through_the_registry(files, capsys, monkeypatch):
    tmp, paths = files
    monkeypatch.setitem(registry.METHODS, "blend", Blend())
    with pytest.raises(SystemExit):
        cli.main(["nst", "--help"])
    out = capsys.readouterr().out
    assert "blend options" in out and "--network NETWORK" in out and "--gain X" in out
    np.save(tmp / "net.npy", np.float32(0.25))
    target = tmp / "blend.npy"
    assert cli.main(["nst", "--method", "blend", "--content", paths["content"], "--style",
                     paths["style"], "-o", str(target), "--network", str(tmp / "net.npy"),
                     "--gain", "0.5", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["extractor"] is None and summary["weight"] == 0.25 and summary["steps"] == 0
    content, style = io.read_image(paths["content"]), io.read_image(paths["style"])
    np.testing.assert_allclose(io.read_image(target),
                               np.clip(0.5 * (0.75 * content + 0.25 * style.mean()), 0, 1),
                               rtol=1e-5, atol=1e-6)


def test_a_config_field_clashing_with_a_command_flag_is_refused():
    from stylejax.commands import nst

    @dataclasses.dataclass(frozen=True)
    class Clash:
        weights: str = base.option("", "clashes with --weights")

    method = type("M", (), {"name": "m", "config_class": Clash, "inputs": ()})()
    with pytest.raises(ValueError, match="clashes with the nst command's own --weights"):
        nst.add_method_arguments(argparse.ArgumentParser(), {"m": method})
