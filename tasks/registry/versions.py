"""Model registry on any fsspec URI: immutable numbered versions, aliases, a promotion gate.

Layout::

    <registry>/<name>/versions/<N>/model.weights.h5, config.json, classes.json,
                                   metrics.json, lineage.json, MODEL_CARD.md
    <registry>/<name>/aliases/<alias>.json   {"version": N, "set_at", "reason", "previous"}
    <registry>/<name>/claims/<N>.json        who took number N (kept forever)

**Numbers without races.** A registration claims number N by *creating* `claims/<N>.json`
in a way only one writer can win: in a local folder with `os.open(O_CREAT | O_EXCL)`; on
s3 with a conditional PUT (`If-None-Match: *`, s3fs `mode="create"`), which the store refuses
with 412 when the object exists (AWS S3 and SeaweedFS honour it; a store that ignored the
header would break this, so it is a requirement); elsewhere with fsspec's `mode="create"`,
safe within one process only. The loser tries N+1. Claims are never removed, so no number
is given twice; a registration that fails after its claim leaves a gap.

**No half-written versions.** Locally the files go to `.staging/<token>/`, which is then
renamed to `versions/<N>` (atomic). An object store has no rename: the files are written to
`versions/<N>/` with `lineage.json` last, and a version is published only once its
`lineage.json` exists; a failed upload removes what it wrote. Readers never list a version
without `lineage.json`.

**References**: `NAME@vN` (a version), `NAME@ALIAS` (an alias), `NAME` (the newest version).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from tasks import storage
from tasks.failures import InvalidInput, InvalidSetting, MissingInput
from tasks.models.artifact import CLASSES_FILE, CONFIG_FILE
from tasks.registry.documents import model_card

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
ALIAS_PATTERN = r"[A-Za-z][A-Za-z0-9_-]*"
REFERENCE = re.compile(rf"(?P<name>{NAME_PATTERN})(?:@(?P<selector>[A-Za-z0-9_-]+))?")
VERSION_SELECTOR = re.compile(r"v(\d+)")
RESERVED_ALIASES = ("latest",)
WEIGHTS_FILE = "model.weights.h5"
COMMIT_FILE = "lineage.json"  # written last: a version exists once this file does
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_CLAIM_ATTEMPTS = 1000


@dataclass(frozen=True)
class ModelVersion:
    """One published version: `<registry>/<name>/versions/<version>/`."""

    registry: str
    name: str
    version: int

    @property
    def uri(self) -> str:
        return storage.join(self.registry, self.name, "versions", str(self.version))

    @property
    def reference(self) -> str:
        return f"{self.name}@v{self.version}"

    def file(self, name: str) -> str:
        """URI of one of the version's files."""
        return storage.join(self.uri, name)

    def read_json(self, name: str) -> Any:
        return storage.read_json(self.file(name), f"{self.reference} file")


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode("utf-8")


