"""Label lists and aliases: which class each annotated label belongs to.

A labels file has one name per line, like labelme's ``labels.txt``; ``__ignore__`` and
``_background_`` may appear and are not classes. Category ids are 1..K in list order.
Aliases map annotated labels to classes, explicitly (``{"car1": "car"}``) or by the prefix
rule: with a label list, a label maps to the longest listed name it starts with
(``car12`` -> ``car``); without one, trailing digits are dropped (``car12`` -> ``car``),
as annotators numbered the objects of one class in the legacy TF 1.15 repository's datasets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

from tasks.failures import InvalidInput, InvalidSetting

NOT_CLASSES = ("__ignore__", "_background_")
_TRAILING_NUMBER = re.compile(r"[\s_-]*\d+$")


def parse_labels(text: str) -> list[str]:
    """Class names from a labels file's text, in order.

    Raises:
        ValueError: on a repeated name, or when no class remains.
    """
    names: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or name in NOT_CLASSES:
            continue
        if name in names:
            raise InvalidInput(f"labels file: {name!r} on line {number} is listed twice")
        names.append(name)
    if not names:
        raise InvalidInput(
            "labels file lists no class (only blank lines, __ignore__ or _background_)"
        )
    return names


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Resolves annotated labels to class names.

    Attributes:
        names: the declared classes in category order, or None to take the classes found.
        aliases: explicit ``annotated label -> class`` mapping, applied first.
        prefix: apply the prefix rule (see the module docstring) to other labels.
    """

    names: tuple[str, ...] | None = None
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    prefix: bool = False

    def __post_init__(self) -> None:
        if self.names is not None:
            object.__setattr__(self, "names", tuple(n for n in self.names if n not in NOT_CLASSES))
            if len(set(self.names)) != len(self.names):
                raise InvalidSetting(f"labels list repeats a name: {list(self.names)}")
            unknown = sorted(t for t in set(self.aliases.values()) if t not in self.names)
            if unknown:
                raise InvalidSetting(
                    f"aliases map to labels that are not in the labels list: {unknown}"
                )

    def resolve(self, label: str) -> str:
        """The class of an annotated label.

        Raises:
            ValueError: if a label list is given and the label maps to none of its names.
        """
        if label in self.aliases:
            return self.aliases[label]
        if self.names is None:
            return (_TRAILING_NUMBER.sub("", label) or label) if self.prefix else label
        if label in self.names:
            return label
        if self.prefix:
            matches = [name for name in self.names if label.startswith(name)]
            if matches:
                return max(matches, key=len)
        raise ValueError(f"unknown label {label!r} (not in the labels list)")

    def categories(self, found: Iterable[str], declared: Sequence[str] = ()) -> list[str]:
        """Class names in category order (id = index + 1).

        Args:
            found: resolved class names seen in the data.
            declared: resolved class names the sources list in their own order (COCO
                categories); they come first, then the other found names sorted.
        """
        if self.names is not None:
            return list(self.names)
        ordered = list(dict.fromkeys(declared))
        return ordered + sorted(set(found) - set(ordered))
