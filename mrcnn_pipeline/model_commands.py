"""The ``export-model`` subcommand of ``mrcnn-pipeline`` (as in ``mrcnn_pipeline.cli``)."""

from __future__ import annotations

import argparse
import json

from mrcnn.export_registry import FORMATS, NAMES
from mrcnn.int8_check import Tolerances
from mrcnn.quantize import DEFAULT_FLOAT_PARTS, FLOAT_PARTS
from mrcnn_pipeline.arguments import backbone_argument, fraction, registry_argument
from tasks.failures import InvalidSetting
from tasks.models.int8 import DEFAULT_CALIBRATION_IMAGES, DEFAULT_CHECK_IMAGES

LIMITS = Tolerances()  # the documented defaults


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export-model``."""
    titles = ", ".join(fmt.title for fmt in FORMATS)
    parser = subparsers.add_parser(
        "export-model",
        help=f"export a model for serving ({titles}, INT8)",
        description=f"Export a model for serving ({titles}), or quantize it to an INT8 "
        "OpenVINO IR (--precision int8), which is written only when it passes its "
        "check against float32 on held-out images. The folder is itself a --model "
        "source for infer and evaluate.",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="REF",
        help="NAME@ALIAS, NAME@vN, a run folder, a checkpoint",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=NAMES,
        help="; ".join(
            f"{fmt.name}: {fmt.help}" + (f" [extra {fmt.extra}]" if fmt.extra else "")
            for fmt in FORMATS
        ),
    )
    parser.add_argument(
        "--output",
        metavar="URI",
        help="export folder (default for a registry "
        "version: <registry>/<name>/versions/<N>/exports/<format>, and "
        "exports/openvino-int8 for INT8)",
    )
    registry_argument(parser)
    backbone_argument(parser)
    int8 = parser.add_argument_group(
        "INT8 (--format openvino --precision int8)",
        "NNCF calibrates on your images, then the INT8 model is checked against float32 on "
        "held-out images; the export is refused when it differs by more than the limits.",
    )
    int8.add_argument(
        "--precision",
        choices=("float32", "int8"),
        default="float32",
        help="float32 (default) or int8 (OpenVINO only; needs --calibration)",
    )
    int8.add_argument(
        "--calibration",
        metavar="URI",
        help="a canonical dataset (its train "
        "split calibrates, its val split is held out with its ground truth) or an "
        "image folder (a fifth is held out by path hash), local or s3://",
    )
    int8.add_argument(
        "--calibration-images",
        type=_positive,
        default=DEFAULT_CALIBRATION_IMAGES,
        metavar="N",
        help=f"the most calibration images NNCF reads (default {DEFAULT_CALIBRATION_IMAGES})",
    )
    int8.add_argument(
        "--check",
        metavar="URI",
        help="held-out images instead: a dataset (its "
        "val split) or an image folder (float32's detections are the reference)",
    )
    int8.add_argument(
        "--check-images",
        type=_positive,
        default=DEFAULT_CHECK_IMAGES,
        metavar="N",
        help=f"the most held-out images compared (default {DEFAULT_CHECK_IMAGES})",
    )
    int8.add_argument(
        "--max-area-difference",
        type=float,
        default=LIMITS.area_difference_pp,
        metavar="PP",
        help="the largest mean |INT8 - float32| area ratio of any "
        f"class, in percentage points (default {LIMITS.area_difference_pp})",
    )
    int8.add_argument(
        "--max-ap50-drop",
        type=fraction,
        default=LIMITS.ap50_drop,
        metavar="X",
        help=f"the largest drop of mask AP50 (default {LIMITS.ap50_drop})",
    )
    int8.add_argument(
        "--min-matched-share",
        type=fraction,
        default=LIMITS.matched_share,
        metavar="X",
        help="the least share of float32's instances INT8 must "
        f"find (mask IoU >= 0.5; default {LIMITS.matched_share})",
    )
    int8.add_argument(
        "--keep-float",
        action="append",
        choices=tuple(FLOAT_PARTS),
        metavar="PART",
        help="a part kept in float32 (repeatable; default "
        f"{' '.join(DEFAULT_FLOAT_PARTS)}; one of {', '.join(FLOAT_PARTS)})",
    )
    int8.add_argument(
        "--write-failed",
        action="store_true",
        help="write the export even when its check fails (to inspect it; infer refuses to run it)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run_export_model)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run_export_model(args: argparse.Namespace) -> int:
    """Handler of ``export-model``: resolve, export (INT8: quantize and check), print where."""
    from tasks.models import resolve
    from tasks.models.exports import export_artifact

    if args.precision == "int8":
        return _export_int8(args)
    if args.calibration or args.check:
        raise InvalidSetting("--calibration and --check go with --precision int8")
    artifact = resolve(args.model, args.registry, backbones=args.backbones)
    uri = export_artifact(artifact, args.format, args.output)
    result = {"model": artifact.identity, "format": args.format, "export": uri}
    print(
        json.dumps(result, indent=2)
        if args.json
        else f"exported {artifact.identity} as {args.format} to {uri}"
    )
    return 0


def _export_int8(args: argparse.Namespace) -> int:
    from tasks.models import resolve
    from tasks.models.int8 import Int8Request, export_int8

    if args.format != "openvino":
        raise InvalidSetting(
            f"--precision int8 is an OpenVINO export: use --format openvino, not {args.format}"
        )
    if not args.calibration:
        raise InvalidSetting(
            "--precision int8 needs --calibration URI: a dataset or an image "
            "folder of your own images"
        )
    tolerances = Tolerances(args.max_area_difference, args.max_ap50_drop, args.min_matched_share)
    request = Int8Request(
        args.calibration,
        args.calibration_images,
        args.check,
        args.check_images,
        tolerances,
        tuple(args.keep_float or DEFAULT_FLOAT_PARTS),
        args.write_failed,
    )
    artifact = resolve(args.model, args.registry, backbones=args.backbones)
    exported = export_int8(artifact, request, args.output)
    result = {
        "model": artifact.identity,
        "format": "openvino",
        "precision": "int8",
        "export": exported.uri,
        "passed": exported.passed,
        "check": exported.report["summary"],
    }
    print(
        json.dumps(result, indent=2)
        if args.json
        else f"exported {artifact.identity} as INT8 OpenVINO IR to {exported.uri}\n"
        f"{exported.report['summary']}"
    )
    return 0
