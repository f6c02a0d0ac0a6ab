"""The generic training loop with a small task: linear regression trained by two
optimisers (weights and bias), checked against the same gradient descent in numpy.

The task here is also the pattern for new tasks (see stylejax/train/loop.py).
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stylejax.train import loop
from stylejax.train.config import TrainConfig, load_config

DIM = 3


@dataclasses.dataclass(frozen=True)
class LinearConfig(TrainConfig):
    lr_w: float = 0.1
    lr_b: float = 0.05
    noise: float = 0.0

    def validate(self):
        super().validate()
        self.need(self.lr_w > 0 and self.lr_b > 0, "learning rates must be > 0")
        return self


def smoke():
    return LinearConfig(name="smoke", steps=6, batch_size=8, log_every=1, plot_every=3,
                        checkpoint_every=2)


class LinearTask:
    """y = x . w + b on fixed data; w and b each with their own optimiser."""

    name = "linear"
    configs = {"smoke": smoke, "default": lambda: LinearConfig(name="default")}
    monitor = ("u",)

    def __init__(self, x, y):
        self.x, self.y = x, y

    def init(self, cfg, mesh):
        tx_w, tx_b = self._optimizers(cfg)
        w, b = jnp.zeros(DIM), jnp.zeros(())
        state = dict(w=w, b=b, opt_w=tx_w.init(w), opt_b=tx_b.init(b))
        return jax.device_put(state, NamedSharding(mesh, P()))

    def batches(self, cfg, mesh, workdir):
        rows = np.arange(cfg.batch_size) % len(self.x)
        batch = loop.shard_batch(dict(x=self.x[rows], y=self.y[rows]), mesh, cfg.batch_size)
        return lambda step: batch

    def step(self, cfg, mesh):
        return _linear_step(cfg.computation_key())

    @staticmethod
    def _optimizers(cfg):
        return optax.sgd(cfg.lr_w), optax.sgd(cfg.lr_b)


_STEPS = {}


def _linear_step(cfg):
    if cfg not in _STEPS:
        tx_w, tx_b = LinearTask._optimizers(cfg)

        def step(state, batch, key):
            def loss_fn(w, b):
                return jnp.mean((batch["x"] @ w + b - batch["y"]) ** 2)

            loss, (gw, gb) = jax.value_and_grad(loss_fn, argnums=(0, 1))(state["w"], state["b"])
            uw, opt_w = tx_w.update(gw, state["opt_w"])
            ub, opt_b = tx_b.update(gb, state["opt_b"])
            new = dict(w=state["w"] + uw, b=state["b"] + ub, opt_w=opt_w, opt_b=opt_b)
            return new, dict(loss=loss + cfg.noise, u=jax.random.uniform(key))

        _STEPS[cfg] = step
    return _STEPS[cfg]


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, DIM)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3).astype(np.float32)
    return x, y


def _numpy_descent(x, y, cfg, steps):
    """The same two-learning-rate gradient descent in float64 numpy."""
    w, b, losses = np.zeros(DIM), 0.0, []
    for _ in range(steps):
        r = x @ w + b - y
        losses.append(np.mean(r ** 2))
        w, b = w - cfg.lr_w * 2 * x.T @ r / len(x), b - cfg.lr_b * 2 * r.mean()
    return w, b, losses


def _check(result, cfg, steps):
    w, b, losses = _numpy_descent(*_data(), cfg, steps)
    np.testing.assert_allclose(np.asarray(result.state["w"]), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(result.state["b"]), b, rtol=1e-5, atol=1e-6)
    return losses


def test_in_memory_run_is_plain_gradient_descent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = smoke()
    assert isinstance(LinearTask(*_data()), loop.Task)
    result = loop.run(LinearTask(*_data()), cfg, None, progress=False)
    losses = _check(result, cfg, cfg.steps)
    assert [r["step"] for r in result.history] == list(range(1, cfg.steps + 1))
    np.testing.assert_allclose([r["loss"] for r in result.history], losses, rtol=1e-5)
    # Step i's key is fold_in(key(seed), i).
    base = jax.random.key(cfg.seed)
    want = [float(jax.random.uniform(jax.random.fold_in(base, i))) for i in range(cfg.steps)]
    np.testing.assert_allclose([r["u"] for r in result.history], want, rtol=1e-6)
    assert result.workdir is None and result.step == cfg.steps and os.listdir(tmp_path) == []


def test_workdir_run_resumes_exactly_and_logs(tmp_path):
    cfg, workdir, task = smoke(), str(tmp_path / "run"), LinearTask(*_data())

    class Stop(Exception):
        pass

    def stop_after_3(step, state):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        loop.run(task, cfg, workdir, progress=False, callback=stop_after_3)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
    seen = []
    result = loop.run(task, cfg, workdir, progress=False,
                      callback=lambda step, state: seen.append(step))
    assert seen == [3, 4, 5, 6]
    losses = _check(result, cfg, cfg.steps)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == list(range(1, cfg.steps + 1))
    np.testing.assert_allclose([r["loss"] for r in rows], losses, rtol=1e-5)
    assert os.path.getsize(os.path.join(workdir, "loss.png")) > 1000
    assert LinearConfig.from_dict(json.load(open(os.path.join(workdir, "config.json")))) == cfg
    # A finished run returns at once; load_run reads any kept checkpoint.
    assert loop.run(task, cfg, workdir, progress=False).history == []
    saved, state, step = loop.load_run(task, workdir, 4)
    assert saved == cfg and step == 4
    np.testing.assert_allclose(np.asarray(state["w"]), _numpy_descent(*_data(), cfg, 4)[0],
                               rtol=1e-5, atol=1e-6)
    # More steps continue the run; another computation does not.
    longer = loop.run(task, cfg, workdir, steps=8, progress=False)
    _check(longer, cfg, 8)
    with pytest.raises(ValueError, match=r"different config \(lr_w"):
        loop.run(task, dataclasses.replace(cfg, lr_w=0.2), workdir, progress=False)


def test_a_field_added_later_resumes_while_it_holds_its_default(tmp_path):
    cfg, workdir, task = smoke(), str(tmp_path / "run"), LinearTask(*_data())
    loop.run(task, cfg, workdir, steps=2, progress=False)
    path = os.path.join(workdir, "config.json")
    saved = json.load(open(path))
    del saved["noise"]
    open(path, "w").write(json.dumps(saved))
    loop.run(task, cfg, workdir, steps=4, progress=False)
    saved = json.load(open(path))
    del saved["noise"]
    open(path, "w").write(json.dumps(saved))
    with pytest.raises(ValueError, match="noise: None -> 1.0"):
        loop.run(task, dataclasses.replace(cfg, noise=1.0), workdir, progress=False)


def test_nan_guard_names_the_last_good_checkpoint(tmp_path):
    x, y = _data()
    task = LinearTask(x, np.where(np.arange(8) == 0, np.inf, y).astype(np.float32))
    workdir = str(tmp_path / "run")
    with pytest.raises(loop.TrainingDiverged, match=r"non-finite loss \(inf\) at step 1.*"
                                                    r"none \(no checkpoint"):
        loop.run(task, smoke(), workdir, progress=False)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == []
    with pytest.raises(loop.TrainingDiverged, match="in-memory"):
        loop.run(task, smoke(), None, progress=False)
    # Diverging later: the checkpoint before it is named and kept.
    task = LinearTask(*_data())
    cfg = dataclasses.replace(smoke(), lr_w=3.0, steps=100, checkpoint_every=5)
    with pytest.raises(loop.TrainingDiverged, match=r"Last good checkpoint: step (\d+) in") as err:
        loop.run(task, cfg, workdir + "2", progress=False)
    good = int(str(err.value).split("Last good checkpoint: step ")[1].split()[0])
    _, state, _ = loop.load_run(task, workdir + "2")
    assert np.all(np.isfinite(np.asarray(state["w"]))) and good % 5 == 0


def test_sharded_run_equals_single_device_run():
    cfg, task = smoke(), LinearTask(*_data())
    a = loop.run(task, cfg, None, progress=False)
    b = loop.run(task, cfg, None, progress=False, devices=jax.devices()[:1])
    assert len(jax.devices()) == 8
    assert a.state["w"].sharding.mesh.size == 8 and b.state["w"].sharding.mesh.size == 1
    np.testing.assert_allclose(np.asarray(a.state["w"]), np.asarray(b.state["w"]), rtol=1e-6)
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        loop.run(task, dataclasses.replace(cfg, batch_size=6), None, progress=False)


def test_config_base(tmp_path):
    cfg = smoke()
    assert LinearConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown config field"):
        LinearConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="batch_size and steps"):
        dataclasses.replace(cfg, steps=0).validate()
    with pytest.raises(ValueError, match="rng_impl"):
        dataclasses.replace(cfg, rng_impl="mt19937").validate()
    with pytest.raises(ValueError, match="learning rates"):
        dataclasses.replace(cfg, lr_b=0.0).validate()
    # Bookkeeping fields do not change the computation key; the rest do.
    assert dataclasses.replace(cfg, name="x", log_every=7).computation_key() == \
        cfg.computation_key()
    assert dataclasses.replace(cfg, lr_w=0.3).computation_key() != cfg.computation_key()
    task = LinearTask(*_data())
    assert load_config(task, "smoke") == cfg
    with pytest.raises(ValueError, match="unknown config 'big' for task 'linear'"):
        load_config(task, "big")
    with pytest.raises(FileNotFoundError):
        load_config(task, str(tmp_path / "missing.py"))
    path = tmp_path / "wrong.py"
    path.write_text("from stylejax.train.config import TrainConfig\n"
                    "def get_config():\n    return TrainConfig()\n")
    with pytest.raises(ValueError, match="must return a .*LinearConfig"):
        load_config(task, str(path))


def test_a_buffer_used_twice_in_the_initial_state_is_copied_before_donation():
    mesh = loop.make_mesh()
    z = jax.device_put(jnp.arange(3.0), NamedSharding(mesh, P()))
    other = jax.device_put(jnp.ones(2), NamedSharding(mesh, P()))
    tree = loop._private(dict(a=z, b=jax.device_put(z, z.sharding), c=other, d=z))
    pointers = [tree[k].addressable_shards[0].data.unsafe_buffer_pointer() for k in "abcd"]
    assert len(set(pointers)) == 4 and tree["c"] is other
    for k in "abd":
        np.testing.assert_array_equal(np.asarray(tree[k]), [0.0, 1.0, 2.0])
        assert tree[k].sharding == z.sharding
