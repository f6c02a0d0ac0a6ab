"""The SimSiam (StyleX) task on the generic loop: smoke run end to end, sharding,
kill-and-resume, NaN guard, configs, data pools.

All runs use the ``smoke`` config on the 8 CPU devices of conftest, so the
jitted step compiles once for the 8-device mesh (the loop caches it) and
once for the single-device comparison.
"""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax import cli
from stylejax.metrics import stylex
from stylejax.train import loop, simsiam
from stylejax.train import simsiam_configs as configs
from stylejax.train.simsiam_data import PhantomSource

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CFG = configs.smoke()


class Interrupted(Exception):
    """Stands in for a kill -9 between two steps."""


@pytest.fixture(scope="module")
def source():
    return PhantomSource(CFG)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke config through the CLI, uninterrupted; exported too."""
    root = tmp_path_factory.mktemp("smoke")
    workdir, export = str(root / "run"), str(root / "export")
    rc = cli.main(["train", "simsiam", "--config", "smoke", "--workdir", workdir,
                   "--export", export, "--no-progress"])
    assert rc == 0
    return workdir, export


def _params(state):
    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_smoke_run_end_to_end(smoke_run):
    workdir, export = smoke_run
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == list(range(1, CFG.steps + 1))
    assert all(np.isfinite(r["loss"]) and -1 <= r["loss"] <= 1 for r in rows)
    assert all(r["z_std"] > 0 for r in rows)
    assert os.path.getsize(os.path.join(workdir, "loss.png")) > 1000
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
    saved = configs.Config.from_dict(json.load(open(os.path.join(workdir, "config.json"))))
    assert saved == CFG
    # The run and its export load as StyleX models and agree; the export has its
    # style projection. stylex.load reads saved models only and names the run loader.
    from_run, from_export = simsiam.load_model(workdir), stylex.load(export)
    with pytest.raises(ValueError, match="training run folder.*simsiam.load_model"):
        stylex.load(workdir)
    assert from_run.projection is None and from_export.embedding_dim == CFG.dim
    assert from_export.info["projection"]["dims"] == CFG.dim
    from_export = from_export.without_projection()
    assert from_run.info["steps"] == CFG.steps and from_run.embed_size == CFG.embed_size
    assert from_run.tile_size == CFG.image_size
    images = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    z_run, z_exp = np.asarray(from_run.embed(images)), np.asarray(from_export.embed(images))
    assert z_run.shape == (2, CFG.dim)
    cos = (z_run * z_exp).sum(-1) / np.linalg.norm(z_run, axis=-1) / np.linalg.norm(z_exp, axis=-1)
    assert np.all(cos > 0.999)  # float16 export


def test_fit_projection_command(smoke_run, tmp_path, capsys):
    workdir, export = smoke_run
    out = str(tmp_path / "projected")
    assert cli.main(["fit-projection", "--model", workdir, "--out", out, "--no-progress"]) == 0
    model = stylex.load(out)
    assert model.embedding_dim == CFG.dim and model.info["steps"] == CFG.steps
    # Same fitting set as the export's (float32 here, float16 weights there).
    images = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    a, b = np.asarray(model.embed(images)), np.asarray(stylex.load(export).embed(images))
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert np.all(cos > 0.9)
    # A model that does not say what it was trained on: a clear error.
    bare = str(tmp_path / "bare")
    model.replace(info={}).save(bare)
    assert cli.main(["fit-projection", "--model", bare, "--out", out, "--no-progress"]) == 2
    assert "training data" in capsys.readouterr().err


def test_kill_and_resume_continues_identically(smoke_run, source, tmp_path):
    reference = simsiam.load_run(smoke_run[0])[2]
    workdir = str(tmp_path / "run")

    def kill_after_4(step, state):
        if step == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        simsiam.train(CFG, workdir, source=source, callback=kill_after_4, progress=False)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3"]
    seen = []
    result = simsiam.train(CFG, workdir, source=source, progress=False,
                           callback=lambda step, state: seen.append(step))
    assert seen == [4, 5, 6]  # resumed after the step-3 checkpoint
    assert result.step == CFG.steps
    for a, b in zip(_params(result.state), _params(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == list(range(1, CFG.steps + 1))  # no duplicates


class _PoisonedSource:
    """Raw images become NaN from step index ``bad`` on."""

    def __init__(self, inner, bad):
        self.inner, self.bad = inner, bad

    def local_batch(self, step, process_index=0, process_count=1):
        batch = self.inner.local_batch(step, process_index, process_count)
        if step >= self.bad:
            batch["a"] = np.full_like(batch["a"], np.nan)
        return batch


def test_nan_guard_keeps_last_good_checkpoint(source, tmp_path):
    workdir = str(tmp_path / "run")
    with pytest.raises(loop.TrainingDiverged, match=r"at step 5.*Last good checkpoint: step 3"):
        simsiam.train(CFG, workdir, source=_PoisonedSource(source, bad=4), progress=False)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3"]
    _, _, state, step = simsiam.load_run(workdir)
    assert step == 3
    assert all(np.all(np.isfinite(p)) for p in _params(state))


def test_sharded_step_equals_single_device_step(source):
    batch = source.local_batch(0)
    outs = []
    for devices in (jax.devices(), jax.devices()[:1]):
        mesh = loop.make_mesh(devices)
        state = simsiam.init_state(CFG, mesh)
        step = loop.jit_step(simsiam.make_train_step(CFG), mesh)
        # Placed as loop.run places it: the 8-device program is the smoke run's.
        key = jax.device_put(jax.random.key(CFG.seed), NamedSharding(mesh, P()))
        new, metrics = step(state, loop.shard_batch(batch, mesh, CFG.batch_size), key,
                            np.int32(0))
        outs.append((jax.device_get(new), jax.device_get(metrics)))
    assert len(jax.devices()) == 8
    (s8, m8), (s1, m1) = outs
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5, atol=1e-6)
    # BatchNorm running statistics are over the global batch in both cases.
    for a, b in zip(jax.tree.leaves(s8.batch_stats), jax.tree.leaves(s1.batch_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(_params(s8), _params(s1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_process_shards_partition_the_global_batch(source):
    full = source.local_batch(2)
    parts = [source.local_batch(2, i, 4) for i in range(4)]
    for k in full:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), full[k])
    # Non-matching content at the configured rate (over many steps).
    same = np.concatenate([(lambda i: i["a"] == i["b"])(source.indices(s)) for s in range(50)])
    assert abs(1 - same.mean() - CFG.different_content) < 0.1
    with pytest.raises(ValueError, match="divisible"):
        source.local_batch(0, 0, 3)


def test_the_task_is_registered():
    from stylejax.train import registry
    assert registry.get("simsiam") is simsiam.TASK and isinstance(simsiam.TASK, loop.Task)
    assert {"smoke", "default"} <= set(simsiam.TASK.configs)
    with pytest.raises(ValueError, match="unknown training task 'nope'"):
        registry.get("nope")


def test_configs(tmp_path):
    for name in ("smoke", "cpu", "default", "vendor", "paper", "pod"):
        cfg = configs.get(name)
        assert cfg.name == name and configs.NAMED[name].__doc__.count("Command") >= 1
    assert configs.get("cpu").width == 16 and configs.get("paper").width == 64
    assert configs.get("paper").batch_size == 200 and configs.get("paper").image_size == 400
    assert configs.get("pod").distributed
    assert configs.get("vendor").vendor_random_styles == 512
    assert configs.Config.from_dict(json.loads(CFG.to_json())) == CFG
    with pytest.raises(ValueError, match="unknown config"):
        configs.get("nope")
    path = tmp_path / "mine.py"
    path.write_text("import dataclasses\nfrom stylejax.train import simsiam_configs\n"
                    "def get_config():\n"
                    "    return dataclasses.replace(simsiam_configs.smoke(), steps=2)\n")
    assert configs.get(str(path)).steps == 2
    with pytest.raises(ValueError, match="crop_scale"):
        dataclasses.replace(CFG, crop_scale=(0.9, 0.1)).validate()
    with pytest.raises(ValueError, match="image_size .* must be <= embed_size"):
        dataclasses.replace(CFG, image_size=CFG.embed_size + 1).validate()


def test_resume_refuses_a_different_config(smoke_run):
    other = dataclasses.replace(CFG, base_lr=0.1)
    with pytest.raises(ValueError, match="different config"):
        simsiam.train(other, smoke_run[0], progress=False)


def test_vendor_pool_matches_blackbox_per_image():
    """The threaded pool holds exactly what blackbox.apply gives image by image."""
    from stylejax.pipeline import blackbox
    from stylejax.train.simsiam_data import make_raw_pool, make_vendor_pool
    raw = make_raw_pool(CFG)[0][:2]
    styles = tuple(int(s) for s in blackbox.TRAIN_STYLES[:3])
    pool = make_vendor_pool(raw, styles)
    assert pool.shape == (2, 3) + raw.shape[1:] and pool.dtype == np.float16
    for i in range(2):
        for j, s in enumerate(styles):
            np.testing.assert_array_equal(pool[i, j], blackbox.apply(raw[i], s).astype(np.float16))


def test_local_batch_rows_come_from_their_pools():
    """LAP rows are the normalised pool images, vendor rows the vendor pool's."""
    cfg = dataclasses.replace(CFG, vendor_fraction=0.5, num_vendor_raw=4)
    src = PhantomSource(cfg)
    idx, batch = src.indices(3), src.local_batch(3)
    assert idx["vendor"].any() and not idx["vendor"].all()
    for which in ("a", "b"):
        for row, (i, vendor, style) in enumerate(zip(idx[which], idx["vendor"], idx["style"])):
            want = src.vendor[i, style].astype(np.float32) if vendor else src.normalized[i]
            np.testing.assert_array_equal(batch[which][row], want)
        np.testing.assert_array_equal(batch[f"tissue_{which}"], src.tissue[idx[which]])
    np.testing.assert_array_equal(batch["prestyled"], idx["vendor"])


