"""Convolutional LSTM (Shi et al. 2015) and a bidirectional ConvLSTM over time, Flax NNX, NHWC.

The cell follows ``flax.linen.ConvLSTMCell``: with input ``x_t`` and carry ``(c, h)``::

    z = conv_ih(x_t) + conv_hh(h)          (both with bias, 'SAME' zero padding)
    i, g, f, o = split(z, 4, channels)
    c' = sigmoid(f + 1) c + sigmoid(i) tanh(g)
    h' = sigmoid(o) tanh(c')

(the +1 on the forget gate is linen's initial bias, Jozefowicz et al. 2015).

:class:`BiConvLSTM` runs one cell forward and another backward over the time axis of
``[B, T, h, w, C]`` content codes and merges the two hidden sequences with a 1x1
convolution, added to the input (``residual=True``) so that the temporal module refines,
rather than replaces, each frame's code. The input-to-hidden convolution of all T steps
is one batched convolution outside the recurrence; only ``conv_hh`` runs inside the
``jax.lax.scan``. The scan is unrolled by default (T is small, and XLA's CPU backend runs
convolutions inside loop bodies slowly, jax-ml/jax#12868).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ConvLSTMCell", "BiConvLSTM"]


def _conv(x, kernel, bias):
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(x.dtype)


class ConvLSTMCell(nnx.Module):
    """One ConvLSTM step (linen ``ConvLSTMCell`` semantics, gates ordered i, g, f, o).

    Args:
      in_features: channels of the input ``x_t``.
      features: channels of the hidden state and the cell state.
      kernel_size: odd int or pair, for both convolutions.
      rngs: ``nnx.Rngs``.
    Attributes:
      ih, hh: ``nnx.Conv`` input-to-hidden and hidden-to-hidden, ``4 * features`` outputs.
    """

    def __init__(self, in_features: int, features: int, kernel_size=3, *, rngs: nnx.Rngs):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(ks) != 2 or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"kernel_size must be odd (got {kernel_size!r})")
        if in_features < 1 or features < 1:
            raise ValueError(f"in_features and features must be >= 1 "
                             f"(got {in_features}, {features})")
        self.in_features, self.features = int(in_features), int(features)
        self.ih = nnx.Conv(in_features, 4 * features, ks, padding="SAME", rngs=rngs)
        self.hh = nnx.Conv(features, 4 * features, ks, padding="SAME", rngs=rngs)

    def initialize_carry(self, input_shape, dtype=jnp.float32):
        """Zero ``(c, h)`` for inputs of shape ``[B, h, w, in_features]``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)

    @staticmethod
    def gates(z: jax.Array, carry):
        """Apply the LSTM gate equations to pre-activations ``z`` ``[..., 4 F]``."""
        c, _ = carry
        i, g, f, o = jnp.split(z, 4, axis=-1)
        new_c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    def __call__(self, carry, x: jax.Array):
        """``((c, h), x_t) -> ((c', h'), h')``; ``x_t`` ``[B, h, w, in_features]``."""
        z = self.ih(x) + self.hh(carry[1])
        return self.gates(z, carry)


class BiConvLSTM(nnx.Module):
    """Bidirectional ConvLSTM over the time axis, merged by a 1x1 convolution.

    Args:
      features: channels ``C`` of the input codes (and of the output).
      hidden: channels of each direction's hidden state (default ``C``).
      kernel_size: of both cells' convolutions.
      residual: output ``x + merge([h_fwd, h_bwd])`` (True) or ``merge(...)`` only.
      unroll: passed to ``jax.lax.scan`` (True: fully unrolled).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, features: int, hidden: int | None = None, kernel_size=3, *,
                 residual: bool = True, unroll: bool | int = True, rngs: nnx.Rngs):
        hidden = int(features if hidden is None else hidden)
        self.features, self.hidden = int(features), hidden
        self.residual, self.unroll = bool(residual), unroll
        self.forward_cell = ConvLSTMCell(features, hidden, kernel_size, rngs=rngs)
        self.backward_cell = ConvLSTMCell(features, hidden, kernel_size, rngs=rngs)
        self.merge = nnx.Conv(2 * hidden, features, (1, 1), rngs=rngs)

    def _run(self, cell: ConvLSTMCell, x: jax.Array, reverse: bool) -> jax.Array:
        b, t, h, w, c = x.shape
        pre = cell.ih(x.reshape(b * t, h, w, c)).reshape(b, t, h, w, -1)
        kernel, bias = cell.hh.kernel[...], cell.hh.bias[...]

        def step(carry, z_t):
            return ConvLSTMCell.gates(z_t + _conv(carry[1], kernel, bias), carry)

        carry = cell.initialize_carry((b, h, w, c), x.dtype)
        _, hs = jax.lax.scan(step, carry, jnp.swapaxes(pre, 0, 1), reverse=reverse,
                             unroll=self.unroll)
        return jnp.swapaxes(hs, 0, 1)                                       # [B, T, h, w, F]

    def directions(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Hidden sequences ``(h_fwd, h_bwd)``, each ``[B, T, h, w, hidden]``, in time order.

        ``h_fwd[:, t]`` has seen frames ``0..t``; ``h_bwd[:, t]`` frames ``t..T-1``.
        """
        if x.ndim != 5 or x.shape[-1] != self.features:
            raise ValueError(f"x must be [B, T, h, w, {self.features}] (got {tuple(x.shape)})")
        return self._run(self.forward_cell, x, False), self._run(self.backward_cell, x, True)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, T, h, w, C]`` -> ``[B, T, h, w, C]``."""
        fwd, bwd = self.directions(x)
        b, t, h, w, _ = x.shape
        merged = self.merge(jnp.concatenate([fwd, bwd], axis=-1).reshape(b * t, h, w, -1))
        merged = merged.reshape(x.shape)
        return x + merged if self.residual else merged
