"""StyleX: the learned X-ray style metric (paper, Eq. 1).

``StyleX(I1, I2) = cos(e(I1), e(I2))`` with ``e`` the SimSiam-trained style
encoder (ResNet-18 + projector, 2048-d output). A :class:`StyleX` model wraps
the encoder's parameters (BatchNorm in inference mode) and is

* differentiable in the images (``jax.grad`` through :meth:`StyleX.embed` is
  how pipeline tuning uses it as a loss);
* jit-friendly: it is a pytree (parameters are leaves, the architecture is
  static), so it can be passed into or closed over by jitted functions;
* input-checked outside ``jit`` (rank, [0, 1], finite, minimum size).

Images are resized (linear, anti-aliased, aspect ratio kept) so that their
shorter side equals the model's ``embed_size``, the pixel scale of training.
A model with a ``tile_size`` (the side of its training views) then embeds each
image as a grid of ``tile_size`` tiles covering it (evenly spaced, overlapping
where the side is not a multiple) and returns the mean of the tiles' unit-length
projector outputs: the encoder sees the field of view it was trained on, not a
larger one with more air and anatomy around the tissue (its effect is measured in
``docs/stylex.md``).

A model may carry a *style projection* (:mod:`stylejax.metrics.style_projection`):
a linear map ``(z - mean) @ matrix`` fitted after training on the training styles,
which keeps the directions that separate styles and shrinks those that vary with
content (linear discriminant analysis). :meth:`StyleX.embed` returns the
projected embedding when there is one (the shipped model has a 64-d one); the
paper's 2048-d projector output is ``model.without_projection().embed(images)``.

Saved model format (a directory): ``stylex.json`` (architecture, sizes, the
weights' dtype, provenance) and ``weights.safetensors`` (the encoder's
parameters and BatchNorm statistics, keys ``path/to/leaf``, and the style
projection as float32 ``style_projection/mean`` and ``style_projection/matrix``). A training
run folder (``config.json`` + ``checkpoints/``) is loaded by
:func:`stylejax.train.simsiam.load_model` instead.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax import _checks, _xla
from stylejax.models.simsiam import StyleEncoder, cosine_similarity

MODEL_FILE = "stylex.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "stylejax.stylex/1"
PROJECTION_KEYS = ("style_projection/mean", "style_projection/matrix")
#: Smallest image side accepted by :meth:`StyleX.embed`.
MIN_SIZE = 32
_PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "assets", "stylex_default")


def _check_images(images):
    """Rank/size checks always; value checks ([0, 1], finite) on concrete inputs."""
    if _checks.is_concrete(images):
        _checks.check_image(images, "images", min_rank=2, max_rank=3, min_size=MIN_SIZE,
                            unit_range=True)
        return
    _checks.check_rank(images, "images", min_rank=2, max_rank=3)
    h, w = images.shape[-2:]
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"images is too small: {h}x{w} pixels, need at least "
                         f"{MIN_SIZE}x{MIN_SIZE}")


def _leaf_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def resize_shorter(images, size: int):
    """Resize ``[N, H, W]`` so that ``min(H, W) == size`` (aspect kept; linear, anti-aliased)."""
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    f = size / min(h, w)
    shape = (images.shape[0], max(int(round(h * f)), size), max(int(round(w * f)), size))
    return jax.image.resize(images, shape, "linear", antialias=True)


@jax.tree_util.register_pytree_node_class
class StyleX:
    """A StyleX style metric.

    Build with :func:`load_pretrained`, :func:`load` or :meth:`from_encoder`.

    Attributes:
      width, dim: encoder architecture (ResNet-18 width, embedding size).
      embed_size: shorter image side the encoder sees (inputs are resized to it).
      tile_size: side of the tiles an image is embedded as (the training view
        size), or None for the whole image in one pass.
      projection: ``(mean [dim], matrix [dim, k])`` applied to the encoder's
        output as ``(z - mean) @ matrix``, or None (the raw ``dim``-d output).
      info: provenance (config name, training steps, ...), a dict.
    """

    #: Name used in reports and evaluation tables.
    name = "stylex"
    #: Smallest image side :meth:`embed` accepts.
    min_size = MIN_SIZE

    def __init__(self, graphdef, state, *, width: int, dim: int, embed_size: int,
                 tile_size: int | None = None, projection=None, info: dict | None = None):
        self._graphdef = graphdef
        self._state = state
        self.width = int(width)
        self.dim = int(dim)
        self.embed_size = int(embed_size)
        if tile_size is not None and not (isinstance(tile_size, (int, np.integer))
                                          and MIN_SIZE <= tile_size <= self.embed_size):
            raise ValueError(f"tile_size must be an integer in [{MIN_SIZE}, "
                             f"embed_size={self.embed_size}] or None (got {tile_size!r})")
        self.tile_size = None if tile_size is None else int(tile_size)
        self.projection = check_affine_map(projection, self.dim)
        self.info = dict(info or {})

    @property
    def embedding_dim(self) -> int:
        """Length of :meth:`embed`'s vectors (the projection's width, else ``dim``)."""
        return self.dim if self.projection is None else int(self.projection[1].shape[1])

    def replace(self, **changes) -> "StyleX":
        """A copy sharing the weights with ``embed_size``, ``tile_size``,
        ``projection`` or ``info`` changed."""
        unknown = set(changes) - {"embed_size", "tile_size", "projection", "info"}
        if unknown:
            raise TypeError(f"StyleX.replace got unknown field(s): {sorted(unknown)}")
        fields = dict(embed_size=self.embed_size, tile_size=self.tile_size,
                      projection=self.projection, info=self.info)
        fields.update(changes)
        return StyleX(self._graphdef, self._state, width=self.width, dim=self.dim, **fields)

    def without_projection(self) -> "StyleX":
        """The same model embedding to the raw ``dim``-d projector output (the paper's)."""
        return self.replace(projection=None)

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_encoder(cls, encoder: StyleEncoder, *, embed_size: int,
                     tile_size: int | None = None, info: dict | None = None):
        """Wrap a :class:`StyleEncoder` (its BatchNorm switched to inference)."""
        encoder = nnx.view(encoder, use_running_average=True)
        graphdef, state = nnx.split(encoder)
        return cls(graphdef, state, width=encoder.backbone.width,
                   dim=encoder.projector.bn3.num_features, embed_size=embed_size,
                   tile_size=tile_size, info=info)

    @classmethod
    def from_weights(cls, weights: dict, *, width: int, dim: int, embed_size: int,
                     tile_size: int | None = None, projection=None, info: dict | None = None):
        """Build from a flat ``{"path/to/leaf": array}`` dict (see :meth:`flat_weights`)."""
        encoder = nnx.eval_shape(lambda: StyleEncoder(width=width, dim=dim, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(nnx.view(encoder, use_running_average=True))
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state.to_pure_dict())
        names = [_leaf_name(path) for path, _ in leaves]
        missing = sorted(set(names) - set(weights))
        extra = sorted(set(weights) - set(names))
        if missing or extra:
            raise ValueError(f"weights do not match a width-{width}, dim-{dim} StyleX encoder "
                             f"(missing: {missing[:3]}, unexpected: {extra[:3]})")
        values = []
        for name, (_, expected) in zip(names, leaves):
            value = np.asarray(weights[name])
            if value.shape != tuple(expected.shape):
                raise ValueError(f"weight {name} has shape {value.shape}, "
                                 f"expected {tuple(expected.shape)}")
            values.append(jnp.asarray(value, jnp.float32))
        nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, values))
        return cls(graphdef, state, width=width, dim=dim, embed_size=embed_size,
                   tile_size=tile_size, projection=projection, info=info)

    def encoder(self) -> StyleEncoder:
        """The wrapped :class:`StyleEncoder` (a new NNX module sharing the arrays;
        BatchNorm in inference mode), e.g. to tap the backbone's feature maps."""
        return nnx.merge(self._graphdef, self._state)

    def flat_weights(self) -> dict:
        """``{"path/to/leaf": numpy array}`` of every encoder parameter and statistic."""
        leaves = jax.tree_util.tree_flatten_with_path(self._state.to_pure_dict())[0]
        return {_leaf_name(path): np.asarray(v) for path, v in leaves}

    # -- pytree ---------------------------------------------------------------
    def tree_flatten(self):
        return (self._state, self.projection), (
            self._graphdef, self.width, self.dim, self.embed_size, self.tile_size,
            json.dumps(self.info, sort_keys=True, default=str))

    @classmethod
    def tree_unflatten(cls, aux, children):
        graphdef, width, dim, embed_size, tile_size, info = aux
        model = object.__new__(cls)  # no checks: leaves may be tracers or placeholders
        model._graphdef, model._state, model.projection = graphdef, children[0], children[1]
        model.width, model.dim, model.embed_size, model.tile_size = width, dim, embed_size, \
            tile_size
        model.info = json.loads(info)
        return model

    # -- metric ---------------------------------------------------------------
    def embed(self, images):
        """Style embeddings (the projector output, paper Sec. 2.1).

        Args:
          images: ``[N, H, W]`` (or one ``[H, W]``) grayscale images in [0, 1],
            H, W >= 32; resized so the shorter side is ``embed_size``.
        Returns:
          ``[N, embedding_dim]`` float32 (``[embedding_dim]`` for one image): the mean
          of the unit-length projector outputs of the image's tiles (one tile, the
          whole image, when ``tile_size`` is None), through the style projection
          when the model has one. Differentiable in ``images``.
        Raises:
          ValueError: wrong rank, too small, non-finite or outside [0, 1]
            (value checks only for concrete inputs).
        """
        _check_images(images)
        x = jnp.asarray(images, jnp.float32)
        single = x.ndim == 2
        z = _embed(self._graphdef, self.embed_size, self.tile_size, self._state,
                   self.projection, x[None] if single else x)
        return z[0] if single else z

    def similarity(self, a, b):
        """StyleX similarity (cosine of embeddings, paper Eq. 1); 1 = same style.

        Args:
          a, b: images ``[H, W]`` or ``[N, H, W]`` in [0, 1] (batches of equal
            size, or one of them a single image, compared with each of the other).
            Shapes may differ between ``a`` and ``b``.
        Returns:
          scalar for two single images, else ``[N]``.
        """
        return cosine_similarity(self.embed(a), self.embed(b))

    def distance(self, a, b):
        """StyleX distance ``1 - similarity(a, b)`` (0 = same style, up to 2)."""
        return 1.0 - self.similarity(a, b)

    def __repr__(self):
        return (f"StyleX(width={self.width}, dim={self.dim}, embed_size={self.embed_size}, "
                f"tile_size={self.tile_size}, embedding_dim={self.embedding_dim}, "
                f"info={self.info})")

    # -- saving ---------------------------------------------------------------
    def save(self, path: str, *, dtype: str = "float16"):
        """Write the model to directory ``path`` (see the module docstring).

        The model is written to a new sibling folder which then replaces ``path``
        (other files already in ``path`` are carried over), so an interrupted save
        leaves either the old model or the new one, never a mix. ``path`` may be the
        folder the model was loaded from.

        Args:
          path: output directory (created).
          dtype: "float16" (half the size; embeddings change by ~1e-3 in cosine)
            or "float32".
        Raises:
          ValueError: bad ``dtype``, or ``path`` is a file or cannot be created.
        """
        from safetensors.numpy import save_file
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32 (got {dtype!r})")
        path = os.fspath(path)
        if "://" in path:  # gs:// etc.: written locally, then each file copied there
            import tempfile

            from etils import epath
            with tempfile.TemporaryDirectory() as local:
                self.save(os.path.join(local, "model"), dtype=dtype)
                remote = epath.Path(path)
                remote.mkdir(parents=True, exist_ok=True)
                for name in (WEIGHTS_FILE, MODEL_FILE):  # the description last
                    tmp = remote / f"{name}.tmp{os.getpid()}"
                    tmp.write_bytes(open(os.path.join(local, "model", name), "rb").read())
                    tmp.replace(remote / name)
            return
        path = os.path.abspath(path).rstrip(os.sep) or os.sep
        check_output_dir(path)
        weights = {k: np.ascontiguousarray(v.astype(dtype)) for k, v in self.flat_weights().items()}
        if self.projection is not None:  # float32: small, and it scales every direction
            weights.update({k: np.ascontiguousarray(np.asarray(v, np.float32))
                            for k, v in zip(PROJECTION_KEYS, self.projection)})
        meta = dict(format=FORMAT, width=self.width, dim=self.dim, embed_size=self.embed_size,
                    tile_size=self.tile_size, projection_dim=(
                        None if self.projection is None else self.embedding_dim),
                    dtype=dtype, info=self.info)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        new = f"{path}.new{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        os.mkdir(new)  # mode from the umask, as for a folder the user makes
        try:
            save_file(weights, os.path.join(new, WEIGHTS_FILE))
            with open(os.path.join(new, MODEL_FILE), "w") as f:
                json.dump(meta, f, indent=2, sort_keys=True)
            mode = 0o666 & ~_umask()
            for name in (WEIGHTS_FILE, MODEL_FILE):
                os.chmod(os.path.join(new, name), mode)
            if os.path.isdir(path):  # keep what else the folder holds (e.g. a README)
                for name in os.listdir(path):
                    if name not in (WEIGHTS_FILE, MODEL_FILE):
                        src, dst = os.path.join(path, name), os.path.join(new, name)
                        if os.path.isdir(src) and not os.path.islink(src):
                            shutil.copytree(src, dst, symlinks=True)
                        else:
                            shutil.copy2(src, dst, follow_symlinks=False)
            _swap_in(new, path)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_dir(path: str):
    """ValueError naming ``path`` if it is a file or its nearest existing parent is
    a file or not writable (checked before any work)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path}: exists and is not a folder; give a folder for the model")
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"{path}: cannot create it, {parent} is a file, not a folder")
    if parent and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: folder {parent} is not writable")


def _swap_in(new: str, path: str):
    """Make folder ``new`` be ``path``: one atomic exchange where Linux offers it
    (renameat2 RENAME_EXCHANGE), else rename the old folder away and the new one in."""
    if not os.path.isdir(path):
        os.rename(new, path)
        return
    if _exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # now the old model
        return
    old = f"{path}.old{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(path, old)
    os.rename(new, path)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where unsupported."""
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def check_affine_map(pair, dim: int, name: str = "projection"):
    """``(mean [dim], matrix [dim, k])`` as float32 arrays, or None (``pair`` None);
    ValueError naming ``name`` if malformed or not finite."""
    if pair is None:
        return None
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name} must be a (mean, matrix) pair or None")
    mean, matrix = (jnp.asarray(v, jnp.float32) for v in pair)
    if mean.shape != (dim,) or matrix.ndim != 2 or matrix.shape[0] != dim or matrix.shape[1] < 1:
        raise ValueError(f"{name} must be mean [{dim}] and matrix [{dim}, k] "
                         f"(got {tuple(mean.shape)} and {tuple(matrix.shape)})")
    if not (bool(jnp.all(jnp.isfinite(mean))) and bool(jnp.all(jnp.isfinite(matrix)))):
        raise ValueError(f"{name} contains NaN or inf")
    return mean, matrix


