"""``stylejax nst``: style transfer with any method of :data:`stylejax.methods.registry.METHODS`.

The command is generated from the registry: each method's config dataclass fields become
flags (type, default and help from :func:`stylejax.methods.base.options`), grouped per
method; a field several methods share is one flag whose default is each method's own.
The method-specific flags are added the first time the ``nst`` parser is used, so other
commands (and ``stylejax --help``) do not import JAX.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

EXAMPLE = """examples:
  stylejax phantoms -n 2 -o phantoms/
  stylejax lap phantoms/cc_00000.tif --w 3 --l 5 --h 7 -o content.png
  stylejax lap phantoms/cc_00001.tif --w 7 --l 4 --h 8 -o style.png
  stylejax nst --method gatys --content content.png --style style.png -o out.png \\
      --weights vgg19.safetensors --steps 300 --json
  stylejax nst --method mr2nst --content content.png --style ref1.png ref2.png -o out.png \\
      --weights random --work-size 128 --steps 100 --refiner-steps 50

--weights takes a .safetensors file with torchvision/timm keys (features.{i}.weight),
a flaxmodels-style .h5 file, 'imagenet' (downloaded once into ~/.cache/stylejax, needs
internet) or 'random' (untrained VGG, for trying things out); with --extractor stylex a
StyleX model directory (default: the shipped model). Images are read as grayscale in
[0, 1] (--method adain: DICOM and float files in their own units, i.e. HU for CT, and
the result in HU in .dcm/.npy/.tif); the output extension picks the format (.png, .tif,
.npy, .dcm). Loss terms are normalised (see --no-normalize), so the default weights suit
every extractor."""

_UNITS = {"HU": "in Hounsfield units (values outside [0, 1])",
          "unit": "a [0, 1] display image"}
COMMON = ("method", "content", "style", "output", "extractor", "weights", "quiet", "json")


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _strings(text):
    items = _split(text)
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated names (got {text!r})")
    return tuple(items)


def _ints(text):
    try:
        items = tuple(int(v) for v in _split(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (got {text!r})"
                                         ) from None
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (got {text!r})")
    return items


def _pairs(text):
    out = []
    for item in _split(text):
        name, sep, value = item.partition("=")
        try:
            out.append((name.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER,... (got {text!r})")
    if not out:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER,... (got {text!r})")
    return tuple(out)


_PARSERS = {int: (int, "N"), float: (float, "X"), str: (str, None),
            tuple[str, ...]: (_strings, "A,B,..."), tuple[int, ...]: (_ints, "I,J,..."),
            tuple[tuple[str, float], ...]: (_pairs, "NAME=X,...")}


def _format_default(value) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v[0]}={v[1]}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def _flag_kwargs(spec, help_text: str, choices) -> dict:
    """argparse keyword arguments for one :class:`stylejax.methods.base.OptionSpec`."""
    base = spec.base_type
    if base is bool:
        return {"action": argparse.BooleanOptionalAction, "default": None, "help": help_text}
    if base not in _PARSERS:
        raise TypeError(f"config field {spec.name!r} has type {spec.type}, which the nst "
                        "command cannot parse; use int, float, str, bool, tuple[str, ...], "
                        "tuple[int, ...] or tuple[tuple[str, float], ...] (optionally | None)")
    convert, metavar = _PARSERS[base]
    kwargs = {"type": convert, "default": None, "help": help_text}
    if choices:
        kwargs["choices"] = choices
    elif metavar:
        kwargs["metavar"] = metavar
    return kwargs


def _shared_specs(methods) -> dict:
    """``{field: [(method name, OptionSpec), ...]}`` over all methods, checked for
    consistent flags and types."""
    from stylejax.methods.base import options

    by_field: dict = {}
    for name, method in methods.items():
        for spec in options(method.config_class):
            if spec.name in COMMON:
                raise ValueError(f"{name} config field {spec.name!r} clashes with the nst "
                                 "command's own --" + spec.name + "; rename the field")
            others = by_field.setdefault(spec.name, [])
            if others and (others[0][1].flag != spec.flag or others[0][1].type != spec.type):
                raise ValueError(f"config field {spec.name!r} of {name} and {others[0][0]} "
                                 "differ in flag or type; shared fields must agree")
            others.append((name, spec))
    return by_field


def add_method_arguments(parser: argparse.ArgumentParser, methods) -> None:
    """Add every method's generated flags (and input flags) to ``parser``."""
    by_field = _shared_specs(methods)
    shared = parser.add_argument_group(
        "options of several methods (default: each method's own)")
    groups = {name: parser.add_argument_group(f"{name} options") for name in methods}
    for field, entries in by_field.items():
        spec = entries[0][1]
        if len(entries) == 1:
            default = "" if spec.default is None else f" (default {_format_default(spec.default)})"
            parser_group, choices = groups[entries[0][0]], spec.choices
            help_text = spec.help + default
        else:
            values = [(m, _format_default(s.default)) for m, s in entries
                      if s.default is not None]
            defaults = values[0][1] if values and len(values) == len(entries) and \
                len({v for _, v in values}) == 1 else ", ".join(f"{m} {v}" for m, v in values)
            choices = spec.choices if all(s.choices == spec.choices for _, s in entries) \
                else None
            listed = "" if choices else "; ".join(
                f"{m}: {', '.join(map(str, s.choices))}" for m, s in entries if s.choices)
            help_text = spec.help if len({s.help for _, s in entries}) == 1 else \
                "; ".join(f"{m}: {s.help}" for m, s in entries)
            help_text += f" [{listed}]" if listed else ""
            help_text += f" (default: {defaults})" if defaults else ""
            parser_group = shared
        parser_group.add_argument(spec.flag, dest=field, **_flag_kwargs(spec, help_text,
                                                                         choices))
    for name, method in methods.items():
        for item in method.inputs:
            groups[name].add_argument("--" + item.name.replace("_", "-"), dest=item.name,
                                      default=None, metavar="PATH", help=item.help)


