"""SimSiam (Chen & He, CVPR 2021) for learning X-ray style representations.

Layout as in the reference implementation (facebookresearch/simsiam), for a
ResNet-18 backbone with ``f = 8 * width`` pooled features (512 for ResNet-18):

* projector ``g``: Linear(f, f, no bias)-BN-ReLU, Linear(f, f, no bias)-BN-ReLU,
  Linear(f, dim)-BN(affine=False). The last linear has no bias because the
  following non-affine BatchNorm would cancel it (the reference freezes it).
* predictor ``h``: Linear(dim, pred_dim, no bias)-BN-ReLU, Linear(pred_dim, dim).
* loss: ``-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2`` with ``z = g(f(x))``,
  ``p = h(z)`` and ``sg`` the stop-gradient.

The StyleX embedding (paper, Eq. 1) is the projector output ``z`` (``dim = 2048``).
Images enter in [0, 1] and are mapped to [-1, 1] before the backbone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from stylejax.models.resnet import ResNet18

#: PyTorch's default Linear initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_linear_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _linear(din, dout, *, use_bias, dtype, rngs):
    return nnx.Linear(din, dout, use_bias=use_bias, kernel_init=_linear_init, dtype=dtype,
                      rngs=rngs)


def _bn(c, *, affine=True, dtype, rngs):
    return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, use_bias=affine, use_scale=affine,
                         dtype=dtype, rngs=rngs)


class Projector(nnx.Module):
    """Three-layer MLP projector, ``[N, f] -> [N, dim]`` (last BN without affine)."""

    def __init__(self, features: int, dim: int = 2048, *, dtype=None, rngs: nnx.Rngs):
        self.fc1 = _linear(features, features, use_bias=False, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(features, dtype=dtype, rngs=rngs)
        self.fc2 = _linear(features, features, use_bias=False, dtype=dtype, rngs=rngs)
        self.bn2 = _bn(features, dtype=dtype, rngs=rngs)
        self.fc3 = _linear(features, dim, use_bias=False, dtype=dtype, rngs=rngs)
        self.bn3 = _bn(dim, affine=False, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.fc1(x)))
        x = nnx.relu(self.bn2(self.fc2(x)))
        return self.bn3(self.fc3(x)).astype(jnp.float32)


class Predictor(nnx.Module):
    """Two-layer bottleneck MLP predictor, ``[N, dim] -> [N, dim]``."""

    def __init__(self, dim: int = 2048, pred_dim: int = 512, *, dtype=None, rngs: nnx.Rngs):
        self.fc1 = _linear(dim, pred_dim, use_bias=False, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(pred_dim, dtype=dtype, rngs=rngs)
        self.fc2 = _linear(pred_dim, dim, use_bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, z):
        return self.fc2(nnx.relu(self.bn1(self.fc1(z)))).astype(jnp.float32)


class StyleEncoder(nnx.Module):
    """The style encoder ``e``: ResNet-18 backbone followed by the projector.

    Args:
      width: backbone width (64 = ResNet-18).
      dim: embedding (projector output) dimension; 2048 in the paper.
      in_channels: image channels (1 for X-ray images).
      dtype: computation dtype (parameters stay float32).
      rngs: NNX random streams.
    """

    def __init__(self, *, width: int = 64, dim: int = 2048, in_channels: int = 1, dtype=None,
                 rngs: nnx.Rngs):
        self.backbone = ResNet18(None, in_channels, width=width, zero_init_residual=True,
                                 dtype=dtype, rngs=rngs)
        self.projector = Projector(self.backbone.num_features, dim, dtype=dtype, rngs=rngs)

    def __call__(self, images):
        """Style embedding ``z`` (projector output).

        Args:
          images: ``[N, H, W]`` (or ``[N, H, W, C]``) in [0, 1], H, W >= 32.
        Returns:
          ``[N, dim]`` float32.
        """
        x = 2.0 * jnp.asarray(images, jnp.float32) - 1.0
        return self.projector(self.backbone(x))


class SimSiam(nnx.Module):
    """Style encoder (backbone + projector) and predictor, trained as a pair.

    Args:
      width: backbone width (64 = ResNet-18).
      dim: embedding (projector output) dimension; 2048 in the paper.
      pred_dim: predictor bottleneck width; 512 in the reference.
      in_channels: image channels (1 for X-ray images).
      dtype: computation dtype (parameters stay float32).
      rngs: NNX random streams.
    """

    def __init__(self, *, width: int = 64, dim: int = 2048, pred_dim: int = 512,
                 in_channels: int = 1, dtype=None, rngs: nnx.Rngs):
        self.encoder = StyleEncoder(width=width, dim=dim, in_channels=in_channels, dtype=dtype,
                                    rngs=rngs)
        self.predictor = Predictor(dim, pred_dim, dtype=dtype, rngs=rngs)

    def __call__(self, view1, view2):
        """Both branches for a batch of positive pairs.

        BatchNorm statistics are taken per view, as in the reference, which
        runs the encoder once on each view.

        Args:
          view1, view2: ``[N, H, W]`` images in [0, 1], the two views of each pair.
        Returns:
          ``(p1, p2, z1, z2)``, each ``[N, dim]``.
        """
        z1 = self.encoder(view1)
        z2 = self.encoder(view2)
        return self.predictor(z1), self.predictor(z2), z1, z2


def cosine_similarity(a, b, eps: float = 1e-8):
    """Cosine similarity along the last axis, ``a . b / max(|a| |b|, eps)``.

    Args:
      a, b: ``[..., D]`` arrays (broadcastable).
    Returns:
      ``[...]`` values in [-1, 1].
    """
    dot = jnp.sum(a * b, axis=-1)
    norm = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return dot / jnp.maximum(norm, eps)


def simsiam_loss(p1, p2, z1, z2):
    """Symmetric negative cosine loss with stop-gradient on the targets.

    Args:
      p1, p2: ``[N, D]`` predictor outputs of view 1 and 2.
      z1, z2: ``[N, D]`` projector outputs of view 1 and 2 (targets; no gradient
        flows into them through this loss).
    Returns:
      scalar in [-1, 1]; -1 when every prediction is aligned with its target.
    """
    z1 = jax.lax.stop_gradient(z1)
    z2 = jax.lax.stop_gradient(z2)
    return -0.5 * (jnp.mean(cosine_similarity(p1, z2)) + jnp.mean(cosine_similarity(p2, z1)))


def collapse_std(z):
    """Mean per-channel std of L2-normalised embeddings (SimSiam's collapse monitor).

    About ``1 / sqrt(D)`` for well spread embeddings, 0 for a collapsed encoder.

    Args:
      z: ``[N, D]`` embeddings.
    Returns:
      scalar.
    """
    zn = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
    return jnp.mean(jnp.std(zn, axis=0))
