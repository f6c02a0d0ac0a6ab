"""experiments/stylex_unseen_styles.py: the issue-20 protocol's numbers and seed checks."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "experiments",
                     "stylex_unseen_styles.py")


@pytest.fixture(scope="module")
def protocol():
    spec = importlib.util.spec_from_file_location("stylex_unseen_styles", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _brute_force(z, style, content, queries):
    """Retrieval and silhouette by explicit loops (cosine distance)."""
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = 1.0 - u @ u.T
    hits = []
    for i in np.flatnonzero(queries):
        other = [j for j in range(len(z)) if content[j] != content[i]]
        hits.append(style[min(other, key=lambda j: d[i, j])] == style[i])
    sil = []
    for i in np.flatnonzero(queries):
        own = [d[i, j] for j in range(len(z)) if style[j] == style[i] and j != i]
        a = np.mean(own)
        b = min(np.mean([d[i, j] for j in range(len(z)) if style[j] == s])
                for s in set(style) if s != style[i])
        sil.append((b - a) / max(a, b))
    return float(np.mean(hits)), float(np.mean(sil))


def test_metrics_match_brute_force(protocol):
    rng = np.random.default_rng(0)
    styles, contents = 6, 3
    style = np.repeat(np.arange(styles), contents)
    content = np.tile(np.arange(contents), styles)
    group = np.repeat(np.array(["train", "train", "heldout", "heldout", "random", "random"]),
                      contents)
    centres = rng.normal(size=(styles, 5))
    z = centres[style] + 0.6 * rng.normal(size=(len(style), 5))
    data = dict(style=style, content=content, group=group,
                styles=[str(s) for s in range(styles)])
    out = protocol.metrics(z, data, "cosine")
    for g in ("train", "heldout", "random"):
        ret, sil = _brute_force(z, style, content, group == g)
        assert out[f"retrieval_{g}"] == pytest.approx(ret, abs=1e-4)
        assert out[f"silhouette_{g}"] == pytest.approx(sil, abs=1e-4)
    assert set(out["retrieval_heldout_by_style"]) == {"2", "3"}


def test_sets_are_disjoint_from_training_seeds(protocol):
    info = dict(data_seed=1_000_000, num_raw=1024, vendor_random_styles=512)
    for name in protocol.SETS:
        protocol.check_unseen(info, name)
    with pytest.raises(ValueError, match="phantoms"):
        protocol.check_unseen(dict(data_seed=70_010, num_raw=4), "test")
    with pytest.raises(ValueError, match="random styles"):
        protocol.check_unseen(dict(data_seed=7_000_000 - 10, num_raw=1,
                                   vendor_random_styles=20), "test")


def test_shipped_style_head_trained_on_seeds_the_protocol_never_reads(protocol):
    """The shipped style-statistics head: phantoms and random styles from the trainers'
    range only, disjoint from the test/selection sets and evaluate-stylex's phantoms."""
    from stylejax.metrics import style_statistics as SS
    head = SS.load_pretrained()
    assert head.embedding_dim == 64 and head.dim == 1024 and head.taps == SS.TAPS
    lo, hi = head.info["phantoms"]
    assert lo >= 1_000_000
    for part in head.info["train_sets"].values():
        info = dict(data_seed=part["content_seed"], num_raw=part["contents"])
        for name in protocol.SETS:
            protocol.check_unseen(info, name)
            protocol.check_unseen(dict(data_seed=part["style_seed"], num_raw=0,
                                       vendor_random_styles=part["random"]), name)
        assert part["style_seed"] >= 1_000_000 and part["content_seed"] + part["contents"] - 1 <= hi