def tile_starts(side: int, tile: int) -> list[int]:
    """Start offsets of ``ceil(side / tile)`` tiles evenly spaced over ``side`` pixels
    (first at 0, last ending at ``side``)."""
    n = -(-side // tile)
    return [int(round(v)) for v in np.linspace(0, side - tile, n)]


def _tiles(images, tile: int):
    """``[N, H, W] -> [N, T, tile, tile]``, the tiles of :func:`tile_starts` per axis."""
    h, w = images.shape[-2:]
    return jnp.stack([images[:, i:i + tile, j:j + tile]
                      for i in tile_starts(h, tile) for j in tile_starts(w, tile)], axis=1)


def _embed_impl(graphdef, embed_size, tile_size, state, projection, images):
    encoder = nnx.merge(graphdef, state, copy=True)
    images = resize_shorter(images, embed_size)
    tiles = images[:, None] if tile_size is None else _tiles(images, tile_size)
    n, t = tiles.shape[:2]
    z = encoder(tiles.reshape(n * t, *tiles.shape[2:])).reshape(n, t, -1)
    z = z / jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + 1e-12)
    z = z.mean(axis=1)
    if projection is not None:
        mean, matrix = projection
        z = (z - mean) @ matrix
    return z


_embed = _xla.jit(_embed_impl, static_argnums=(0, 1, 2))


