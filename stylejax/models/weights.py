"""VGG weight files: import from safetensors / flaxmodels h5, and the cached ImageNet download.

Two on-disk layouts are understood:

* **torchvision / timm safetensors**: keys ``features.{i}.weight`` (OIHW) and
  ``features.{i}.bias``, where ``i`` is the layer's index in torchvision's
  ``vgg*.features`` ``Sequential`` (conv1_1 = 0, relu1_1 = 1, conv1_2 = 2, pool1 = 4, ...).
  A common prefix (``module.``, ``vgg.``, ...) before ``features.`` is accepted, and keys
  that do not belong to the convolutional trunk (the classifier) are ignored.
* **flaxmodels h5**: one group per convolution named ``conv{b}_{l}`` holding the datasets
  ``weight`` (HWIO) and ``bias``.

Every loader returns ``{conv_name: (kernel_hwio, bias)}`` as float32 numpy arrays after
checking that every convolution is present with the expected shape; otherwise a
``ValueError`` names each missing or misshapen tensor.

Nothing is downloaded unless the caller asks for ``"imagenet"``. Then the torchvision
ImageNet weights are fetched once from the timm mirror on Hugging Face (safetensors,
pinned commit, sha256-verified) into ``~/.cache/stylejax`` (or ``$STYLEJAX_CACHE``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

# Convolution widths per block; a pool follows every block.
ARCHITECTURES = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}

# The torchvision weights as re-published (safetensors) by timm; commits pinned so the
# checksum stays valid. Sizes: vgg16 553 MB, vgg19 575 MB (classifier included).
IMAGENET_WEIGHTS = {
    "vgg16": {
        "url": "https://huggingface.co/timm/vgg16.tv_in1k/resolve/"
               "3394518cba29aee1ea82a49d971be90d2dd1dab7/model.safetensors",
        "sha256": "57b026918159a6bf9faf8405c3a551903768e7138989d9c6224a14227203fad8",
        "filename": "vgg16.tv_in1k.safetensors",
    },
    "vgg19": {
        "url": "https://huggingface.co/timm/vgg19.tv_in1k/resolve/"
               "128d4708565b3a414bcbb9bbad440b2fe37b9f18/model.safetensors",
        "sha256": "11aea017b543ff59233749d8f1cf544cda749378f5790d2fedab841fb86b7669",
        "filename": "vgg19.tv_in1k.safetensors",
    },
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class WeightsUnavailableError(OSError):
    """The ImageNet weights are neither cached nor downloadable (offline, blocked, bad hash)."""


def layer_plan(arch: str) -> tuple[tuple[str, str, int], ...]:
    """The layer sequence of ``arch`` as ``(kind, name, torchvision_index)``.

    Args:
      arch: ``"vgg16"`` or ``"vgg19"``.
    Returns:
      tuple of ``(kind, name, index)`` with kind in ``{"conv", "relu", "pool"}``, e.g.
      ``("conv", "conv1_1", 0), ("relu", "relu1_1", 1), ..., ("pool", "pool1", 4)``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown VGG architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    plan, index = [], 0
    for block, widths in enumerate(ARCHITECTURES[arch], start=1):
        for layer in range(1, len(widths) + 1):
            plan.append(("conv", f"conv{block}_{layer}", index))
            plan.append(("relu", f"relu{block}_{layer}", index + 1))
            index += 2
        plan.append(("pool", f"pool{block}", index))
        index += 1
    return tuple(plan)


