"""A style descriptor from the channel statistics of a frozen StyleX encoder.

The StyleX embedding (the pooled projector output) is what SimSiam trained: it
judges LAP styles and the vendor styles it was trained on very well, but vendor
styles it never saw much less so. The encoder's intermediate feature maps keep more
of how an image was processed. The classical style representation of neural style
transfer (per-channel mean and standard deviation of feature maps, as in AdaIN) taken
from every stage of the *frozen* encoder, followed by one linear map fitted on
training styles, describes unseen vendor styles far better (measured in
``docs/stylex.md``, "Unseen vendor styles").

Descriptor of one image (:class:`StyleStatistics`):

1. resize so the shorter side is the model's ``embed_size`` (as :meth:`StyleX.embed`);
   the whole image is one pass (statistics are averages over positions, no tiles);
2. for each tap in ``taps`` (of :data:`stylejax.models.features.STYLEX_TAPS`), the
   per-channel mean ``m_c`` and ``log(s_c + LOG_EPS)`` of the per-channel standard
   deviation ``s_c`` over all positions (:func:`statistics_vector`, ``D = 2 * sum C``);
3. the head ``(x - mean) @ matrix`` (``[D] -> [k]``): standardisation and a Fisher
   LDA on training styles folded into one affine map (:func:`fit_head`).

Distances are ``1 - cosine`` as for StyleX (``metric = "cosine"``). The descriptor is
differentiable in the images and jit-friendly.

Saved head format (a directory): ``style_statistics.json`` (format tag, taps, the
dimensions, provenance) and ``head.safetensors`` (float32 ``mean [D]`` and
``matrix [D, k]``). The head belongs to one encoder: :func:`load` is given the
:class:`~stylejax.metrics.stylex.StyleX` model it was fitted on.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from stylejax import _checks
from stylejax.metrics import stylex as stylex_lib
from stylejax.metrics.style_projection import fit_lda
from stylejax.models import export_files
from stylejax.models import features as features_lib

HEAD_META = "style_statistics.json"
HEAD_WEIGHTS = "head.safetensors"
FORMAT = "stylejax.style_statistics/1"
#: Default taps: every stage of the encoder (the stem and the four residual stages).
TAPS = ("stem", "stage1", "stage2", "stage3", "stage4")
#: Offset inside the log of the channel standard deviation.
LOG_EPS = 1e-3
#: Variance floor inside the square root (keeps the gradient finite on flat maps).
_VAR_FLOOR = 1e-16
_PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "assets", "stylex_style_head")


def channel_statistics(feature_map):
    """Per-channel mean and standard deviation over positions.

    Args:
      feature_map: ``[N, H, W, C]``.
    Returns:
      ``(mean [N, C], std [N, C])`` float32; ``std`` is the population standard
      deviation (divisor ``H * W``), ``sqrt(var + 1e-16)``.
    """
    f = jnp.asarray(feature_map, jnp.float32)
    if f.ndim != 4:
        raise ValueError(f"feature_map must be [N, H, W, C] (got shape {tuple(f.shape)})")
    mean = jnp.mean(f, axis=(1, 2))
    var = jnp.mean(jnp.square(f - mean[:, None, None, :]), axis=(1, 2))
    return mean, jnp.sqrt(var + _VAR_FLOOR)


def statistics_vector(maps, taps):
    """``[N, D]``: for each tap in order, the channel means then ``log(std + LOG_EPS)``.

    Args:
      maps: ``{tap: [N, h, w, C]}`` feature maps.
      taps: tap order.
    """
    parts = []
    for t in taps:
        mean, std = channel_statistics(maps[t])
        parts += [mean, jnp.log(std + LOG_EPS)]
    return jnp.concatenate(parts, axis=1)


def _check_images(images):
    """Rank/size checks always; value checks ([0, 1], finite) on concrete inputs."""
    if _checks.is_concrete(images):
        _checks.check_image(images, "images", min_rank=2, max_rank=3,
                            min_size=stylex_lib.MIN_SIZE, unit_range=True)
        return
    _checks.check_rank(images, "images", min_rank=2, max_rank=3)
    if min(images.shape[-2:]) < stylex_lib.MIN_SIZE:
        raise ValueError(f"images is too small: {images.shape[-2]}x{images.shape[-1]} pixels, "
                         f"need at least {stylex_lib.MIN_SIZE}x{stylex_lib.MIN_SIZE}")


def _check_taps(taps) -> tuple[str, ...]:
    return features_lib.check_taps(taps, features_lib.STYLEX_TAPS, "StyleX")


@functools.partial(jax.jit, static_argnums=1)
def _stats(model, taps, images):
    images = stylex_lib.resize_shorter(images, model.embed_size)
    maps = features_lib.StyleXFeatures(model.encoder())(images, taps)
    return statistics_vector(maps, taps)


def fit_head(stats, styles, *, dims: int = 64, shrinkage: float = 0.1):
    """The head ``(mean [D], matrix [D, k])`` from training statistics and style labels.

    Each dimension is standardised by its training mean and standard deviation
    (dimensions constant in training get a zero row), then Fisher LDA
    (:func:`~stylejax.metrics.style_projection.fit_lda`) keeps ``dims`` directions;
    both are folded into one affine map.

    Args:
      stats: ``[N, D]`` statistics vectors (:meth:`StyleStatistics.statistics`).
      styles: ``[N]`` style labels (>= 2 styles, >= 2 images each).
      dims, shrinkage: see :func:`fit_lda`.
    Returns:
      ``(mean [D], matrix [D, k])`` float32.
    """
    x = np.asarray(stats, np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"stats must be a finite [N, D] array (got shape {x.shape})")
    centre, scale = x.mean(0), x.std(0)
    keep = scale > 1e-6 * max(float(scale.max()), 1e-30)
    if not keep.any():
        raise ValueError("stats are constant over the training images")
    z = (x[:, keep] - centre[keep]) / scale[keep]
    lda_mean, lda_matrix = (np.asarray(v, np.float64) for v in
                            fit_lda(z, styles, dims=dims, shrinkage=shrinkage))
    mean = centre.copy()
    mean[keep] += scale[keep] * lda_mean
    matrix = np.zeros((x.shape[1], lda_matrix.shape[1]))
    matrix[keep] = lda_matrix / scale[keep, None]
    return mean.astype(np.float32), matrix.astype(np.float32)


@jax.tree_util.register_pytree_node_class
class StyleStatistics:
    """Style descriptor: a frozen StyleX encoder's channel statistics + a linear head.

    Args:
      model: the :class:`~stylejax.metrics.stylex.StyleX` model whose encoder is tapped
        (its embedding and projection are not used).
      taps: encoder taps, in order (see :data:`TAPS`).
      head: ``(mean [D], matrix [D, k])`` from :func:`fit_head`, or None to embed the
        raw statistics vector (``D``-d).
      info: provenance (a dict).
    Attributes:
      name ("stylex-stats"), metric ("cosine"), min_size, dim (``D``),
      embedding_dim (``k``, or ``D`` without a head).
    """

    name = "stylex-stats"
    metric = "cosine"
    min_size = stylex_lib.MIN_SIZE

    def __init__(self, model, *, taps=TAPS, head=None, info: dict | None = None):
        if not isinstance(model, stylex_lib.StyleX):
            raise ValueError(f"model must be a StyleX model (got {type(model).__name__})")
        self.model = model
        self.taps = _check_taps(taps)
        self.dim = statistics_dim(model, self.taps)
        self.head = stylex_lib.check_affine_map(head, self.dim, "head")
        self.info = dict(info or {})

    @property
    def embedding_dim(self) -> int:
        return self.dim if self.head is None else int(self.head[1].shape[1])

    def tree_flatten(self):
        return (self.model, self.head), (self.taps, self.dim,
                                         json.dumps(self.info, sort_keys=True, default=str))

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)  # no checks: leaves may be tracers or placeholders
        obj.model, obj.head = children
        obj.taps, obj.dim, obj.info = aux[0], aux[1], json.loads(aux[2])
        return obj

    def statistics(self, images):
        """``[N, D]`` statistics vectors (:func:`statistics_vector`) of ``[N, H, W]``
        images in [0, 1] (resized so the shorter side is ``model.embed_size``)."""
        _check_images(images)
        x = jnp.asarray(images, jnp.float32)
        single = x.ndim == 2
        s = _stats(self.model, self.taps, x[None] if single else x)
        return s[0] if single else s

    def embed(self, images):
        """Descriptors ``[N, embedding_dim]`` (``[embedding_dim]`` for one ``[H, W]``
        image) of images in [0, 1], H, W >= 32; differentiable in ``images``.

        Raises:
          ValueError: wrong rank, too small, non-finite or outside [0, 1].
        """
        s = self.statistics(images)
        if self.head is None:
            return s
        mean, matrix = self.head
        return (s - mean) @ matrix

    def similarity(self, a, b):
        """Cosine of the descriptors of ``a`` and ``b`` (as :meth:`StyleX.similarity`)."""
        from stylejax.models.simsiam import cosine_similarity
        return cosine_similarity(self.embed(a), self.embed(b))

    def distance(self, a, b):
        """``1 - similarity(a, b)``."""
        return 1.0 - self.similarity(a, b)

    def save(self, path: str):
        """Write the head to directory ``path`` (see the module docstring).

        Raises:
          ValueError: no head, or ``path`` is not a usable folder.
        """
        from safetensors.numpy import save_file
        if self.head is None:
            raise ValueError("this descriptor has no head to save")
        path = os.path.abspath(os.fspath(path))
        stylex_lib.check_output_dir(path)
        os.makedirs(path, exist_ok=True)
        mean, matrix = (np.ascontiguousarray(np.asarray(v, np.float32)) for v in self.head)
        mask = os.umask(0)
        os.umask(mask)
        meta = dict(format=FORMAT, taps=list(self.taps), dim=self.dim,
                    embedding_dim=self.embedding_dim, log_eps=LOG_EPS, info=self.info)
        for name in (HEAD_WEIGHTS, HEAD_META):  # the description last
            tmp = os.path.join(path, f".{name}.tmp{os.getpid()}")
            if name == HEAD_WEIGHTS:
                save_file({"mean": mean, "matrix": matrix}, tmp)
            else:
                with open(tmp, "w") as f:
                    json.dump(meta, f, indent=2, sort_keys=True)
            os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, os.path.join(path, name))

    def __repr__(self):
        return (f"StyleStatistics(taps={self.taps}, dim={self.dim}, "
                f"embedding_dim={self.embedding_dim}, info={self.info})")


def statistics_dim(model, taps=TAPS) -> int:
    """``D`` of ``model``'s statistics vector over ``taps`` (2 x the channels)."""
    widths = {"stem": 1, "pool": 1, "stage1": 1, "stage2": 2, "stage3": 4, "stage4": 8}
    return int(sum(2 * widths[t] * model.width for t in _check_taps(taps)))