#: Largest ``stylex.json`` :func:`load` reads (bytes).
MAX_META_BYTES = 1 << 20
#: Largest ``embed_size`` / ``width`` / ``dim`` a saved model may declare.
MAX_EMBED_SIZE, MAX_WIDTH, MAX_DIM = 4096, 1024, 65536


def _read_meta(meta_path: str) -> dict:
    """``stylex.json`` checked: a regular file under :data:`MAX_META_BYTES` holding
    the format tag and sane integer sizes; ValueError naming the file otherwise."""
    try:
        info = os.stat(meta_path)
    except OSError as err:
        raise ValueError(f"{meta_path}: cannot read it ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{meta_path}: not a regular file")
    if info.st_size > MAX_META_BYTES:
        raise ValueError(f"{meta_path}: {info.st_size} bytes, more than a model description "
                         f"can hold (limit {MAX_META_BYTES})")
    try:
        with open(meta_path, "rb") as f:
            text = f.read(MAX_META_BYTES + 1)
        if len(text) > MAX_META_BYTES:
            raise ValueError("too large")
        meta = json.loads(text)
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"{meta_path}: not a readable JSON model description ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unsupported format {meta.get('format')!r} "
                         f"(expected {FORMAT!r})")
    for key, lo, hi in (("width", 1, MAX_WIDTH), ("dim", 1, MAX_DIM),
                        ("embed_size", MIN_SIZE, MAX_EMBED_SIZE)):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{meta_path}: {key} must be an integer in [{lo}, {hi}] "
                             f"(got {value!r})")
    tile = meta.get("tile_size")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int)):
        raise ValueError(f"{meta_path}: tile_size must be an integer or null (got {tile!r})")
    if not isinstance(meta.get("info", {}) or {}, dict):
        raise ValueError(f"{meta_path}: info must be a JSON object")
    return meta