def test_vendor_pool_with_random_styles():
    """Random vendor styles follow the 28 bank styles, drawn from data_seed."""
    from stylejax.pipeline import blackbox, vendor_random
    cfg = dataclasses.replace(CFG, vendor_fraction=0.5, num_vendor_raw=2, vendor_random_styles=3)
    src = PhantomSource(cfg.validate())
    assert src.vendor.shape[:2] == (2, len(blackbox.TRAIN_STYLES) + 3)
    from stylejax.train.simsiam_data import make_raw_pool
    raw = make_raw_pool(cfg)[0][:2]
    for k in range(3):
        style = vendor_random.random_style(cfg.data_seed + k)
        for i in range(2):
            np.testing.assert_array_equal(src.vendor[i, len(blackbox.TRAIN_STYLES) + k],
                                          blackbox.apply(raw[i], style).astype(np.float16))
    with pytest.raises(ValueError, match="vendor_random_styles needs vendor_fraction"):
        dataclasses.replace(CFG, vendor_random_styles=3).validate()


def test_device_gather_equals_host_batch():
    """The trainer's on-device gather (8-device mesh) builds local_batch's batch."""
    cfg = dataclasses.replace(CFG, vendor_fraction=0.5, num_vendor_raw=4)
    src = PhantomSource(cfg)
    mesh = loop.make_mesh()
    pools, gather = simsiam.device_pools(src, mesh), simsiam.make_gather(mesh)
    for step in (0, 5):
        idx = src.local_indices(step)
        assert idx["vendor"].any() and not idx["vendor"].all()
        got = jax.device_get(gather(pools, loop.shard_batch(idx, mesh, cfg.batch_size)))
        want = src.local_batch(step)
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == want[k].dtype, k
            np.testing.assert_array_equal(got[k], want[k])
    # A run without vendor styles gathers from a placeholder vendor pool it never reads.
    plain = PhantomSource(CFG)
    got = jax.device_get(gather(simsiam.device_pools(plain, mesh),
                                loop.shard_batch(plain.local_indices(1), mesh, CFG.batch_size)))
    np.testing.assert_array_equal(got["a"], plain.local_batch(1)["a"])


def test_training_with_the_device_gather_equals_the_host_gather(smoke_run, source, tmp_path):
    """The accelerator path (forced on the CPU) trains exactly like the host path."""
    result = simsiam.train(CFG, str(tmp_path / "run"), source=source, progress=False,
                           gather_on_device=True)
    for a, b in zip(_params(result.state), _params(simsiam.load_run(smoke_run[0])[2])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
