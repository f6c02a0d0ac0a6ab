"""The experiments' shared helpers."""

import json
import time

import pytest

from stylejax.evaluation import bench


def test_median_seconds_measures_the_median_after_warmup():
    calls = []
    delays = iter([0.0, 0.03, 0.001, 0.01])  # warm-up, then three timed calls

    def fn():
        calls.append(1)
        time.sleep(next(delays))

    t = bench.median_seconds(fn, 3)
    assert len(calls) == 4 and 0.009 <= t < 0.03
    with pytest.raises(ValueError, match="repeats"):
        bench.median_seconds(fn, 0)


def test_write_json_is_atomic_and_machine_is_serialisable(tmp_path):
    path = bench.write_json(tmp_path / "a" / "r.json", {"machine": bench.machine(x=1)})
    data = json.loads(path.read_text())
    assert data["machine"]["x"] == 1 and data["machine"]["cpus"] >= 1
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_encoder_at_size_changes_only_stylex_models():
    class Model:
        embed_size, tile_size = 128, 128

        def replace(self, **kw):
            new = Model()
            new.__dict__.update(kw)
            return new

    m = bench.encoder_at_size(Model(), 64)
    assert (m.embed_size, m.tile_size) == (64, 64)
    other = object()
    assert bench.encoder_at_size(other, 64) is other