def _read_weights(weights_path: str) -> dict:
    """``weights.safetensors`` as float arrays: float16/32 only, all finite;
    ValueError naming the file otherwise (also for a damaged file)."""
    from safetensors.numpy import load_file
    try:
        if not stat.S_ISREG(os.stat(weights_path).st_mode):
            raise ValueError("not a regular file")
        weights = load_file(weights_path)
    except Exception as err:  # SafetensorError, OSError, ... from a damaged file
        raise ValueError(f"{weights_path}: not a readable safetensors file ({err})") from None
    for name, value in weights.items():
        if value.dtype not in (np.float16, np.float32):
            raise ValueError(f"{weights_path}: weight {name} is {value.dtype}, expected "
                             "float16 or float32")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{weights_path}: weight {name} contains NaN or inf")
    return weights


def load(path: str) -> StyleX:
    """Load a saved model directory.

    Args:
      path: a directory with ``stylex.json`` + ``weights.safetensors`` (from
        :meth:`StyleX.save` / ``stylejax train simsiam --export``). Training run
        folders load with :func:`stylejax.train.simsiam.load_model`.
    Returns:
      :class:`StyleX`.
    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: ``path`` is not a saved StyleX model.
    """
    path = os.fspath(path)
    if "://" in path:
        return _load_remote(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"StyleX model directory not found: {path}")
    meta_path = os.path.join(path, MODEL_FILE)
    if os.path.exists(meta_path):
        meta = _read_meta(meta_path)
        weights_path = os.path.join(path, WEIGHTS_FILE)
        if not os.path.exists(weights_path):
            raise ValueError(f"{path} is not a complete StyleX model: {WEIGHTS_FILE} is missing")
        weights = _read_weights(weights_path)
        projection = [weights.pop(k, None) for k in PROJECTION_KEYS]
        if (projection[0] is None) != (projection[1] is None):
            raise ValueError(f"{weights_path}: the style projection is incomplete "
                             f"(needs both {PROJECTION_KEYS[0]} and {PROJECTION_KEYS[1]})")
        try:
            return StyleX.from_weights(
                weights, width=meta["width"], dim=meta["dim"], embed_size=meta["embed_size"],
                tile_size=meta.get("tile_size"), info=meta.get("info"),
                projection=None if projection[0] is None else projection)
        except ValueError as err:
            raise ValueError(f"{path}: not a valid StyleX model: {err}") from None
    if os.path.exists(os.path.join(path, "config.json")) and os.path.isdir(
            os.path.join(path, "checkpoints")):
        raise ValueError(f"{path} is a training run folder, not a saved StyleX model: load it "
                         "with stylejax.train.simsiam.load_model, or export it with "
                         "'stylejax train simsiam --export'")
    raise ValueError(f"{path} is not a StyleX model: expected {MODEL_FILE} + {WEIGHTS_FILE}")


