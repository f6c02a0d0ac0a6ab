"""VGG extractor: weight import (safetensors / h5 / ImageNet cache) against independent references."""

import hashlib

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

from stylejax.models import vgg
from stylejax.models import weights as weight_io

# torchvision's vgg16/vgg19 `features` configurations, written out independently of the
# code under test: numbers are conv widths, "M" a 2x2 max pool.
TORCHVISION_CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def torchvision_state_dict(arch, seed=0):
    """Random OIHW tensors keyed like torchvision (``features.{i}.weight|bias``)."""
    rng = np.random.default_rng(seed)
    state, cin, index = {}, 3, 0
    for v in TORCHVISION_CFG[arch]:
        if v == "M":
            index += 1
            continue
        std = np.sqrt(2.0 / (9 * cin))
        state[f"features.{index}.weight"] = (rng.standard_normal((v, cin, 3, 3)) * std
                                             ).astype(np.float32)
        state[f"features.{index}.bias"] = (0.1 * rng.standard_normal(v)).astype(np.float32)
        cin, index = v, index + 2
    return state


def reference_forward(state, arch, image):
    """float64 numpy VGG on one grayscale image [H, W]: {layer: [h, w, C]} (torch naming)."""
    x = np.repeat(image[..., None].astype(np.float64), 3, axis=-1)
    x = (x - MEAN) / STD
    out, index, block, layer = {}, 0, 1, 1
    for v in TORCHVISION_CFG[arch]:
        if v == "M":
            h, w, c = x.shape
            x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
            out[f"pool{block}"] = x
            block, layer, index = block + 1, 1, index + 1
            continue
        weight = state[f"features.{index}.weight"].astype(np.float64)  # [O, I, 3, 3]
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        h, w = x.shape[:2]
        patches = np.stack([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)],
                           axis=2)  # [h, w, 9, I], tap order (i, j)
        kernel = weight.reshape(weight.shape[0], weight.shape[1], 9)  # [O, I, 9]
        x = np.einsum("hwki,oik->hwo", patches, kernel) + state[f"features.{index}.bias"]
        out[f"conv{block}_{layer}"] = x
        x = np.maximum(x, 0.0)
        out[f"relu{block}_{layer}"] = x
        layer, index = layer + 1, index + 2
    return out


@pytest.fixture(scope="module")
def vgg16_files(tmp_path_factory):
    """A complete random VGG16 as torchvision safetensors and as flaxmodels h5."""
    root = tmp_path_factory.mktemp("vgg16")
    state = torchvision_state_dict("vgg16")
    st_path = root / "vgg16.safetensors"
    save_file(dict(state, **{"classifier.0.weight": np.zeros((4, 8), np.float32)}), str(st_path))
    h5_path = root / "vgg16.h5"
    with h5py.File(h5_path, "w") as f:
        index, block, layer = 0, 1, 1
        for v in TORCHVISION_CFG["vgg16"]:
            if v == "M":
                block, layer, index = block + 1, 1, index + 1
                continue
            g = f.create_group(f"conv{block}_{layer}")
            g["weight"] = state[f"features.{index}.weight"].transpose(2, 3, 1, 0)  # HWIO
            g["bias"] = state[f"features.{index}.bias"]
            layer, index = layer + 1, index + 2
    return state, st_path, h5_path


def test_torchvision_layer_indices():
    plan19 = {name: idx for _, name, idx in weight_io.layer_plan("vgg19")}
    assert [plan19[f"conv{b}_1"] for b in range(1, 6)] == [0, 5, 10, 19, 28]
    assert plan19["conv4_2"] == 21 and plan19["relu4_2"] == 22
    assert [plan19[f"pool{b}"] for b in range(1, 6)] == [4, 9, 18, 27, 36]
    plan16 = {name: idx for _, name, idx in weight_io.layer_plan("vgg16")}
    assert [plan16[f"conv{b}_1"] for b in range(1, 6)] == [0, 5, 10, 17, 24]
    assert [plan16[f"pool{b}"] for b in range(1, 6)] == [4, 9, 16, 23, 30]


def test_safetensors_import_matches_numpy_reference(vgg16_files):
    state, st_path, _ = vgg16_files
    net = vgg.vgg16(st_path)
    image = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    taps = ("conv1_1", "relu1_2", "pool1", "relu2_1", "relu3_3", "relu4_1", "conv5_3", "pool5")
    got = net(image[None], taps=taps)
    ref = reference_forward(state, "vgg16", image)
    for tap in taps:
        assert got[tap].shape == (1,) + ref[tap].shape
        scale = np.abs(ref[tap]).max()
        np.testing.assert_allclose(np.asarray(got[tap][0]), ref[tap], rtol=0,
                                   atol=2e-5 * scale, err_msg=tap)


