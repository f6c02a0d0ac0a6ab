"""``stylejax nst``: optimisation-based neural style transfer.

Methods plug in through :data:`METHODS`: a :class:`Method` names its variants, may add
its own options, and turns ``(args, extractor, content, styles)`` into a result with
``image``, ``steps``, ``seconds``, ``loss_initial`` and ``loss_final``. Extractors are
built by :func:`build_extractor` and shared by all methods.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Callable

EXAMPLE = """example:
  stylejax phantoms -n 2 -o phantoms/
  stylejax lap phantoms/cc_00000.tif --w 3 --l 5 --h 7 -o content.png
  stylejax lap phantoms/cc_00001.tif --w 7 --l 4 --h 8 -o style.png
  stylejax nst --method gatys --content content.png --style style.png -o out.png \\
      --weights vgg19.safetensors --steps 300 --json

--weights takes a .safetensors file with torchvision/timm keys (features.{i}.weight),
a flaxmodels-style .h5 file, 'imagenet' (downloaded once into ~/.cache/stylejax, needs
internet) or 'random' (untrained VGG, for trying things out). Images are read as
grayscale in [0, 1]; the output extension picks the format (.png, .tif, .npy, .dcm)."""


@dataclasses.dataclass(frozen=True)
class Method:
    """A style-transfer method offered by ``stylejax nst``.

    Attributes:
      help: one line for ``--help``.
      variants: accepted ``--variant`` values (first = default).
      run: ``run(args, extractor, content [H, W], styles list of [h, w]) -> result`` with
        attributes ``image``, ``steps``, ``seconds``, ``loss_initial``, ``loss_final``.
      add_arguments: optional ``add_arguments(parser)`` for method-specific options.
      default_steps: ``--steps`` when not given.
      uses_extractor: ``uses_extractor(variant)``; False skips building one (run gets None).
      extra_json: optional ``extra_json(result) -> dict`` merged into the ``--json`` object.
    """

    help: str
    variants: tuple[str, ...]
    run: Callable
    add_arguments: Callable | None = None
    default_steps: int = 300
    uses_extractor: Callable = lambda variant: True
    extra_json: Callable | None = None


def _read_labels(path):
    import numpy as np

    from stylejax import io

    values = io.read_image(path)
    if np.any(values != np.round(values)):
        raise ValueError(f"{path}: a label map must hold integer values")
    return values.astype(np.int64)


def _run_gatys(args, extractor, content, styles):
    from stylejax.methods import nst

    config = nst.NSTConfig(
        steps=args.steps, optimizer=args.optimizer, learning_rate=args.lr,
        content_weight=args.content_weight, style_weight=args.style_weight,
        content_taps=_taps(args.content_taps), style_taps=_taps(args.style_taps),
        remat=args.remat)
    content_labels = _read_labels(args.content_labels) if args.content_labels else None
    style_labels = _read_labels(args.style_labels) if args.style_labels else None
    if args.variant in ("augmented", "local") and content_labels is None:
        raise ValueError(f"--variant {args.variant} needs --content-labels (a label map "
                         "of the content image, e.g. from 'stylejax phantoms')")
    return nst.gatys(content, styles if args.variant == "average" else styles[:1],
                     extractor=extractor, variant=args.variant, config=config,
                     content_labels=content_labels, style_labels=style_labels,
                     average=args.average, progress=not args.quiet)


def _add_gatys_arguments(parser):
    from_nst = "thesis Table 4.1, rescaled to [0,1]/ImageNet-normalised inputs"
    group = parser.add_argument_group("gatys options")
    group.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam",
                       help="optimiser (default adam)")
    group.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (5e-3)")
    group.add_argument("--content-weight", type=float, default=None,
                       help=f"alpha of Eq. 2.1 (default 1e5, {from_nst})")
    group.add_argument("--style-weight", type=float, default=None,
                       help=f"beta per style layer (default 33.2, {from_nst})")
    group.add_argument("--content-labels", help="label map of the content image "
                       "(augmented, local)")
    group.add_argument("--style-labels", help="label map of the style image (augmented: "
                       "Eq. 2.5; without it the content masks are used, Eq. 3.1)")
    group.add_argument("--average", choices=("gram", "features"), default="gram",
                       help="average variant: mean of Grams or Gram of mean features")


METHODS: dict[str, Method] = {
    "gatys": Method(help="Gatys NST (thesis: basic, augmented, local, average style)",
                    variants=("basic", "augmented", "local", "average"), run=_run_gatys,
                    add_arguments=_add_gatys_arguments),
}


def _register_mr2nst():
    try:
        from stylejax.commands import nst_mr2nst
    except ModuleNotFoundError as err:
        if err.name == "stylejax.commands.nst_mr2nst":
            return  # not part of this build
        raise

    def scale_weights(result):
        weights = getattr(result, "scale_weights", None)
        return {"scale_weights": None if weights is None else
                [round(float(w), 6) for w in weights]}

    METHODS["mr2nst"] = Method(help=nst_mr2nst.HELP, variants=nst_mr2nst.VARIANTS,
                               run=nst_mr2nst.run_method,
                               add_arguments=nst_mr2nst.add_mr2nst_arguments,
                               default_steps=400, uses_extractor=lambda v: v != "ehm",
                               extra_json=scale_weights)


_register_mr2nst()


def _taps(text):
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


def build_extractor(name: str, weights: str | None, *, seed: int = 0):
    """Feature extractor by name: ``vgg19``, ``vgg16`` or ``stylex``.

    Args:
      name: extractor name.
      weights: VGG: path, ``"imagenet"`` or ``"random"``; StyleX: a model directory or
        None for the shipped model.
      seed: initialisation seed of random weights.
    Returns:
      callable ``(images, taps=...) -> {tap: [N, h, w, C]}``.
    """
    import warnings

    from stylejax.cli import StylejaxError

    if name in ("vgg19", "vgg16"):
        from stylejax.models import vgg

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            net = getattr(vgg, name)(weights or "imagenet", seed=seed)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        return net
    if name == "stylex":
        import importlib

        try:
            stylex = importlib.import_module("stylejax.stylex")
        except ModuleNotFoundError as err:
            if err.name in ("stylejax.stylex", "stylejax.metrics.stylex"):
                raise StylejaxError("StyleX encoder not available yet in this build of "
                                    "stylejax; use --extractor vgg19 or vgg16") from None
            raise
        model = stylex.load(weights) if weights not in (None, "imagenet") else \
            stylex.load_pretrained()
        return _stylex_features(model)
    raise ValueError(f"unknown extractor {name!r}; choose vgg19, vgg16 or stylex")


def _stylex_features(model):
    """Feature maps of the StyleX ResNet-18 encoder: taps ``stem``, ``pool``, ``stage1..4``.

    Built from the model's pytree parts (state, graph definition); the default style
    layers are stem..stage3 and the content layer stage3 (1/16 resolution, as VGG's
    relu5_2). Inputs are grayscale only, sides a multiple of 32 for the augmented
    variant (mask halving floors, strided convolutions round up).
    """
    from flax import nnx

    from stylejax.cli import StylejaxError

    try:
        children, aux = model.tree_flatten()
        backbone = nnx.merge(aux[0], children[0]).backbone
        blocks = list(backbone.blocks)
    except (AttributeError, TypeError, IndexError) as err:
        raise StylejaxError(f"this StyleX model exposes no ResNet feature maps ({err})") from None
    return _stylex_taps_class()(backbone, len(blocks))


def _stylex_taps_class():
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from stylejax.models import resnet

    class StyleXFeatures(nnx.Module):
        style_taps = ("stem", "stage1", "stage2", "stage3")
        content_taps = ("stage3",)

        def __init__(self, backbone, n_blocks: int):
            self.backbone = backbone
            per_stage = n_blocks // 4
            self.stage_ends = tuple((i + 1) * per_stage - 1 for i in range(4))
            plan = [("conv", "_stem_conv"), ("pool", "_stem_stride"), ("relu", "stem"),
                    ("conv", "_maxpool_window"), ("pool", "pool")]
            for i in range(n_blocks):
                if i > 0 and i % per_stage == 0:
                    plan.append(("pool", f"_block{i}_stride"))
                plan += [("conv", f"_block{i}_a"), ("conv", f"_block{i}_b")]
                if i in self.stage_ends:
                    plan.append(("relu", f"stage{self.stage_ends.index(i) + 1}"))
            self.plan = tuple(plan)

        def __call__(self, images, taps=("stem", "stage1", "stage2", "stage3"), *, remat=None):
            if remat:
                raise ValueError("the StyleX extractor does not support remat")
            valid = ("stem", "pool", "stage1", "stage2", "stage3", "stage4")
            bad = [t for t in taps if t not in valid]
            if bad:
                raise ValueError(f"unknown StyleX tap(s) {bad}; valid taps: {', '.join(valid)}")
            x = jnp.asarray(images, jnp.float32)
            if x.ndim == 4 and x.shape[-1] == 1:
                x = x[..., 0]
            if x.ndim != 3:
                raise ValueError("the StyleX encoder takes grayscale images [N, H, W] (got "
                                 f"shape {tuple(np.shape(images))})")
            b = self.backbone
            x = nnx.relu(b.stem_bn(b.stem_conv((2.0 * x - 1.0)[..., None])))
            out = {"stem": x}
            x = resnet.max_pool_3x3_s2(x)
            out["pool"] = x
            for i, block in enumerate(b.blocks):
                x = block(x)
                if i in self.stage_ends:
                    out[f"stage{self.stage_ends.index(i) + 1}"] = x
                if all(t in out for t in taps):
                    break
            return {t: out[t].astype(jnp.float32) for t in taps}

    return StyleXFeatures


def register(subparsers):
    parser = subparsers.add_parser(
        "nst", help="neural style transfer (Gatys and variants, mr2NST)",
        description="Optimise an image to keep the content of --content and take the "
                    "style of --style, with VGG (or StyleX) features.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=sorted(METHODS), default="gatys",
                        help="style-transfer method (default gatys)")
    variants = "; ".join(f"{name}: {m.variants[0]} (default), {', '.join(m.variants[1:])}"
                         for name, m in METHODS.items())
    parser.add_argument("--variant", default=None, help=f"method variant; {variants}")
    parser.add_argument("--content", required=True, help="content image")
    parser.add_argument("--style", required=True, nargs="+", help="style image(s)")
    parser.add_argument("-o", "--output", required=True, help="output image path")
    parser.add_argument("--extractor", choices=("vgg19", "vgg16", "stylex"), default="vgg19",
                        help="feature extractor (default vgg19)")
    parser.add_argument("--weights", default=None,
                        help="VGG weights: PATH (.safetensors/.h5), imagenet (default; "
                             "download, cached) or random; StyleX: a model directory")
    parser.add_argument("--steps", type=int, default=None,
                        help="iterations (default: gatys 300, mr2nst 400 per patch)")
    parser.add_argument("--content-taps", help="comma-separated content layers "
                        "(default: the extractor's, relu5_2 for VGG)")
    parser.add_argument("--style-taps", help="comma-separated style layers (default "
                        "relu1_1,relu2_1,relu3_1,relu5_1 for VGG)")
    parser.add_argument("--remat", action="store_true",
                        help="recompute VGG blocks in the backward pass (jax.checkpoint); "
                             "on XLA CPU it did not lower the peak for VGG19 NST, see "
                             "experiments/benchmarks/nst_memory.py")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    for method in METHODS.values():
        if method.add_arguments is not None:
            method.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from stylejax import io
    from stylejax.methods import nst

    method = METHODS[args.method]
    args.variant = args.variant or method.variants[0]
    if args.variant not in method.variants:
        raise ValueError(f"--method {args.method} has no variant {args.variant!r}; choose "
                         f"one of {', '.join(method.variants)}")
    if args.steps is None:
        args.steps = method.default_steps
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0 (got {args.steps})")
    for attr, default in (("content_weight", nst.THESIS_CONTENT_WEIGHT),
                          ("style_weight", nst.THESIS_STYLE_WEIGHT)):
        if getattr(args, attr, None) is None:
            setattr(args, attr, default)
    content = io.read_image(args.content, normalize=True)
    styles = [io.read_image(path, normalize=True) for path in args.style]
    uses = method.uses_extractor(args.variant)
    extractor = build_extractor(args.extractor, args.weights) if uses else None
    print(f"nst: {args.method}/{args.variant}, content {content.shape[0]}x{content.shape[1]}, "
          f"{len(styles)} style image(s), {args.extractor if uses else 'no extractor'}, "
          f"{args.steps} steps", file=sys.stderr)
    result = method.run(args, extractor, content, styles)
    path = io.write_image(args.output, np.asarray(result.image))
    print(f"wrote {path}: loss {result.loss_initial:.4g} -> {result.loss_final:.4g} in "
          f"{result.seconds:.1f} s", file=sys.stderr)
    if args.json:
        summary = {"method": args.method, "variant": args.variant,
                   "steps": int(result.steps), "seconds": round(float(result.seconds), 3),
                   "loss_initial": float(result.loss_initial),
                   "loss_final": float(result.loss_final), "output": str(path),
                   "extractor": args.extractor if uses else None}
        if method.extra_json is not None:
            summary.update(method.extra_json(result))
        print(json.dumps(summary))
    return 0
