"""The ``export-model`` subcommand of ``mrcnn-pipeline`` (same pattern as ``mrcnn_pipeline.cli``)."""

from __future__ import annotations

import argparse
import json

from mrcnn_pipeline.arguments import backbone_argument, registry_argument


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export-model``."""
    parser = subparsers.add_parser(
        "export-model", help="export a model for serving (SavedModel, ONNX, OpenVINO)",
        description="Export a model as a TensorFlow SavedModel (saved_model_cli, TF Serving), "
                    "ONNX (ONNX Runtime) or OpenVINO IR. The folder is itself a --model source "
                    "for infer and evaluate.")
    parser.add_argument("--model", required=True, metavar="REF",
                        help="NAME@ALIAS, NAME@vN, a run folder, a checkpoint")
    parser.add_argument("--format", required=True, choices=("saved_model", "onnx", "openvino"))
    parser.add_argument("--output", metavar="URI", help="export folder (default for a registry "
                        "version: <registry>/<name>/versions/<N>/exports/<format>)")
    registry_argument(parser)
    backbone_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run_export_model)


def run_export_model(args: argparse.Namespace) -> int:
    """Handler of ``export-model``: resolve, export, print where it went."""
    from tasks.models import resolve
    from tasks.models.exports import export_artifact

    artifact = resolve(args.model, args.registry, backbones=args.backbones)
    uri = export_artifact(artifact, args.format, args.output)
    result = {"model": artifact.identity, "format": args.format, "export": uri}
    print(json.dumps(result, indent=2) if args.json else
          f"exported {artifact.identity} as {args.format} to {uri}")
    return 0