def check_name(name: str) -> str:
    """Validate a model name (letters, digits, `_`, `-`); returns it."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise InvalidSetting(
            f"model name must be letters, digits, '_' or '-' (not starting with "
            f"'_' or '-'), got {name!r}"
        )
    return name


def check_alias(alias: str) -> str:
    """Validate an alias name; `vN` and `latest` are reserved."""
    if (
        not isinstance(alias, str)
        or not re.fullmatch(ALIAS_PATTERN, alias)
        or VERSION_SELECTOR.fullmatch(alias)
        or alias in RESERVED_ALIASES
    ):
        raise InvalidSetting(
            f"alias must start with a letter, then letters, digits, '_' or '-', "
            f"and must not be 'vN' or {RESERVED_ALIASES}; got {alias!r}"
        )
    return alias


def is_reference(text: str) -> bool:
    """True for `NAME@SELECTOR` (a registry reference rather than a path or URI)."""
    match = REFERENCE.fullmatch(str(text))
    return bool(match and match.group("selector"))


def parse_reference(reference: str) -> tuple[str, str | None]:
    """`"road@production"` -> `("road", "production")`; `"road"` -> `("road", None)`."""
    match = REFERENCE.fullmatch(str(reference))
    if not match:
        raise InvalidSetting(
            f"not a model reference: {reference!r}; expected NAME, NAME@vN or NAME@ALIAS"
        )
    return match.group("name"), match.group("selector")


# ---------------------------------------------------------------------------- reading
def list_models(registry: str) -> list[str]:
    """Names of the models with at least one published version."""
    names = set()
    for uri in storage.list_files(registry, (COMMIT_FILE,)):
        parts = storage.relative_path(uri, registry).split("/")
        if len(parts) == 4 and parts[1] == "versions" and re.fullmatch(NAME_PATTERN, parts[0]):
            names.add(parts[0])
    return sorted(names)


def list_versions(registry: str, name: str) -> list[int]:
    """Published version numbers of `name`, ascending (empty if the model is unknown)."""
    root = storage.join(registry, check_name(name), "versions")
    numbers = []
    for uri in storage.list_files(root, (COMMIT_FILE,)):
        number, _, file_name = storage.relative_path(uri, root).partition("/")
        if file_name == COMMIT_FILE and number.isdigit():
            numbers.append(int(number))
    return sorted(numbers)


def _alias_uri(registry: str, name: str, alias: str) -> str:
    return storage.join(registry, name, "aliases", f"{alias}.json")


def read_alias(registry: str, name: str, alias: str) -> dict[str, Any] | None:
    """The alias record, or None when the alias is not set."""
    try:
        return storage.read_json(_alias_uri(registry, name, alias), "alias record")
    except FileNotFoundError:
        return None


def read_aliases(registry: str, name: str) -> dict[str, dict[str, Any]]:
    """Every alias of `name` with its record."""
    root = storage.join(registry, check_name(name), "aliases")
    return {
        storage.relative_path(uri, root).removesuffix(".json"): storage.read_json(
            uri, "alias record"
        )
        for uri in storage.list_files(root, (".json",))
    }


def resolve(reference: str, registry: str) -> ModelVersion:
    """The version a reference names.

    Raises:
        FileNotFoundError: the model, version or alias does not exist (the message names it).
    """
    name, selector = parse_reference(reference)
    versions = list_versions(registry, name)
    if not versions:
        raise MissingInput(
            f"model {name!r} not found in registry {registry!r} (models: {list_models(registry)})"
        )
    if selector is None:
        return ModelVersion(registry, name, versions[-1])
    numbered = VERSION_SELECTOR.fullmatch(selector)
    if numbered:
        if int(numbered.group(1)) not in versions:
            raise MissingInput(
                f"{reference!r}: model {name!r} has no version {selector} in "
                f"{registry!r} (versions: {versions})"
            )
        return ModelVersion(registry, name, int(numbered.group(1)))
    record = read_alias(registry, name, selector)
    if record is None:
        raise MissingInput(
            f"{reference!r}: model {name!r} has no alias {selector!r} in "
            f"{registry!r} (aliases: {sorted(read_aliases(registry, name))})"
        )
    return ModelVersion(registry, name, int(record["version"]))


# ---------------------------------------------------------------------------- registering
def register_version(
    registry: str,
    name: str,
    weights_uri: str,
    config: dict[str, Any],
    classes: list[str],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
) -> ModelVersion:
    """Publish a new immutable version; its number is claimed without races.

    Args:
        registry: registry root URI.
        name: model name.
        weights_uri: the `.weights.h5` file to publish.
        config: `mrcnn.Config.to_dict()` of the model.
        classes: class names without the background, in class-id order.
        metrics: the evaluation metrics (`evaluate-model`'s `metrics.json`).
        lineage: where the model comes from; `model`, `version`, `registered_at` are added.

    Returns:
        The published version.

    Raises:
        FileNotFoundError / ValueError: missing or invalid inputs; nothing is claimed then.
    """
    check_name(name)
    if config.get("NUM_CLASSES") != len(classes) + 1:
        raise InvalidInput(
            f"config NUM_CLASSES={config.get('NUM_CLASSES')} does not fit "
            f"{len(classes)} classes plus the background: {classes}"
        )
    weights = read_weights(weights_uri)
    number, token = _claim_number(registry, name)
    version = ModelVersion(registry, name, number)
    lineage = {**lineage, "model": name, "version": number, "registered_at": now_iso()}
    files = {
        WEIGHTS_FILE: weights,
        CONFIG_FILE: _dumps(config),
        CLASSES_FILE: _dumps(classes),
        "metrics.json": _dumps(metrics),
        "MODEL_CARD.md": model_card(version, classes, config, metrics, lineage).encode(),
        COMMIT_FILE: _dumps(lineage),
    }
    _publish(version, files, token)
    return version


def read_weights(uri: str) -> bytes:
    """The bytes of an HDF5 weight file.

    Raises:
        FileNotFoundError: nothing at `uri`.
        ValueError: the file is not HDF5 (corrupt, or not a weight file).
    """
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise MissingInput(f"weight file {uri!r} not found") from None
    if not data.startswith(HDF5_SIGNATURE):
        raise InvalidInput(f"weight file {uri!r} is not an HDF5 file (corrupt or truncated?)")
    return data


def _claim_number(registry: str, name: str) -> tuple[int, str]:
    """Take the next free version number; returns `(number, token)`."""
    claims = storage.join(registry, name, "claims")
    taken = [
        int(storage.relative_path(uri, claims).removesuffix(".json"))
        for uri in storage.list_files(claims, (".json",))
        if storage.relative_path(uri, claims).removesuffix(".json").isdigit()
    ]
    number = max(taken + list_versions(registry, name), default=0) + 1
    token = uuid.uuid4().hex
    record = _dumps(
        {"token": token, "claimed_at": now_iso(), "host": socket.gethostname(), "pid": os.getpid()}
    )
    for _ in range(MAX_CLAIM_ATTEMPTS):
        if storage.create_exclusive(storage.join(claims, f"{number}.json"), record):
            return number, token
        number += 1
    raise RuntimeError(
        f"could not claim a version number of {name!r} in {registry!r} after "
        f"{MAX_CLAIM_ATTEMPTS} attempts"
    )


def _local_path(uri: str) -> str:
    return os.path.abspath(str(uri).removeprefix("file://"))


def _publish(version: ModelVersion, files: dict[str, bytes], token: str) -> None:
    """Write the files so that the version appears whole or not at all (module docstring)."""
    if storage.is_local(version.registry):
        staging = storage.join(version.registry, version.name, ".staging", token)
        try:
            for file_name, data in files.items():
                storage.write_bytes(storage.join(staging, file_name), data)
            target = _local_path(version.uri)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(_local_path(staging), target)
        finally:
            storage.remove(staging)
        return
    try:
        for file_name, data in files.items():  # COMMIT_FILE is the last key
            storage.write_bytes(version.file(file_name), data)
    except BaseException:
        storage.remove(version.uri)
        raise


# ---------------------------------------------------------------------------- aliases and gate
def set_alias(version: ModelVersion, alias: str, reason: str | None = None) -> dict[str, Any]:
    """Point `alias` at `version` (one atomic write); returns the new alias record."""
    check_alias(alias)
    if version.version not in list_versions(version.registry, version.name):
        raise MissingInput(f"{version.reference} not found in registry {version.registry!r}")
    previous = read_alias(version.registry, version.name, alias)
    record = {
        "version": version.version,
        "set_at": now_iso(),
        "reason": reason,
        "previous": previous["version"] if previous else None,
    }
    storage.write_bytes(_alias_uri(version.registry, version.name, alias), _dumps(record))
    return record


def metric_value(metrics: dict[str, Any], metric: str, owner: str) -> float | None:
    """Look up a dotted metric name such as `segm.AP` (None: undefined, e.g. no ground truth).

    Raises:
        ValueError: the metric is not in `metrics` (`owner` names where they came from).
    """
    value: Any = metrics
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InvalidSetting(
                f"metric {metric!r} not found in the metrics of {owner}; "
                f"top-level keys: {sorted(metrics)}"
            )
        value = value[part]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidInput(f"metric {metric!r} of {owner} is not a number: {value!r}")
    return None if value is None else float(value)


def promote(
    version: ModelVersion,
    alias: str = "production",
    metric: str = "segm.AP",
    higher_is_better: bool = True,
    force: bool = False,
    reason: str | None = None,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The promotion gate: move `alias` to `version` if its metric is at least as good.

    Without a current holder of the alias the version is promoted. A version that fails the
    gate is promoted only with `force=True` and a `reason`.

    Args:
        baseline: the current holder's metrics on the candidate's val split (an evaluation
            of it on the same dataset). Used when it is of the version holding the alias now
            and of the same dataset content as the candidate's metrics; otherwise the
            holder's registered metrics are compared and the decision says so.

    Returns:
        The decision: `alias`, `metric`, `candidate` / `current` (`{version, value}`),
        `compared_on` (the dataset both values come from, or None), `promoted`, `forced`,
        `reason`.
    """
    check_alias(alias)
    if force and not (reason and reason.strip()):
        raise InvalidSetting("a forced promotion needs a reason")
    candidate_metrics = version.read_json("metrics.json")
    value = metric_value(candidate_metrics, metric, version.reference)
    record = read_alias(version.registry, version.name, alias)
    current, compared_on = None, None
    if record is not None:
        holder = ModelVersion(version.registry, version.name, int(record["version"]))
        held_metrics = holder.read_json("metrics.json")
        if _same_split(baseline, holder, candidate_metrics):
            held_metrics, compared_on = baseline, candidate_metrics["dataset"]
        try:
            held = metric_value(held_metrics, metric, holder.reference)
        except ValueError:  # registered before this metric existed: nothing to compare with
            held = None
        current = {"version": holder.version, "value": held}
    passed, why = _gate(value, current, metric, higher_is_better)
    if current is not None:
        why += " on the same val split" if compared_on else " (each on its own val split)"
    promoted = passed or force
    text = why if passed else (f"forced: {reason.strip()} (gate: {why})" if force else why)
    if promoted and (current is None or current["version"] != version.version):
        set_alias(version, alias, text)
    return {
        "model": version.name,
        "alias": alias,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "candidate": {"version": version.version, "value": value},
        "current": current,
        "compared_on": compared_on,
        "promoted": promoted,
        "forced": promoted and not passed,
        "reason": text,
    }


def _same_split(
    baseline: dict[str, Any] | None, holder: ModelVersion, candidate: dict[str, Any]
) -> bool:
    """Whether ``baseline`` evaluated ``holder`` on the data the candidate was evaluated on."""
    if not baseline:
        return False
    same_model = (baseline.get("model") or {}).get("reference") == holder.reference
    dataset, theirs = baseline.get("dataset") or {}, candidate.get("dataset") or {}
    return same_model and bool(dataset.get("hash")) and dataset.get("hash") == theirs.get("hash")


def _gate(
    value: float | None, current: dict[str, Any] | None, metric: str, higher_is_better: bool
) -> tuple[bool, str]:
    if current is None:
        return True, "no current version holds the alias"
    if value is None:
        return False, f"the candidate's {metric} is undefined"
    if current["value"] is None:
        return True, f"v{current['version']} has no {metric}"
    better = value >= current["value"] if higher_is_better else value <= current["value"]
    sign = (">=" if higher_is_better else "<=") if better else ("<" if higher_is_better else ">")
    return better, f"{metric} {value:.4f} {sign} {current['value']:.4f} of v{current['version']}"
