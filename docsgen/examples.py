"""The code blocks of the documentation that a test runs.

A block is runnable when the line before its opening fence is a marker comment, which the
rendered page does not show:

    <!-- runnable -->                   the block needs nothing but the software
    <!-- runnable: registry images -->  it runs in a folder holding these prepared inputs

The blocks of one page run in order in one folder, so a tutorial's later steps read what
its earlier steps wrote. `bash` blocks hold commands (`mrcnn-pipeline …` and plain shell),
`python` blocks Python, `sql` blocks DuckDB statements, and a `yaml` block is a training
config file that must validate.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(?P<needs>[\w\s-]*))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<language>[\w-]*)")
LANGUAGES = ("bash", "python", "sql", "yaml")


@dataclasses.dataclass(frozen=True)
class Example:
    """One runnable block: where it is, its language, its code, the inputs it needs."""

    page: str  # below docs/
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    needs: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def page_examples(page: Path, docs: Path = DOCS) -> list[Example]:
    """The runnable blocks of one page, in order.

    Raises:
        ValueError: a marker not followed by a fenced block, or a block in a language no
            test can run.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    name = page.relative_to(docs).as_posix()
    examples = []
    for index, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if not marker:
            continue
        fence = FENCE.match(lines[index + 1].strip()) if index + 1 < len(lines) else None
        if not fence:
            raise ValueError(
                f"docs/{name}:{index + 1}: a runnable marker must stand right "
                "above a fenced code block"
            )
        language = fence.group("language")
        if language not in LANGUAGES:
            raise ValueError(
                f"docs/{name}:{index + 2}: runnable blocks are {LANGUAGES}, not {language!r}"
            )
        closing = fence.group("fence")
        body = []
        for text in lines[index + 2 :]:
            if text.strip().startswith(closing):
                break
            body.append(text)
        needs = tuple((marker.group("needs") or "").split())
        examples.append(Example(name, index + 2, language, "\n".join(body) + "\n", needs))
    return examples


def all_examples(docs: Path = DOCS) -> dict[str, list[Example]]:
    """Every page with runnable blocks, by its path below docs/."""
    found = {}
    for page in sorted(docs.rglob("*.md")):
        examples = page_examples(page, docs)
        if examples:
            found[page.relative_to(docs).as_posix()] = examples
    return found


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blanks dropped."""
    commands, current = [], ""
    for line in code.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        commands.append(current + line)
        current = ""
    if current:
        commands.append(current)
    return commands