def load(path: str, model) -> StyleStatistics:
    """A saved head (directory ``path``) on ``model``'s encoder.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: not a saved head, damaged files, or a head of another width/taps.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"style-statistics head directory not found: {path}")
    meta_path, weights_path = (os.path.join(path, n) for n in (HEAD_META, HEAD_WEIGHTS))
    for p in (meta_path, weights_path):
        if not os.path.exists(p):
            raise ValueError(f"{path} is not a style-statistics head: {os.path.basename(p)} "
                             "is missing")
    meta = export_files.read_json(meta_path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unsupported format (expected {FORMAT!r})")
    if meta.get("log_eps") != LOG_EPS:
        raise ValueError(f"{meta_path}: log_eps {meta.get('log_eps')!r} differs from "
                         f"this version's {LOG_EPS}")
    taps = meta.get("taps")
    if not isinstance(taps, list) or not all(isinstance(t, str) for t in taps):
        raise ValueError(f"{meta_path}: taps must be a list of tap names")
    weights = export_files.read_weights(weights_path)
    if set(weights) != {"mean", "matrix"}:
        raise ValueError(f"{weights_path}: expected tensors 'mean' and 'matrix' "
                         f"(got {sorted(weights)})")
    try:
        return StyleStatistics(model, taps=tuple(taps), head=(weights["mean"], weights["matrix"]),
                               info=meta.get("info") if isinstance(meta.get("info"), dict)
                               else None)
    except ValueError as err:
        raise ValueError(f"{path}: does not fit this StyleX model: {err}") from None


def load_pretrained() -> StyleStatistics:
    """The shipped head on the shipped StyleX encoder
    (``stylejax/assets/stylex_style_head`` on :func:`stylex.load_pretrained`)."""
    if not os.path.exists(os.path.join(_PRETRAINED, HEAD_META)):
        raise FileNotFoundError(f"the shipped style-statistics head is missing from "
                                f"{_PRETRAINED}; reinstall stylejax")
    return load(_PRETRAINED, stylex_lib.load_pretrained())
