"""``stylejax train TASK`` and its alias ``train-stylex``: help, a smoke run's files,
resuming a finished run, errors."""

import json
import os

import pytest

from stylejax import cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_help_lists_the_tasks_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "simsiam" in out and "examples:" in out and "--workdir" in out
    with pytest.raises(SystemExit):
        cli.main(["train-stylex", "--help"])
    assert "train simsiam" in capsys.readouterr().out


def test_smoke_run_writes_the_run_folder_and_the_alias_resumes_it(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    # The smoke config as the tests of the task run it (one compilation per session).
    assert cli.main(["train", "simsiam", "--config", "smoke", "--workdir", workdir,
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["task"] == "simsiam" and summary["step"] == 6
    assert -1 <= summary["loss"] <= 1
    assert sorted(os.listdir(workdir)) == ["cache", "checkpoint_digests.json", "checkpoints",
                                           "config.json", "loss.png", "metrics.jsonl"]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "grad_norm", "z_std", "lr"} <= set(rows[0])
    assert json.load(open(os.path.join(workdir, "config.json")))["name"] == "smoke"
    # The alias on the finished run: resumes, finds nothing to do.
    assert cli.main(["train-stylex", "--config", "smoke", "--workdir", workdir, "--steps", "6",
                     "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["step"] == 6
    assert len(open(os.path.join(workdir, "metrics.jsonl")).readlines()) == 6
    # Fewer steps than saved: an error naming the option's value, config.json untouched.
    config = open(os.path.join(workdir, "config.json")).read()
    assert cli.main(["train", "simsiam", "--config", "smoke", "--workdir", workdir, "--steps",
                     "4", "--no-progress"]) == 2
    assert "steps=4 is below the step already saved" in capsys.readouterr().err
    assert open(os.path.join(workdir, "config.json")).read() == config


def test_errors(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert cli.main(["train", "simsiam", "--config", "nope", "--workdir", workdir]) == 2
    err = capsys.readouterr().err
    assert "unknown config 'nope' for task 'simsiam'" in err and "smoke" in err
    assert cli.main(["train", "simsiam", "--config", "smoke", "--workdir", workdir,
                     "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["train", "simsiam", "--config", "smoke", "--workdir", workdir,
                     "--export", str(afile / "model")]) == 2
    assert "--export" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "cyclegan", "--config", "smoke", "--workdir", workdir])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not os.path.exists(workdir)