class _NSTParser(argparse.ArgumentParser):
    """The ``nst`` parser: adds the registry's flags the first time it is used."""

    _populated = False

    def _populate(self):
        if not self._populated:
            from stylejax.methods.registry import METHODS

            self._populated = True
            add_method_arguments(self, METHODS)
            for action in self._actions:
                if action.dest == "method":
                    action.choices = tuple(METHODS)
                    action.help = "style-transfer method: " + "; ".join(
                        f"{name}: {m.help}" for name, m in METHODS.items()) + \
                        f" (default {action.default})"

    def parse_known_args(self, args=None, namespace=None):
        self._populate()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._populate()
        return super().format_help()


def register(subparsers):
    from stylejax.methods.extractors import EXTRACTORS  # light: no JAX

    parser = subparsers.add_parser(
        "nst", help="neural style transfer (Gatys and variants, mr2NST)",
        description="Make an image with the content of --content and the style of --style "
                    "(one or several references), with VGG or StyleX features.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.__class__ = _NSTParser  # method flags are generated lazily, see _NSTParser
    parser.add_argument("--method", default="gatys",
                        help="style-transfer method (default gatys)")
    parser.add_argument("--content", required=True, help="content image")
    parser.add_argument("--style", required=True, nargs="+", help="style image(s)")
    parser.add_argument("-o", "--output", required=True, help="output image path")
    parser.add_argument("--extractor", choices=EXTRACTORS, default="vgg19",
                        help="feature extractor (default vgg19); taps: VGG conv/relu{b}_{l}, "
                             "pool{b}; StyleX stem, pool, stage1..stage4")
    parser.add_argument("--weights", default=None,
                        help="VGG weights: PATH (.safetensors/.h5), imagenet (default; "
                             "download, cached) or random; StyleX: a model directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run)


def _read_input(path, kind: str, flag: str):
    import numpy as np

    from stylejax.data import io

    values = io.read_image(path, normalize=kind == "image")
    if kind == "labels":
        if np.any(values != np.round(values)):
            raise ValueError(f"{flag} {path}: a label map must hold integer values")
        values = values.astype(np.int64)
    return values


def _read_native(path):
    """``(image, units)`` for a method that takes images in their own units (AdaIN for CT).

    DICOM (the modality LUT applied: Hounsfield units for CT) and float files (.npy,
    float TIFF) keep their values, as ``stylejax.data.io.read_image`` returns them to the
    Python API; integer PNG/TIFF/NPY are display images and are normalised to [0, 1].
    ``units`` is ``"HU"`` when a value lies outside [0, 1] (the method's ``auto``
    intensity rule), else ``"unit"``.
    """
    import numpy as np

    from stylejax.data import io

    info = io.read_image_info(path)
    image = io.read_image(path, normalize=info.format != "dicom" and
                          info.value_range is not None)
    units = "HU" if (float(np.min(image)) < 0.0 or float(np.max(image)) > 1.0) else "unit"
    return image, units


def _write_native(path, image, units: str):
    """Write a native-units result: HU as float32 in .npy, DICOM (rescale slope and
    intercept, read back in HU) and 32-bit float TIFF; a PNG gets the model window
    ``[-1000, 1000] HU -> [0, 1]`` (clipped). ``unit`` results are written as usual."""
    import numpy as np

    from stylejax.data import io

    if units != "HU":
        return io.write_image(path, image), ""
    fmt = io.FORMATS.get(Path(path).suffix.lower())
    if fmt == "png":
        lo, hi = -1000.0, 1000.0
        shown = np.clip((np.asarray(image, np.float64) - lo) / (hi - lo), 0.0, 1.0)
        return io.write_image(path, shown.astype(np.float32)), \
            " (PNG: window -1000..1000 HU -> 0..255)"
    if fmt == "tiff":
        return io.write_image(path, image, bits=32), " (HU, float32 TIFF)"
    if fmt == "dicom":
        return io.write_image(path, image, rescale_type="HU"), " (HU)"
    return io.write_image(path, image), " (HU)"


def config_from_args(method, args):
    """The method's config from parsed arguments; ValueError for flags of other methods."""
    from stylejax.methods.base import options
    from stylejax.methods.registry import METHODS

    own = {spec.name for spec in options(method.config_class)}
    own |= {item.name for item in method.inputs}
    for other in METHODS.values():
        for spec in options(other.config_class):
            if spec.name not in own and getattr(args, spec.name, None) is not None:
                raise ValueError(f"{spec.flag} is an option of --method {other.name}, not "
                                 f"{method.name}")
        for item in other.inputs:
            if item.name not in own and getattr(args, item.name, None) is not None:
                raise ValueError(f"--{item.name.replace('_', '-')} is an input of --method "
                                 f"{other.name}, not {method.name}")
    values = {spec.name: getattr(args, spec.name) for spec in options(method.config_class)
              if getattr(args, spec.name, None) is not None}
    return method.config_class(**values)


def _summary(method, config, result, args, path, used_extractor: bool) -> dict:
    from stylejax.methods.base import json_value

    summary = {"method": method.name, "variant": getattr(config, "variant", None),
               "steps": int(result.steps), "seconds": round(float(result.seconds), 3),
               "loss_initial": float(result.loss_initial),
               "loss_final": float(result.loss_final), "output": str(path),
               "extractor": args.extractor if used_extractor else None}
    for key in method.json_extra:
        summary[key] = json_value(result.extra.get(key))
    return summary


def run(args) -> int:
    import numpy as np

    from stylejax.data import io
    from stylejax.methods.extractors import build_extractor
    from stylejax.methods.registry import get_method

    method = get_method(args.method)
    config = config_from_args(method, args)
    inputs = {item.name: _read_input(getattr(args, item.name), item.kind,
                                     "--" + item.name.replace("_", "-"))
              for item in method.inputs if getattr(args, item.name, None) is not None}
    native = bool(getattr(method, "native_units", False))
    units = None
    if native:  # the method takes HU (CT) like its Python API; see _read_native
        content, units = _read_native(args.content)
        styles = []
        for path in args.style:
            style, style_units = _read_native(path)
            if style_units != units:
                raise ValueError(f"--content {args.content} is {_UNITS[units]} but --style "
                                 f"{path} is {_UNITS[style_units]}; give both in the same "
                                 "units (both CT DICOM / HU .npy, or both display images)")
            styles.append(style)
    else:
        content = io.read_image(args.content, normalize=True)
        styles = [io.read_image(path, normalize=True) for path in args.style]
    uses = method.needs_extractor(config)
    extractor = None
    if uses:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            extractor = build_extractor(args.extractor, args.weights)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    variant = getattr(config, "variant", None)
    print(f"nst: {method.name}{'/' + variant if variant else ''}, content "
          f"{content.shape[0]}x{content.shape[1]}, {len(styles)} style image(s), "
          f"{args.extractor if uses else 'no extractor'}", file=sys.stderr)
    result = method.run(content, styles, extractor=extractor, config=config,
                        progress=not args.quiet, **inputs)
    if native:
        path, note = _write_native(args.output, np.asarray(result.image), units)
    else:
        path, note = io.write_image(args.output, np.asarray(result.image)), ""
    print(f"wrote {path}{note}: loss {result.loss_initial:.4g} -> {result.loss_final:.4g} in "
          f"{result.seconds:.1f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(_summary(method, config, result, args, path, uses)))
    return 0

