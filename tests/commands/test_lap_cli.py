"""``stylejax lap``: the file written is ``lap.process`` of the file read, and bad
arguments fail with a message naming them before any processing."""

import json

import numpy as np
import pytest
import tifffile

from stylejax import cli
from stylejax.data import phantom
from stylejax.pipeline import lap

RAW = phantom.mammogram(3, size=(48, 40), view="mlo").raw


@pytest.fixture
def raw_file(tmp_path):
    path = tmp_path / "raw.npy"
    np.save(path, RAW)
    return path


def test_npy_output_equals_the_library(raw_file, tmp_path, capsys):
    out = tmp_path / "styled.npy"
    argv = ["lap", str(raw_file), "--w", "7", "--l", "3.5", "--h", "8", "-o", str(out), "--json"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"input": str(raw_file), "output": str(out),
                       "params": {"w": 7.0, "l": 3.5, "h": 8.0}, "shape": [48, 40]}
    expected = np.asarray(lap.process(RAW, lap.LAPParams(7.0, 3.5, 8.0)))
    got = np.load(out)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_tiff_output_is_16_bit_and_defaults_are_neutral(raw_file, tmp_path):
    out = tmp_path / "styled.tif"
    assert cli.main(["lap", str(raw_file), "-o", str(out)]) == 0
    counts = tifffile.imread(out)
    assert counts.dtype == np.uint16
    expected = np.asarray(lap.process(RAW, lap.LAPParams(5.0, 5.0, 5.0)))
    np.testing.assert_allclose(counts / 65535.0, expected, atol=0.5 / 65535 + 1e-7)


@pytest.mark.parametrize("argv_tail, message", [
    (["-o", "{tmp}/styled.jpg"], "unknown image format '.jpg'"),
    (["--w", "11", "-o", "{tmp}/styled.png"], "LAP parameter w"),
    (["--h", "nan", "-o", "{tmp}/styled.png"], "LAP parameter h"),
])
def test_bad_arguments_fail_before_processing(raw_file, tmp_path, capsys, monkeypatch,
                                             argv_tail, message):
    def never(*args, **kwargs):
        raise AssertionError("lap.process must not run")

    monkeypatch.setattr(lap, "process", never)
    argv = ["lap", str(raw_file)] + [a.format(tmp=tmp_path) for a in argv_tail]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.startswith("stylejax lap: error:")
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.npy"]


def test_non_positive_raw_is_refused(tmp_path, capsys):
    path = tmp_path / "presentation.npy"
    np.save(path, np.where(RAW > np.median(RAW), RAW, 0.0).astype(np.float32))
    assert cli.main(["lap", str(path), "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert "presentation.npy" in err and "positive" in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("shape", [(8, 48, 40), (3, 48, 40), (2, 1, 48, 40)])
def test_a_stack_of_images_is_not_called_channels(tmp_path, capsys, shape):
    """An [N, H, W] .npy is a stack of images: the message says so and gives the shape
    (it used to report the last axis as "channels")."""
    path = tmp_path / "stack.npy"
    np.save(path, np.broadcast_to(RAW, shape).astype(np.float32))
    assert cli.main(["lap", str(path), "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert "stack.npy: expected one 2-D image [H, W]" in err and str(shape) in err
    assert "stack of images" in err and "channels;" not in err
    assert not (tmp_path / "out.png").exists()
