"""mkdocs hooks (`hooks:` in mkdocs.yml): the generated reference pages join the site's files.

The pages exist only in the build, never in `docs/`, so nobody can edit them by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
# mkdocs loads this file by path; the pages document the checkout that holds it.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from docsgen.reference import pages  # noqa: E402 - needs the path entry above


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path, content in pages().items():
        files.append(File.generated(config, path, content=content))
    return files
