"""The model registry: numbered versions, aliases and the promotion gate (``versions``), and
the documents written beside a version or a decision (``documents``).

``from tasks import registry`` gives the registry's functions (``registry.resolve``,
``registry.register_version``, ``registry.promote`` ...); the layout and its guarantees are in
`tasks.registry.versions`. The registry holds metadata and files only: it never builds a model
(`tasks.models` does).
"""

from tasks.registry.versions import (
    ALIAS_PATTERN,
    COMMIT_FILE,
    HDF5_SIGNATURE,
    NAME_PATTERN,
    REFERENCE,
    RESERVED_ALIASES,
    WEIGHTS_FILE,
    ModelVersion,
    check_alias,
    check_name,
    is_reference,
    list_models,
    list_versions,
    metric_value,
    now_iso,
    parse_reference,
    promote,
    read_alias,
    read_aliases,
    read_weights,
    register_version,
    resolve,
    set_alias,
)

__all__ = [
    "ALIAS_PATTERN",
    "COMMIT_FILE",
    "HDF5_SIGNATURE",
    "NAME_PATTERN",
    "REFERENCE",
    "RESERVED_ALIASES",
    "WEIGHTS_FILE",
    "ModelVersion",
    "check_alias",
    "check_name",
    "is_reference",
    "list_models",
    "list_versions",
    "metric_value",
    "now_iso",
    "parse_reference",
    "promote",
    "read_alias",
    "read_aliases",
    "read_weights",
    "register_version",
    "resolve",
    "set_alias",
]
