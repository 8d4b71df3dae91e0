"""What the converter knows about one annotation format, as one typed record.

Each reader module declares its ``FORMAT``; ``tasks.annotations.registry`` lists them, one line
each. The command line's ``--format`` choices and help, its format options, the search for
source files with its "looked for" message, and the call of the reader are all derived from
these records, so a new format is a new module plus its registration line.

A *source* is what one reader call converts: a file (a labelme JSON, a label image) or, for
formats whose items are folders, a folder (one ``mask-folders`` sample).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

from tasks.failures import InvalidSetting

from .records import Fetch, ReadResult

# read(name, data, fetch, **options) for file sources; read(folder, files, fetch, **options)
# for folder sources, ``files`` being every file below the folder, relative to the input root.
Read = Callable[..., ReadResult]
# Lists the files below a folder (relative to the input root), relative to the input root.
ListFiles = Callable[[str], Sequence[str]]
# The class of instances in formats whose files name none (a mask, a label image).
DEFAULT_CLASS = "object"


@dataclasses.dataclass(frozen=True)
class ReaderOption:
    """A setting one or more formats take, e.g. VIA's class attribute.

    Attributes:
        name: the read function's keyword argument, and the key in the flow's ``options``.
        flag: the command-line flag, e.g. ``"--via-attribute"``; formats sharing a flag share
            the record.
        help: one line for ``--help``, without the default.
        default: the value when not given (the read function's own default).
        metavar: how ``--help`` names the value.
    """

    name: str
    flag: str
    help: str
    default: str | None = None
    metavar: str = "NAME"


@dataclasses.dataclass(frozen=True)
class AnnotationFormat:
    """One input format of ``convert``.

    Attributes:
        name: the ``--format`` value, e.g. ``"labelme"``.
        help: one line: what the format is.
        looks_for: the source pattern, as the "no source files" error states it.
        matches: whether a file (path relative to the input root) is, or belongs to, a source.
        read: the reader (see ``Read``).
        options: the settings ``read`` takes besides the source.
        folder_of: for folder sources, the source folder a matching file belongs to; None
            when each matching file is a source.
    """

    name: str
    help: str
    looks_for: str
    matches: Callable[[str], bool]
    read: Read
    options: tuple[ReaderOption, ...] = ()
    folder_of: Callable[[str], str | None] | None = None

    def sources(self, files: Iterable[str]) -> list[str]:
        """The sources among ``files`` (paths relative to the input root), in order."""
        matching = [path for path in files if self.matches(path)]
        if self.folder_of is None:
            return matching
        return sorted({self.folder_of(path) for path in matching})

    def resolve_options(self, options: Mapping[str, str] | None) -> dict[str, str | None]:
        """Every option of this format, given or default.

        Raises:
            ValueError: an option this format does not take, naming the ones it takes.
        """
        given = dict(options or {})
        unknown = sorted(set(given) - {option.name for option in self.options})
        if unknown:
            takes = ", ".join(option.name for option in self.options) or "none"
            raise InvalidSetting(
                f"format {self.name!r} takes no option {unknown[0]!r} (its options: {takes})"
            )
        return {option.name: given.get(option.name, option.default) for option in self.options}

    def read_source(
        self,
        source: str,
        fetch: Fetch,
        list_files: ListFiles,
        options: Mapping[str, str] | None = None,
    ) -> ReadResult:
        """Convert one source.

        Args:
            source: the file or folder, relative to the input root.
            fetch: reads a file relative to the input root.
            list_files: lists a folder's files (folder sources only).
            options: this format's options by name; the others take their defaults.
        """
        settings = self.resolve_options(options)
        if self.folder_of is None:
            return self.read(source, fetch(source), fetch, **settings)
        return self.read(source, list_files(source), fetch, **settings)


# Shared by the formats whose files carry no class name (mask folders, label images).
CLASS_OPTION = ReaderOption(
    "class_name",
    "--class",
    "class of the instances that have none of their own",
    default=DEFAULT_CLASS,
)


def by_suffix(suffix: str) -> Callable[[str], bool]:
    """A ``matches`` for formats whose sources are all files named ``*<suffix>`` (any case)."""

    def matches(relative: str) -> bool:
        return relative.lower().endswith(suffix)

    return matches
