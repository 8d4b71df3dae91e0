"""The documentation site's generated pages and the checks that keep its pages honest.

Nothing here is part of the installed package: `mkdocs.yml` loads `docsgen.hooks`, and the
tests in `tests/docs/` import the same functions.
"""
