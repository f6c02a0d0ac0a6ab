"""``stylejax nst --method mr2nst``: multi-reference, multi-resolution NST (mammography paper).

Two entry points:

* :func:`run_method` - ``(args, extractor, content, styles) -> result`` for the ``nst``
  command's method table (``stylejax.commands.nst.METHODS``), which reads the images,
  builds the extractor, writes the output and prints ``--json``;
* :func:`run_mr2nst` - the whole command on its own (same ``--json`` object), for a
  parser built with :func:`add_mr2nst_arguments` alone.

:func:`add_mr2nst_arguments` adds the mr2NST options and, only where the parser lacks
them, the options it shares with ``stylejax nst`` (``--content``, ``--lr``, ...), so it
works on the ``nst`` parser after the Gatys options and on a fresh parser.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = ("mr2NST (mammography paper): n references (max-Gram + histogram specification), "
        "3 scales of overlapping patches, GAN-trained 1x1-conv refiner; variant ehm = "
        "exact histogram matching baseline")
VARIANTS = ("full", "no-refiner", "ehm")  # = stylejax.methods.mr2nst.VARIANTS (kept light)

EXAMPLE = """example:
  stylejax nst --method mr2nst --content content.png --style ref1.png ref2.png ref3.png \\
      -o out.png --weights vgg19.safetensors --work-size 512 --steps 400 --json
  stylejax nst --method mr2nst --variant ehm --content content.png --style ref*.png \\
      -o ehm.png --weights random"""


def _levels(text: str) -> tuple[int, ...]:
    """``"0,1,2" -> (0, 1, 2)``, checked when the command line is parsed."""
    try:
        levels = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers (got {text!r})"
                                         ) from None
    if not levels or min(levels) < 0 or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"must be distinct non-negative integers (got {text!r})")
    return levels


def _add_once(parser, *flags, **kwargs):
    """Add an option unless one of its flags already exists on ``parser``."""
    if any(flag in parser._option_string_actions for flag in flags):
        return
    parser.add_argument(*flags, **kwargs)


def add_mr2nst_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mr2NST options (and the shared ``nst`` options the parser lacks)."""
    _add_once(parser, "--content", required=True, help="content image")
    _add_once(parser, "--style", required=True, nargs="+",
              help="reference style image(s) (mr2NST: n >= 1)")
    _add_once(parser, "-o", "--output", required=True, help="output image path")
    _add_once(parser, "--variant", default=None,
              help="mr2nst: full (default), no-refiner, ehm")
    _add_once(parser, "--extractor", choices=("vgg19", "vgg16", "stylex"), default="vgg19",
              help="feature extractor (default vgg19)")
    _add_once(parser, "--weights", default=None,
              help="VGG weights: PATH, imagenet (default) or random; StyleX: a directory")
    _add_once(parser, "--steps", type=int, default=400,
              help="NST iterations per patch (paper 400)")
    _add_once(parser, "--content-taps", help="comma-separated content layers")
    _add_once(parser, "--style-taps", help="comma-separated style layers")
    _add_once(parser, "--remat", action="store_true", help="rematerialise VGG blocks")
    _add_once(parser, "--quiet", action="store_true", help="no progress bar")
    _add_once(parser, "--json", action="store_true", help="print a JSON summary on stdout")
    _add_once(parser, "--optimizer", choices=("adam", "lbfgs"), default="adam",
              help="optimiser (default adam, as the paper)")
    _add_once(parser, "--lr", type=float, default=5e-3, help="Adam learning rate (5e-3)")
    _add_once(parser, "--content-weight", type=float, default=None,
              help="content weight (default: as for gatys)")
    _add_once(parser, "--style-weight", type=float, default=None,
              help="style weight per layer (default: as for gatys)")
    group = parser.add_argument_group("mr2nst options")
    group.add_argument("--work-size", type=int, default=512,
                       help="longer side of the working patches (paper 512)")
    group.add_argument("--levels", type=_levels, default=(0, 1, 2),
                       help="scales: level k cuts 2^k x 2^k patches (default 0,1,2)")
    group.add_argument("--overlap", type=float, default=0.125,
                       help="patch enlargement for overlap blending (default 0.125)")
    group.add_argument("--patch-batch", type=int, default=None,
                       help="most patches optimised at once (default: all)")
    group.add_argument("--no-histogram", action="store_true",
                       help="plain max of the reference Grams (no histogram specification)")
    group.add_argument("--refiner-steps", type=int, default=200,
                       help="refiner GAN iterations (default 200; 0 = untrained refiner)")
    group.add_argument("--disc-width", type=int, default=64,
                       help="ResNet-18 discriminator width (64 = ResNet-18)")
    group.add_argument("--gan-crop", type=int, default=None,
                       help="GAN crop side (default: the work size, >= 32, <= smallest image)")
    group.add_argument("--gan-batch", type=int, default=4, help="GAN crops per step (4)")
    group.add_argument("--seed", type=int, default=0, help="random seed (GAN)")