def test_h5_import_equals_safetensors_import(vgg16_files):
    _, st_path, h5_path = vgg16_files
    a, b = vgg.vgg16(st_path), vgg.vgg16(h5_path)
    image = np.random.default_rng(2).random((1, 20, 24, 3)).astype(np.float32)
    fa, fb = a(image, taps=("relu1_1", "relu5_3")), b(image, taps=("relu1_1", "relu5_3"))
    for tap in fa:
        np.testing.assert_array_equal(np.asarray(fa[tap]), np.asarray(fb[tap]))


def test_matches_torch_when_installed(vgg16_files):
    torch = pytest.importorskip("torch")
    state, st_path, _ = vgg16_files
    layers, cin = [], 3
    for v in TORCHVISION_CFG["vgg16"]:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(cin, v, 3, padding=1), torch.nn.ReLU()]
            cin = v
    features = torch.nn.Sequential(*layers)
    torch_state = {k.removeprefix("features."): torch.from_numpy(v) for k, v in state.items()}
    features.load_state_dict(torch_state)
    image = np.random.default_rng(3).random((2, 32, 32)).astype(np.float32)
    x = torch.from_numpy(image)[:, None].expand(-1, 3, -1, -1)
    x = (x - torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)) / torch.tensor(
        STD, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        want = features[:30](x).permute(0, 2, 3, 1).numpy()  # relu5_3 = index 29
    got = np.asarray(vgg.vgg16(st_path)(image, taps=("relu5_3",))["relu5_3"])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_missing_and_misshapen_tensors_are_named(tmp_path):
    state = torchvision_state_dict("vgg16")
    bad = {f"module.{k}": v for k, v in state.items() if k != "features.2.weight"}
    bad["module.features.5.bias"] = np.zeros(7, np.float32)
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    with pytest.raises(ValueError) as err:
        vgg.vgg16(path)
    message = str(err.value)
    assert "module.features.2.weight" in message and "conv1_2" in message
    assert "module.features.5.bias" in message and "(7,)" in message

    h5_path = tmp_path / "bad.h5"
    with h5py.File(h5_path, "w") as f:
        f.create_group("conv1_1")["weight"] = np.zeros((3, 3, 3, 64), np.float32)
    with pytest.raises(ValueError, match="conv1_1/bias.*conv1_2/weight"):
        vgg.vgg16(h5_path)
    with pytest.raises(ValueError, match="conv3_3/weight"):
        vgg.vgg16(h5_path)


def test_wrong_architecture_file_is_rejected(vgg16_files):
    _, st_path, _ = vgg16_files
    with pytest.raises(ValueError, match="features.34.weight"):
        vgg.vgg19(st_path)  # VGG16 has no conv5_4


def test_weight_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="random"):
        vgg.vgg19(None)
    with pytest.raises(FileNotFoundError):
        vgg.vgg19(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="PyTorch pickles"):
        (tmp_path / "w.pth").write_bytes(b"\x80\x02")
        vgg.vgg19(tmp_path / "w.pth")
    with pytest.warns(UserWarning, match="random weights"):
        net = vgg.vgg16("random")
    assert net.arch == "vgg16"


@pytest.fixture
def offline_cache(monkeypatch, tmp_path):
    """ImageNet download pointed at an unreachable address, cache in tmp."""
    info = dict(weight_io.IMAGENET_WEIGHTS["vgg16"], url="http://127.0.0.1:9/vgg16.safetensors")
    monkeypatch.setitem(weight_io.IMAGENET_WEIGHTS, "vgg16", info)
    monkeypatch.setenv("STYLEJAX_CACHE", str(tmp_path / "cache"))
    return info


def test_imagenet_offline_message(offline_cache, tmp_path):
    with pytest.raises(weight_io.WeightsUnavailableError) as err:
        vgg.vgg16("imagenet")
    message = str(err.value)
    assert "could not download" in message and "--weights PATH" in message
    assert offline_cache["sha256"] in message and str(tmp_path / "cache") in message
    assert isinstance(err.value, OSError)
    assert not list((tmp_path / "cache").glob("*.part"))  # no partial file left behind


