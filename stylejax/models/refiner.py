"""The mr2NST refiner (mammography paper, Eq. 6): ``R(S_0, ..., S_{K-1}) = r(sum_k w_k S_k)``.

``S_k`` are the style-transferred images of the K scales (full image, 2x2 patches, 4x4
patches, each brought back to the original size), ``w_k`` are learned scale weights and
``r`` is a network of three 1x1 convolutions. The paper trains it as the generator of a
GAN against a ResNet-18 discriminator (Eq. 7; see :func:`stylejax.train.refiner.train_refiner`).

Design choices the paper leaves open:

* ``r(x) = x + c_3(a(c_2(a(c_1(x)))))`` with a leaky-ReLU ``a`` and the last convolution
  initialised to zero: the untrained refiner is exactly the weighted average (``w_k =
  1/K``), so a short or unstable GAN run starts from - and cannot stray far from - a
  sensible image. Being 1x1, ``r`` is a learned per-pixel tone curve: spatial detail comes
  only from the scales.
* The weights ``w_k`` are free (no softmax), so the GAN can also change the overall gain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stylejax import _checks


class Refiner(nnx.Module):
    """Learned scale blending followed by three 1x1 convolutions.

    Args:
      num_scales: K, the number of style-transferred scales blended (3 in the paper).
      hidden: channels of the two hidden 1x1 convolutions.
      negative_slope: slope of the leaky ReLU between the convolutions.
      rngs: ``nnx.Rngs`` for the initialisation.
    Attributes:
      scale_weights: ``nnx.Param`` ``[K]``, initialised to ``1 / K``.
    """

    def __init__(self, num_scales: int = 3, hidden: int = 16, *, negative_slope: float = 0.2,
                 rngs: nnx.Rngs):
        if num_scales < 1 or hidden < 1:
            raise ValueError(f"num_scales and hidden must be >= 1 (got {num_scales}, {hidden})")
        self.num_scales = int(num_scales)
        self.negative_slope = float(negative_slope)
        self.scale_weights = nnx.Param(jnp.full((num_scales,), 1.0 / num_scales, jnp.float32))
        self.conv1 = nnx.Conv(1, hidden, (1, 1), rngs=rngs)
        self.conv2 = nnx.Conv(hidden, hidden, (1, 1), rngs=rngs)
        self.conv3 = nnx.Conv(hidden, 1, (1, 1), kernel_init=nnx.initializers.zeros,
                              rngs=rngs)

    def blend(self, scales) -> jax.Array:
        """``sum_k w_k S_k``.

        Args:
          scales: ``[N, H, W, K]`` (or ``[H, W, K]``) images of the K scales.
        Returns:
          ``[N, H, W]`` (or ``[H, W]``) float32.
        """
        s = self._check(scales)
        return jnp.einsum("...k,k->...", s, self.scale_weights[...])

    def __call__(self, scales) -> jax.Array:
        """Refined image ``r(blend(scales))``, unclipped (clip to [0, 1] for display).

        Args:
          scales: ``[N, H, W, K]`` (or ``[H, W, K]``).
        Returns:
          ``[N, H, W]`` (or ``[H, W]``) float32.
        """
        x = self.blend(scales)[..., None]
        y = jax.nn.leaky_relu(self.conv1(x), self.negative_slope)
        y = jax.nn.leaky_relu(self.conv2(y), self.negative_slope)
        return (x + self.conv3(y))[..., 0]

    def _check(self, scales) -> jax.Array:
        _checks.check_rank(scales, "scales", min_rank=3, max_rank=4)
        if np.shape(scales)[-1] != self.num_scales:
            raise ValueError(f"scales has {np.shape(scales)[-1]} channels in its last axis, "
                             f"the refiner blends {self.num_scales} scales")
        if _checks.is_concrete(scales) and not np.all(np.isfinite(np.asarray(scales))):
            raise ValueError("scales contain non-finite values (NaN or inf)")
        return jnp.asarray(scales, jnp.float32)
