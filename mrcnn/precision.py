"""Which precision a model computes in on this machine: the requested one, or "auto".

bfloat16 pays only where the hardware computes it: on a CPU with AVX512_BF16 or AMX a 512²
detect call runs 1.7× (AMD EPYC, AVX512_BF16) to 3.6× (Intel Xeon, AMX) faster than in float32,
with masks within 1.3 % of float32's (`benchmarks/results/`); on a CPU
without them TensorFlow and OpenVINO emulate bfloat16 in float32 code, which is slower than
float32 (1.2× for our detect call, 6× for torchvision's on an AVX2-only AMD EPYC) and, in
OpenVINO, gives other detections. So:

- ``"auto"`` picks bfloat16 (training: Keras's ``"mixed_bfloat16"``) on a CPU with native
  bfloat16, float32 elsewhere, and float32 where a GPU runs the model (bfloat16 and float16
  are not measured on a GPU; ask for them explicitly);
- an explicit bfloat16 on a CPU without native bfloat16 runs float32, and the choice's
  ``reason`` says so (callers record it and may warn);
- ``"mixed_float16"`` is for GPUs (on a CPU it runs float32, recorded the same way).

Every model records the `PrecisionChoice` it was built with, so each figure can be traced to
the precision that made it.
"""

from __future__ import annotations

import dataclasses

from mrcnn.errors import InvalidSetting
from mrcnn.hardware import Hardware, detect

INFERENCE_PRECISIONS = ("float32", "bfloat16", "auto")
TRAINING_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# The Keras dtype policy a model's layers are built under, per resolved precision.
KERAS_POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "mixed_bfloat16": "mixed_bfloat16",
    "mixed_float16": "mixed_float16",
}


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """What was asked, what runs, and why (one sentence naming the hardware)."""

    requested: str
    precision: str
    reason: str

    @property
    def keras_policy(self) -> str:
        return KERAS_POLICIES[self.precision]

    @property
    def downgraded(self) -> bool:
        """An explicit reduced precision that this machine runs as float32 instead."""
        return self.requested not in ("auto", self.precision)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def inference_precision(requested: str, hardware: Hardware | None = None) -> PrecisionChoice:
    """Resolve an INFERENCE_PRECISION value (`INFERENCE_PRECISIONS`) for ``hardware``
    (default: this machine) to ``"float32"`` or ``"bfloat16"``."""
    return _choose(requested, INFERENCE_PRECISIONS, "bfloat16", hardware)


def training_precision(requested: str, hardware: Hardware | None = None) -> PrecisionChoice:
    """Resolve a TRAINING_PRECISION value (`TRAINING_PRECISIONS`) for ``hardware`` to
    ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``."""
    return _choose(requested, TRAINING_PRECISIONS, "mixed_bfloat16", hardware)


def _choose(
    requested: str, accepted: tuple[str, ...], bf16: str, hardware: Hardware | None
) -> PrecisionChoice:
    if requested not in accepted:
        raise InvalidSetting(f"precision must be one of {accepted}, got {requested!r}")
    if requested == "float32":
        return PrecisionChoice(requested, "float32", "float32 was asked for")
    machine = hardware or detect()
    bf16_support = "native bfloat16" if machine.native_bf16 else "no AVX512_BF16 or AMX"
    cpu = f"{machine.cpu_model} ({bf16_support})"
    if machine.gpus:
        if requested == "auto":
            return PrecisionChoice(
                requested,
                "float32",
                f"a GPU runs the model ({machine.gpus[0]}); "
                "reduced precision is not measured on a GPU, ask for it explicitly",
            )
        return PrecisionChoice(requested, requested, f"{requested} was asked for, on a GPU")
    if requested == "mixed_float16":
        return PrecisionChoice(
            requested, "float32", f"float16 is for GPUs and none is visible; {cpu} runs float32"
        )
    if machine.native_bf16:
        asked = "chosen by auto" if requested == "auto" else "asked for"
        return PrecisionChoice(requested, bf16, f"{bf16} {asked}: {cpu}")
    if requested == "auto":
        return PrecisionChoice(
            requested, "float32", f"{cpu}: bfloat16 would be emulated, slower than float32"
        )
    return PrecisionChoice(
        requested,
        "float32",
        f"{requested} was asked for, but {cpu} would "
        "emulate it, slower than float32 and with other results: float32 runs",
    )
