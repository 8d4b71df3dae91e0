"""What the machine offers the model: CPU model and instruction-set flags, usable cores, GPUs.

`detect()` reads Linux's `/proc/cpuinfo` (elsewhere the CPU flags are unknown, which makes
`mrcnn.precision` choose float32); `parse_cpuinfo` takes that text as data, so the choice of
precision can be tested for CPUs this machine is not.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Flags of native bfloat16 arithmetic: AVX-512 BF16 dot products, or Intel's AMX tiles.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags `doctor` and benchmark records name, in this order.
NOTABLE_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """The CPU (model name, lower-case flags as Linux lists them), usable cores and GPUs."""

    cpu_model: str
    cpu_flags: frozenset[str]
    cores: int
    gpus: tuple[str, ...] = ()

    @property
    def native_bf16(self) -> bool:
        """Whether the CPU computes bfloat16 in hardware (without it, TensorFlow and
        OpenVINO emulate bfloat16 in float32 code, slower than float32 itself)."""
        return any(flag in self.cpu_flags for flag in BF16_FLAGS)

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.cpu_flags

    @property
    def notable_flags(self) -> tuple[str, ...]:
        """The flags that decide convolution speed and precision, in `NOTABLE_FLAGS` order."""
        return tuple(flag for flag in NOTABLE_FLAGS if flag in self.cpu_flags)

    def describe(self) -> str:
        """One line: model, cores and notable flags (for logs and benchmark records)."""
        flags = " ".join(self.notable_flags) or "no AVX2"
        gpus = f", {len(self.gpus)} GPU(s)" if self.gpus else ""
        return f"{self.cpu_model} ({self.cores} cores; {flags}){gpus}"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The CPU model name and flags of `/proc/cpuinfo` text (its first processor)."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model or "unknown CPU", flags


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def visible_gpus() -> tuple[str, ...]:
    """TensorFlow's visible GPU devices (imports TensorFlow)."""
    import tensorflow as tf

    return tuple(device.name for device in tf.config.list_physical_devices("GPU"))


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, frozenset[str]]:
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:  # not Linux
        return platform.processor() or platform.machine() or "unknown CPU", frozenset()


def detect(include_gpus: bool = True) -> Hardware:
    """This machine. `include_gpus=False` skips asking TensorFlow (no import)."""
    model, flags = _cpu()
    return Hardware(model, flags, usable_cores(), visible_gpus() if include_gpus else ())