def _load_remote(path: str) -> StyleX:
    """:func:`load` for a URL (``gs://...``): both files copied to a local temporary
    folder through ``etils.epath`` (the description's size checked first)."""
    import tempfile

    from etils import epath
    remote = epath.Path(path)
    if not remote.is_dir():
        raise FileNotFoundError(f"StyleX model directory not found: {path}")
    with tempfile.TemporaryDirectory() as local:
        for name in (MODEL_FILE, WEIGHTS_FILE):
            if not (remote / name).exists():
                raise ValueError(f"{path} is not a StyleX model: expected {MODEL_FILE} + "
                                 f"{WEIGHTS_FILE}")
            if name == MODEL_FILE and (remote / name).stat().length > MAX_META_BYTES:
                raise ValueError(f"{path}/{name}: more than a model description can hold "
                                 f"(limit {MAX_META_BYTES} bytes)")
            with (remote / name).open("rb") as src, open(os.path.join(local, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            return load(local)
        except ValueError as err:
            raise ValueError(str(err).replace(local, path)) from None


def load_pretrained() -> StyleX:
    """The StyleX model shipped with the package (``stylejax/assets/stylex_default``).

    Trained with the ``default`` config of the ``simsiam`` training task
    (:mod:`stylejax.train.simsiam_configs`) on synthetic phantoms in LAP training
    styles and black-box vendor training styles; weights stored as float16.
    """
    if not os.path.exists(os.path.join(_PRETRAINED, MODEL_FILE)):
        raise FileNotFoundError(f"the shipped StyleX model is missing from {_PRETRAINED}; "
                                "reinstall stylejax or train one with 'stylejax train simsiam'")
    return load(_PRETRAINED)
