"""stylejax: style in medical X-ray images, in JAX/Flax.

Short public modules (``stylejax.lap``, ``stylejax.phantom``, ``stylejax.io``,
``stylejax.blackbox``, ...) re-export the implementation that lives in the
sub-packages ``pipeline``, ``data``, ``models``, ``losses``, ``metrics``,
``methods`` and ``train``. Import them explicitly, e.g. ``from stylejax import lap``.
"""

__version__ = "0.1.0"
