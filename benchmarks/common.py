"""Shared benchmark helpers: timing, peak memory, machine facts, child processes, peer data.

Each benchmark runs every engine (ours, torchvision) in its own child process, so peak RSS
is per engine and one framework's thread pools or caches never slow the other. A child
prints one JSON document on stdout; the parent merges them.

Nothing here imports TensorFlow or torch at module level: the parent stays light and a child
imports only the framework it measures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
PACKAGES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "numpy",
    "openvino",
    "onnxruntime",
    "tf2onnx",
    "torch",
    "torchvision",
    "pycocotools",
)
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "ONEDNN_MAX_CPU_ISA",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "OMP_WAIT_POLICY",
    "ATEN_CPU_CAPABILITY",
)


# ---------------------------------------------------------------------- timing and memory
def summarize(seconds: list[float], scale: float = 1.0, with_runs: bool = True) -> dict[str, Any]:
    """Median, min and max of `seconds` (each divided by `scale`); the raw values if `with_runs`."""
    if not seconds:
        raise ValueError("summarize needs at least one timing")
    values = [s / scale for s in seconds]
    summary: dict[str, Any] = {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "count": len(values),
    }
    if with_runs:
        summary["runs"] = [round(v, 4) for v in values]
    return summary


def time_runs(fn: Callable[[], Any], warmup: int, runs: int) -> tuple[list[float], Any]:
    """Call `fn` `warmup` times untimed (tracing, caches), then `runs` times timed.

    Returns the wall-clock seconds of each timed call and the last call's result.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    result = None
    for _ in range(warmup):
        result = fn()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (`ru_maxrss` is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, or None when either is missing."""
    if not ours or not peer:
        return None
    return round(ours / peer, 3)


# ---------------------------------------------------------------------- machine facts
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(
    wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"),
) -> list[str]:
    """Which of the `wanted` instruction-set flags /proc/cpuinfo lists (bf16 speed needs them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags_line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[-1].split())
    return [flag for flag in wanted if flag in flags]


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from metadata so nothing heavy is imported."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, load, package versions and thread-related environment variables."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": memory_total_gib(),
        # Other processes on the CPU distort every figure; the load shows whether the box was quiet.
        "load_average_1_5_15": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "thread_env": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
    }


def tf_threads() -> dict[str, int]:
    """TensorFlow's thread-pool sizes (0 means TensorFlow picks: all usable cores)."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def peer_available() -> bool:
    """Whether torch and torchvision are installed (whether they import is up to the child)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


# ---------------------------------------------------------------------- child processes
def run_child(
    module: str,
    args: list[str],
    timeout: float | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `python -m module args` in the repository root and parse the JSON it prints last.

    `environment` is the child's (default: this process's). A child that crashes, times out or
    prints no JSON yields `{"error": ...}` with the tail of its stderr, so one failing engine
    does not lose the other engine's figures.
    """
    environment = dict(os.environ) if environment is None else environment
    env = {**environment, "TF_CPP_MIN_LOG_LEVEL": environment.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    command = [sys.executable, "-m", module, *args]
    print(f"[bench] running: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return {"error": f"exit code {done.returncode}: {plain(tail)}"}
    return json.loads(lines[-1])


def plain(text: str, limit: int = 2000) -> str:
    """`text` without terminal colour codes (Keras colours its errors), cut to `limit` chars."""
    return ANSI_CODES.sub("", text)[:limit]


def emit(document: dict[str, Any]) -> None:
    """Print one JSON document on a single line of stdout (what the parent parses)."""
    print(json.dumps(document), flush=True)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: above the core count means other work shared the CPU."""
    return [round(v, 2) for v in os.getloadavg()]


def config_overrides(parser: argparse.ArgumentParser, text: str) -> dict[str, Any]:
    """`--override`'s JSON object of Config values, or the parser's one-line error."""
    try:
        overrides = json.loads(text)
        if not isinstance(overrides, dict):
            raise ValueError("not an object")
    except ValueError as error:
        parser.error(f"--override must be a JSON object of Config values: {error}")
    return overrides


def header(name: str, argv: list[str]) -> dict[str, Any]:
    """The common head of a benchmark's JSON: name, command, start time, machine."""
    return {
        "benchmark": name,
        "command": " ".join(["python -m", f"benchmarks.{name}", *argv]),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


# ------------------------------------------------------------ data for the torchvision peer
def random_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """`count` random RGB uint8 images `[size, size, 3]`, the same for every engine."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def to_torch_image(image: np.ndarray):
    """RGB uint8 `[H, W, 3]` → float tensor `[3, H, W]` in [0, 1] (torchvision's input)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def to_torch_target(masks: np.ndarray, class_ids: np.ndarray) -> dict:
    """Instance masks bool `[H, W, N]` and class ids `[N]` → a torchvision training target.

    Boxes are `[N, (x1, y1, x2, y2)]` with x2/y2 one past the last pixel, as our boxes are.
    """
    import torch

    from mrcnn.boxes import extract_bboxes

    boxes = extract_bboxes(masks).astype(np.float32)[:, [1, 0, 3, 2]]
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.from_numpy(class_ids.astype(np.int64)),
        "masks": torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1))).to(torch.uint8),
    }


def from_torch_output(output: dict, mask_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """One torchvision prediction → our `detect()` dict.

    rois `[N, (y1, x1, y2, x2)]`, masks `[H, W, N]`.
    """
    boxes = output["boxes"].float().numpy()
    masks = (output["masks"][:, 0] > mask_threshold).numpy().transpose(1, 2, 0)
    return {
        "rois": np.round(boxes[:, [1, 0, 3, 2]]).astype(np.int32),
        "class_ids": output["labels"].numpy().astype(np.int32),
        "scores": output["scores"].float().numpy(),
        "masks": masks,
    }