def _taps(text):
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


def config_from_args(args):
    """:class:`stylejax.methods.mr2nst.Mr2NSTConfig` from parsed arguments."""
    from stylejax.methods import mr2nst, nst

    levels = args.levels if isinstance(args.levels, tuple) else _levels(args.levels)
    cw = nst.THESIS_CONTENT_WEIGHT if args.content_weight is None else args.content_weight
    sw = nst.THESIS_STYLE_WEIGHT if args.style_weight is None else args.style_weight
    return mr2nst.Mr2NSTConfig(
        work_size=args.work_size, levels=levels, overlap=args.overlap, steps=args.steps,
        optimizer=args.optimizer, learning_rate=args.lr, remat=args.remat,
        content_weight=cw, style_weight=sw, content_taps=_taps(args.content_taps),
        style_taps=_taps(args.style_taps), histogram=not args.no_histogram,
        patch_batch=args.patch_batch, refiner_steps=args.refiner_steps,
        disc_width=args.disc_width, gan_crop=args.gan_crop, gan_batch=args.gan_batch,
        seed=args.seed)


def run_method(args, extractor, content, styles):
    """The ``nst`` command's method hook: mr2NST of ``content`` toward ``styles``.

    Args:
      args: parsed arguments (see :func:`add_mr2nst_arguments`).
      extractor: feature extractor (unused by ``--variant ehm``).
      content: ``[H, W]`` in [0, 1]; styles: list of ``[h, w]`` references.
    Returns:
      :class:`stylejax.methods.mr2nst.Mr2NSTResult` (``image``, ``steps``, ``seconds``,
      ``loss_initial``, ``loss_final``, ...).
    """
    from stylejax.methods import mr2nst

    variant = args.variant or VARIANTS[0]
    return mr2nst.mr2nst(content, styles, extractor=extractor, config=config_from_args(args),
                         variant=variant, progress=not args.quiet)


def run_mr2nst(args) -> int:
    """The whole command: read images, build the extractor, run, write, report.

    Returns:
      0; prints a JSON object (``method, variant, steps, seconds, loss_initial,
      loss_final, output, extractor, scale_weights``) on stdout with ``--json``.
    """
    from stylejax import io

    args.variant = args.variant or VARIANTS[0]
    if args.variant not in VARIANTS:
        raise ValueError(f"--method mr2nst has no variant {args.variant!r}; choose one of "
                         f"{', '.join(VARIANTS)}")
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0 (got {args.steps})")
    content = io.read_image(args.content, normalize=True)
    styles = [io.read_image(path, normalize=True) for path in args.style]
    extractor = None
    if args.variant != "ehm":
        from stylejax.commands.nst import build_extractor

        extractor = build_extractor(args.extractor, args.weights)
    print(f"nst: mr2nst/{args.variant}, content {content.shape[0]}x{content.shape[1]}, "
          f"{len(styles)} reference(s), {args.steps} steps", file=sys.stderr)
    result = run_method(args, extractor, content, styles)
    path = io.write_image(args.output, result.image)
    print(f"wrote {path}: loss {result.loss_initial:.4g} -> {result.loss_final:.4g} in "
          f"{result.seconds:.1f} s", file=sys.stderr)
    if args.json:
        weights = None if result.scale_weights is None else \
            [round(float(w), 6) for w in result.scale_weights]
        print(json.dumps({"method": "mr2nst", "variant": args.variant,
                          "steps": int(result.steps), "seconds": round(result.seconds, 3),
                          "loss_initial": float(result.loss_initial),
                          "loss_final": float(result.loss_final), "output": str(path),
                          "extractor": None if extractor is None else args.extractor,
                          "scale_weights": weights}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone ``mr2nst`` parser (the ``nst`` command's options plus mr2NST's)."""
    parser = argparse.ArgumentParser(
        prog="stylejax nst --method mr2nst", description=HELP, epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mr2nst_arguments(parser)
    parser.set_defaults(func=run_mr2nst)
    return parser