def conv_shapes(arch: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Expected ``{conv_name: (kernel_hwio_shape, bias_shape)}`` for ``arch``."""
    shapes, channels_in = {}, 3
    for block, widths in enumerate(ARCHITECTURES[arch], start=1):
        for layer, width in enumerate(widths, start=1):
            shapes[f"conv{block}_{layer}"] = ((3, 3, channels_in, width), (width,))
            channels_in = width
    return shapes


def _expected(arch: str, name: str, part: str) -> tuple[int, ...]:
    kernel, bias = conv_shapes(arch)[name]
    return kernel if part == "kernel" else bias


def _shape_only(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-stride stand-in with ``shape`` for a tensor that is reported, not read."""
    return np.broadcast_to(np.float32(0), shape)


def _check_float(path, key: str, dtype) -> None:
    """Refuse integer, bool and other non-float tensors (weights are float16/32/64/bf16)."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f" and dtype.name != "bfloat16":
        raise ValueError(f"{path}: {key} has dtype {dtype}, expected floating-point weights")


def _check_complete(arch: str, found: dict, describe) -> dict:
    """Verify presence and shape of every conv tensor; ``describe(name, part)`` names a key."""
    missing, misshapen, out = [], [], {}
    for name, (kshape, bshape) in conv_shapes(arch).items():
        kernel, bias = found.get((name, "kernel")), found.get((name, "bias"))
        for part, arr, want in (("kernel", kernel, kshape), ("bias", bias, bshape)):
            if arr is None:
                missing.append(describe(name, part))
            elif tuple(arr.shape) != want:
                misshapen.append(f"{describe(name, part)} has shape {tuple(arr.shape)}, "
                                 f"expected {want}")
        if kernel is not None and bias is not None:
            out[name] = (kernel, bias)
    if missing or misshapen:
        lines = []
        if missing:
            lines.append(f"missing tensors: {', '.join(missing)}")
        if misshapen:
            lines.append("misshapen tensors: " + "; ".join(misshapen))
        raise ValueError(f"{arch} weight file is incomplete or does not match the "
                         f"architecture: {' | '.join(lines)}")
    for name, (kernel, bias) in out.items():
        for part, arr in (("kernel", kernel), ("bias", bias)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{arch} weight tensor {describe(name, part)} contains "
                                 "non-finite values")
    return out


def load_safetensors(path, arch: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a torchvision/timm-keyed safetensors file (``features.{i}.weight|bias``, OIHW).

    Args:
      path: file path.
      arch: ``"vgg16"`` or ``"vgg19"`` (decides the index -> layer mapping).
    Returns:
      ``{conv_name: (kernel [3, 3, Cin, Cout] float32, bias [Cout] float32)}``.
    Raises:
      ValueError naming missing, misshapen, non-float or non-finite tensors.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        keys = list(handle.keys())
        prefixes = {m.group(1) for k in keys if (m := re.match(r"^(.*?)features\.0\.weight$", k))}
        prefix = prefixes.pop() if len(prefixes) == 1 else ""
        index_of = {name: idx for kind, name, idx in layer_plan(arch) if kind == "conv"}
        found = {}
        for name, idx in index_of.items():
            for part, suffix in (("kernel", "weight"), ("bias", "bias")):
                key = f"{prefix}features.{idx}.{suffix}"
                if key in keys:
                    shape = tuple(handle.get_slice(key).get_shape())
                    if part == "kernel" and len(shape) == 4:
                        shape = tuple(shape[i] for i in (2, 3, 1, 0))  # OIHW -> HWIO
                    if shape != _expected(arch, name, part):
                        found[(name, part)] = _shape_only(shape)  # never read
                        continue
                    raw = handle.get_tensor(key)
                    _check_float(path, key, raw.dtype)
                    arr = np.asarray(raw, dtype=np.float32)
                    if part == "kernel":
                        arr = arr.transpose(2, 3, 1, 0)  # OIHW -> HWIO
                    found[(name, part)] = arr

    def describe(name, part):
        key = f"{prefix}features.{index_of[name]}.{'weight' if part == 'kernel' else 'bias'}"
        return f"{key} ({name} {part})"

    return _check_complete(arch, found, describe)


def load_h5(path, arch: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a flaxmodels-style h5 file: groups ``conv{b}_{l}`` with ``weight`` (HWIO), ``bias``.

    Args:
      path: file path.
      arch: ``"vgg16"`` or ``"vgg19"``.
    Returns:
      ``{conv_name: (kernel [3, 3, Cin, Cout] float32, bias [Cout] float32)}``.
    Raises:
      ValueError naming missing, misshapen, non-float or non-finite tensors.
    """
    import h5py

    found = {}
    with h5py.File(str(path), "r") as handle:
        for name in conv_shapes(arch):
            group = handle.get(name)
            if not isinstance(group, h5py.Group):
                continue
            for part, dataset in (("kernel", "weight"), ("bias", "bias")):
                data = group.get(dataset)
                if not isinstance(data, h5py.Dataset):
                    continue
                if tuple(data.shape) != _expected(arch, name, part):
                    found[(name, part)] = _shape_only(tuple(data.shape))  # never read
                    continue
                _check_float(path, f"{name}/{dataset}", data.dtype)
                try:
                    found[(name, part)] = np.asarray(data[()], dtype=np.float32)
                except (TypeError, ValueError, OSError) as err:
                    raise ValueError(f"{path}: {name}/{dataset} is not a readable numeric "
                                     f"array ({err})") from err

    def describe(name, part):
        return f"{name}/{'weight' if part == 'kernel' else 'bias'}"

    return _check_complete(arch, found, describe)


def load_file(path, arch: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Dispatch on the file's content (HDF5 signature) or suffix; see the two loaders.

    Raises:
      FileNotFoundError: ``path`` is not a file.
      ValueError: naming ``path``, for any file that is not complete, finite,
        floating-point VGG weights of ``arch`` (damaged files included).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"VGG weight file not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt") and head != _HDF5_MAGIC:
        raise ValueError(f"{path.name}: PyTorch pickles are not read (no torch dependency); "
                         "convert with safetensors.torch.save_file(model.state_dict(), "
                         "'vgg.safetensors') or download timm's model.safetensors")
    hdf5 = head == _HDF5_MAGIC or path.suffix.lower() in (".h5", ".hdf5")
    try:
        return load_h5(path, arch) if hdf5 else load_safetensors(path, arch)
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from None
    except Exception as err:  # h5py/safetensors errors of damaged files (OSError, ...)
        kind = "HDF5" if hdf5 else "safetensors"
        raise ValueError(f"{path} is not a readable {kind} weight file "
                         f"({type(err).__name__}: {err})") from err


def cache_dir() -> Path:
    """``$STYLEJAX_CACHE`` or ``$XDG_CACHE_HOME/stylejax`` (default ``~/.cache/stylejax``)."""
    if os.environ.get("STYLEJAX_CACHE"):
        return Path(os.environ["STYLEJAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stylejax"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_supply(arch: str, target: Path) -> str:
    info = IMAGENET_WEIGHTS[arch]
    return (f"To use ImageNet weights offline, download {info['url']} on a machine with "
            f"internet access (sha256 {info['sha256']}) and either pass its path "
            f"(--weights PATH, or {arch}(weights=PATH)) or copy it to {target}. Any "
            "safetensors file with torchvision/timm keys features.{i}.weight|bias, or a "
            "flaxmodels-style .h5 file, works. weights='random' runs without a file "
            "(untrained features, for testing only).")


def fetch_imagenet(arch: str, *, directory=None, timeout: float = 30.0) -> Path:
    """Path of the cached ImageNet weights for ``arch``, downloading them if absent.

    The file is written to a temporary name, its sha256 checked, then renamed, so an
    interrupted or corrupted download never poisons the cache.

    Args:
      arch: ``"vgg16"`` or ``"vgg19"``.
      directory: cache directory (default :func:`cache_dir`).
      timeout: socket timeout in seconds.
    Returns:
      path of the verified safetensors file.
    Raises:
      WeightsUnavailableError (an OSError) when offline or the checksum does not match,
      with instructions for supplying the file by hand.
    """
    if arch not in IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights known for {arch!r}")
    info = IMAGENET_WEIGHTS[arch]
    directory = Path(directory).expanduser() if directory is not None else cache_dir()
    target = directory / info["filename"]
    if target.is_file():
        if _sha256(target) == info["sha256"]:
            return target
        raise WeightsUnavailableError(
            f"cached file {target} does not match the expected sha256 {info['sha256']}; "
            f"delete it to download again. " + _how_to_supply(arch, target))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=info["filename"], suffix=".part", dir=directory)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
                    info["url"], timeout=timeout) as response:
                shutil.copyfileobj(response, out, length=1 << 20)
            digest = _sha256(tmp)
            if digest != info["sha256"]:
                raise WeightsUnavailableError(
                    f"downloaded {info['url']} but its sha256 is {digest}, expected "
                    f"{info['sha256']}. " + _how_to_supply(arch, target))
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
    except WeightsUnavailableError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise WeightsUnavailableError(
            f"could not download {arch} ImageNet weights from {info['url']} ({err}). "
            + _how_to_supply(arch, target)) from err
    return target
