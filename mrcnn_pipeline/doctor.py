"""``mrcnn-pipeline doctor``: what this machine offers a run, and what would stop one.

Each check gives a :class:`Finding`: ``ok``, a ``note`` (worth knowing, nothing fails), or
a ``problem`` (a run would fail) with the fix. The exit code is 1 when any check found a
problem. ``--output URI`` adds the store a run would write to: its endpoint, whether
credentials are found (never their values), a write-and-delete probe (which removes what it
made) and the free disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from mrcnn.hardware import Hardware, detect, visible_gpus
from mrcnn.precision import inference_precision, training_precision
from mrcnn_pipeline.prefect_api import PrefectApiUnavailable, ensure_api

Status = Literal["ok", "note", "problem"]
MIN_FREE_BYTES = 100 * 2**20  # below this a run's checkpoints, tables or exports fail to write
# Distributions whose versions are shown; the first installed name of each counts.
PACKAGES = {
    "TensorFlow": ("tensorflow", "tensorflow-cpu"),
    "Keras": ("keras",),
    "Prefect": ("prefect",),
    "OpenVINO": ("openvino",),
    "ONNX Runtime": ("onnxruntime",),
}
REQUIRED_PACKAGES = ("TensorFlow", "Keras", "Prefect")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One check's result.

    Attributes:
        check: what was looked at, e.g. ``"Prefect API"``.
        status: ``ok``, ``note`` or ``problem``.
        summary: one line of what was found.
        fix: for a problem or a note, what to do about it.
        details: the same facts for machines (``--json``).
    """

    check: str
    status: Status
    summary: str
    fix: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="what this machine offers a run and what would stop one, with fixes",
        description="Check the CPU (flags, cores, TensorFlow threads, the precision 'auto' "
        "picks), library versions, GPUs, the Prefect API and, with --output, the "
        "store a run writes to. Exit code 1 when something a run needs is broken.",
    )
    parser.add_argument(
        "--output",
        metavar="URI",
        help="also check this output: endpoint, "
        "credentials (present or not), a write probe, free disk",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Handler of ``doctor``: every check, printed; exit code 1 on any problem."""
    findings = examine(args.output)
    problems = sum(finding.status == "problem" for finding in findings)
    if args.json:
        print(
            json.dumps(
                {
                    "problems": problems,
                    "findings": [dataclasses.asdict(finding) for finding in findings],
                },
                indent=2,
            )
        )
    else:
        print(render(findings))
    return 1 if problems else 0


def examine(output: str | None = None) -> list[Finding]:
    """All checks, in the order they are printed."""
    hardware, gpu_finding = _hardware()
    findings = [
        cpu_finding(hardware),
        threads_finding(hardware),
        precision_finding(hardware),
        versions_finding(),
        gpu_finding,
        prefect_finding(),
    ]
    if output:
        findings += output_findings(output)
    findings.append(disk_finding("temporary folder", tempfile.gettempdir()))
    return findings


def render(findings: list[Finding]) -> str:
    """The text report: one line per check, a fix line under each problem or note."""
    width = max(len(finding.check) for finding in findings)
    lines = []
    for finding in findings:
        lines.append(f"{finding.status:<8} {finding.check:<{width}}  {finding.summary}")
        if finding.fix:
            lines.append(f"{'':<8} {'':<{width}}  fix: {finding.fix}")
    problems = sum(finding.status == "problem" for finding in findings)
    lines.append(
        f"{problems} problem{'s' if problems != 1 else ''}: a run would fail"
        if problems
        else "no problems found"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the machine
def _hardware() -> tuple[Hardware, Finding]:
    """This machine, and the GPU finding (asking TensorFlow, which may fail to load)."""
    hardware = detect(include_gpus=False)
    try:
        gpus = visible_gpus()
    except ImportError as error:
        return hardware, Finding(
            "GPUs",
            "problem",
            f"TensorFlow does not load: {error}",
            fix="install the project: pip install -c constraints.txt -e .",
        )
    hardware = dataclasses.replace(hardware, gpus=gpus)
    summary = ", ".join(gpus) if gpus else "none visible; TensorFlow runs on the CPU"
    return hardware, Finding("GPUs", "ok", summary, details={"gpus": list(gpus)})


def cpu_finding(hardware: Hardware) -> Finding:
    """The CPU model and the flags that decide speed and precision."""
    flags = " ".join(hardware.notable_flags) or "none of AVX2, AVX-512, AMX"
    native = "native bfloat16" if hardware.native_bf16 else "no native bfloat16"
    return Finding(
        "CPU",
        "ok",
        f"{hardware.cpu_model}: {flags} ({native})",
        details={
            "model": hardware.cpu_model,
            "flags": list(hardware.notable_flags),
            "avx2": "avx2" in hardware.cpu_flags,
            "avx512": "avx512f" in hardware.cpu_flags,
            "avx512_bf16": "avx512_bf16" in hardware.cpu_flags,
            "amx": hardware.amx,
            "native_bf16": hardware.native_bf16,
        },
    )


def threads_finding(hardware: Hardware) -> Finding:
    """Usable cores against the threads TensorFlow is told to use."""
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    variables = {
        name: os.environ[name]
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
        if os.environ.get(name)
    }
    asked = [int(value) for value in variables.values() if value.isdigit()] + [intra]
    details = {"cores": hardware.cores, "intra_op": intra, "inter_op": inter, **variables}
    shown = "; ".join(f"{name}={value}" for name, value in variables.items())
    summary = (
        f"{hardware.cores} usable; TensorFlow threads intra-op {intra or 'auto'}, "
        f"inter-op {inter or 'auto'}"
        + (f"; {shown}" if shown else "")
        + (" (auto: one per usable core)" if not intra else "")
    )
    if max(asked) > hardware.cores:
        return Finding(
            "cores",
            "note",
            summary,
            details=details,
            fix=f"more threads than the {hardware.cores} usable cores slow every "
            "step down; unset those variables or lower them",
        )
    return Finding("cores", "ok", summary, details=details)


def precision_finding(hardware: Hardware) -> Finding:
    """What ``INFERENCE_PRECISION`` / ``TRAINING_PRECISION`` ``"auto"`` become here."""
    inference = inference_precision("auto", hardware)
    training = training_precision("auto", hardware)
    return Finding(
        "precision",
        "ok",
        f"auto: inference {inference.precision}, training {training.precision} "
        f"({inference.reason})",
        details={"inference": inference.to_dict(), "training": training.to_dict()},
    )


def versions_finding() -> Finding:
    """Versions of TensorFlow, Keras, Prefect and the optional runtimes."""
    versions = {label: _installed_version(names) for label, names in PACKAGES.items()}
    summary = ", ".join(f"{label} {version}" for label, version in versions.items() if version)
    missing = [label for label in REQUIRED_PACKAGES if not versions[label]]
    if missing:
        return Finding(
            "versions",
            "problem",
            f"{', '.join(missing)} not installed; {summary}",
            fix="install the project: pip install -c constraints.txt -e .",
            details=versions,
        )
    return Finding("versions", "ok", summary, details=versions)


def _installed_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


# ---------------------------------------------------------------------------- Prefect
def prefect_finding(announce: Callable[[str], None] | None = None) -> Finding:
    """The Prefect API the flows would use: the configured one answering, or the temporary
    local server starting (which prepares its database on the first run)."""
    try:
        api = ensure_api(announce)
    except PrefectApiUnavailable as error:
        return Finding("Prefect API", "problem", error.cause, fix=error.fix)
    if not api.temporary:
        return Finding(
            "Prefect API",
            "ok",
            f"reachable at {api.url} (PREFECT_API_URL)",
            details={"url": api.url, "temporary": False},
        )
    database = str(api.database) if api.database else "not a file"
    return Finding(
        "Prefect API",
        "ok",
        f"temporary local server, started by each command; its database: "
        f"{database}" + (" (created now)" if api.first_run else ""),
        details={
            "url": api.url,
            "temporary": True,
            "database": database,
            "first_run": api.first_run,
        },
    )


# ---------------------------------------------------------------------------- the output
def output_findings(uri: str) -> list[Finding]:
    """The store behind ``uri``: endpoint and credentials, a write probe, free disk."""
    from tasks import storage

    store = storage.describe_store(uri)
    findings = []
    if store.protocol in ("s3", "s3a"):
        endpoint = store.endpoint or "AWS's default endpoint"
        details = {"endpoint": store.endpoint, "credentials": store.credentials}
        if store.credentials is None:  # the probe would only repeat it, in botocore's words
            return [
                Finding(
                    "output store",
                    "problem",
                    f"{endpoint}; no credentials found, so {uri} was not probed",
                    details=details,
                    fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and "
                    "AWS_ENDPOINT_URL for a store other than AWS",
                )
            ]
        findings.append(
            Finding(
                "output store",
                "ok",
                f"{endpoint}; credentials from {store.credentials}",
                details=details,
            )
        )
    findings.append(_writable_finding(uri))
    if storage.is_local(uri):
        findings.append(disk_finding("output disk", uri))
    return findings


def _writable_finding(uri: str) -> Finding:
    from tasks import storage

    try:
        storage.probe_writable(uri, keep_folders=False)
    except OSError as error:
        return Finding(
            "output",
            "problem",
            str(error),
            details={"uri": uri, "writable": False},
            fix="choose a folder you may write to, or fix its permissions, space or credentials",
        )
    return Finding(
        "output",
        "ok",
        f"{uri} takes files (probe written and removed)",
        details={"uri": uri, "writable": True},
    )


def disk_finding(check: str, path: str) -> Finding:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    details = {"path": str(existing), "free_bytes": free}
    summary = f"{_size(free)} free on the disk of {existing}"
    if free < MIN_FREE_BYTES:
        return Finding(
            check,
            "problem",
            summary,
            details=details,
            fix=f"free at least {_size(MIN_FREE_BYTES)} there, or write elsewhere",
        )
    return Finding(check, "ok", summary, details=details)


def _size(count: int) -> str:
    if count < 2**20:
        return f"{count / 2**10:.0f} KiB"
    return f"{count / 2**20:.0f} MiB" if count < 2**30 else f"{count / 2**30:.1f} GiB"