def test_imagenet_download_and_cache_with_checksum(offline_cache, vgg16_files, monkeypatch,
                                                   tmp_path):
    _, st_path, _ = vgg16_files
    digest = hashlib.sha256(st_path.read_bytes()).hexdigest()
    info = dict(offline_cache, url=st_path.as_uri(), sha256=digest)  # file:// "download"
    monkeypatch.setitem(weight_io.IMAGENET_WEIGHTS, "vgg16", info)
    path = weight_io.fetch_imagenet("vgg16")
    assert path == tmp_path / "cache" / info["filename"] and path.is_file()
    net = vgg.vgg16("imagenet")  # now from the cache
    assert set(net(np.zeros((1, 8, 8), np.float32), taps=("relu1_1",))) == {"relu1_1"}

    # a wrong checksum on download and a corrupted cache are both refused
    path.unlink()
    monkeypatch.setitem(weight_io.IMAGENET_WEIGHTS, "vgg16", dict(info, sha256="0" * 64))
    with pytest.raises(weight_io.WeightsUnavailableError, match="sha256"):
        weight_io.fetch_imagenet("vgg16")
    assert not path.exists()
    path.write_bytes(b"corrupt")
    monkeypatch.setitem(weight_io.IMAGENET_WEIGHTS, "vgg16", info)
    with pytest.raises(weight_io.WeightsUnavailableError, match="delete it"):
        weight_io.fetch_imagenet("vgg16")


@pytest.fixture(scope="module")
def small_net():
    with pytest.warns(UserWarning):
        return vgg.vgg19("random", seed=3)


def test_grayscale_equals_repeated_rgb_and_taps(small_net):
    gray = np.random.default_rng(4).random((2, 18, 22)).astype(np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    a = small_net(gray, taps=("relu1_1", "pool2"))
    b = small_net(rgb, taps=("relu1_1", "pool2"))
    assert a["pool2"].shape == (2, 4, 5, 128)  # floors odd sizes like torch
    for tap in a:
        np.testing.assert_allclose(np.asarray(a[tap]), np.asarray(b[tap]), rtol=1e-6)
    assert small_net.taps[0] == "conv1_1" and small_net.taps[-1] == "pool5"


def test_remat_same_values_and_gradient(small_net):
    import jax
    import jax.numpy as jnp

    image = jnp.asarray(np.random.default_rng(5).random((1, 16, 16)).astype(np.float32))

    def total(x, remat):
        feats = small_net(x, taps=("relu1_2", "relu2_1"), remat=remat)
        return sum(jnp.sum(f ** 2) for f in feats.values())

    grad = jax.jit(jax.grad(total), static_argnums=1)
    g0, g1 = grad(image, False), grad(image, True)
    np.testing.assert_allclose(np.asarray(g0), np.asarray(g1), rtol=1e-5, atol=1e-6)


def test_max_pool_matches_torch_semantics_and_gradient():
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(np.random.default_rng(6).standard_normal((2, 7, 9, 3)), jnp.float32)
    weights = jnp.asarray(np.random.default_rng(7).standard_normal((2, 3, 4, 3)), jnp.float32)

    def reference(x):  # reduce_window formulation, floor on odd sizes
        return jax.lax.reduce_window(x[:, :6, :8], -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                     (1, 2, 2, 1), "VALID")

    np.testing.assert_array_equal(np.asarray(vgg.max_pool2(x)), np.asarray(reference(x)))
    got = jax.grad(lambda x: jnp.sum(weights * vgg.max_pool2(x)))(x)
    want = jax.grad(lambda x: jnp.sum(weights * reference(x)))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    assert np.asarray(got)[:, 6:].sum() == 0 and np.asarray(got)[:, :, 8:].sum() == 0


def test_bad_inputs(small_net):
    with pytest.raises(ValueError, match="unknown vgg19 tap"):
        small_net(np.zeros((1, 8, 8), np.float32), taps=("block1_conv1",))
    with pytest.raises(ValueError, match="non-finite"):
        small_net(np.full((1, 8, 8), np.nan, np.float32), taps=("relu1_1",))
    with pytest.raises(ValueError, match="grayscale"):
        small_net(np.zeros((8, 8), np.float32), taps=("relu1_1",))
    with pytest.raises(ValueError, match="too small"):
        small_net(np.zeros((1, 8, 8), np.float32), taps=("relu5_1",))


def test_misshapen_tensor_is_reported_without_reading_it(vgg16_files, tmp_path, monkeypatch):
    """A file declaring a huge tensor is refused from its header (issue: 2.9 KB -> 1.6 GB)."""
    _, _, h5_path = vgg16_files
    big = tmp_path / "big.h5"
    import shutil

    shutil.copy(h5_path, big)
    with h5py.File(big, "a") as f:
        del f["conv1_1/weight"]
        # chunked + compressed: tiny on disk, 16 GB if read
        f["conv1_1"].create_dataset("weight", shape=(3, 3, 3, 2 ** 30 // 8), dtype="f4",
                                    chunks=(1, 1, 1, 1024), compression="gzip")
    assert big.stat().st_size < 10 * h5_path.stat().st_size
    read = []
    original = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__",
                        lambda self, key: read.append(self.name) or original(self, key))
    with pytest.raises(ValueError, match=r"conv1_1/weight has shape \(3, 3, 3, 134217728\)"):
        weight_io.load_file(big, "vgg16")
    assert "/conv1_1/weight" not in read
