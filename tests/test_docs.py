"""The documentation agrees with what it documents, and is valid reStructuredText.

README's option table is the operator's view of config_declaration.yaml, and
docs/api.rst promises every action: both drift silently unless checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docutils import nodes
from docutils.core import publish_doctree

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
DECLARATION = ROOT / "ckanext" / "webhooks" / "config_declaration.yaml"
PAGES = [README, *sorted((ROOT / "docs").glob("*.rst"))]
PREFIX = "ckanext.webhooks."
EMPTY = "(empty)"  # how the docs write an empty default


def _ini_spelling(value: Any) -> str:
    """A declared default as it would be written in a CKAN ini file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return "" if value is None else str(value)


def declared_defaults() -> dict[str, str]:
    declaration = yaml.safe_load(DECLARATION.read_text(encoding="utf-8"))
    return {
        option["key"]: _ini_spelling(option.get("default"))
        for group in declaration["groups"]
        for option in group["options"]
    }


def doctree(page: Path, halt_level: int = 5) -> nodes.document:
    return publish_doctree(
        page.read_text(encoding="utf-8"),
        source_path=str(page),
        settings_overrides={
            "halt_level": halt_level,
            "report_level": 5,  # failures are raised, not printed
            "syntax_highlight": "none",  # Pygments is not a test dependency
            "file_insertion_enabled": False,
            "raw_enabled": False,
        },
    )


def table_rows(table: nodes.table) -> Iterator[list[str]]:
    for body in table.findall(nodes.tbody):
        for row in body.findall(nodes.row):
            yield [entry.astext().strip() for entry in row.children]


def option_defaults(tables: Iterator[nodes.table]) -> dict[str, str]:
    """{option: default} from the rows of ``tables`` whose first cell is an
    option of this extension and whose second cell is its default."""
    found: dict[str, str] = {}
    for table in tables:
        for cells in table_rows(table):
            if len(cells) >= 2 and cells[0].startswith(PREFIX):
                default = cells[1]
                found[cells[0]] = "" if default == EMPTY else default
    return found


def readme_configuration_table() -> dict[str, str]:
    tree = doctree(README)
    sections = [s for s in tree.findall(nodes.section) if "configuration" in s["ids"]]
    assert len(sections) == 1, "README.rst has one Configuration section"
    return option_defaults(sections[0].findall(nodes.table))


def test_readme_table_has_every_declared_option_with_its_default():
    documented = readme_configuration_table()
    for key, default in declared_defaults().items():
        assert key in documented, f"{key} is declared but not in README's table"
        assert documented[key] == default, (
            f"README gives {key} the default {documented[key]!r}; "
            f"config_declaration.yaml says {default!r}"
        )


def test_readme_table_names_no_undeclared_option():
    undeclared = set(readme_configuration_table()) - set(declared_defaults())
    assert not undeclared, f"README documents options never declared: {undeclared}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_default_written_in_a_table_is_the_declared_one(page):
    declared = declared_defaults()
    for key, default in option_defaults(doctree(page).findall(nodes.table)).items():
        assert key in declared, f"{page.name} names an undeclared option {key}"
        assert default == declared[key], (
            f"{page.name} gives {key} the default {default!r}; "
            f"config_declaration.yaml says {declared[key]!r}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_is_valid_restructuredtext(page):
    doctree(page, halt_level=2)  # a warning or worse raises SystemMessage


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_and_images_exist(page):
    tree = doctree(page)
    targets = [
        ref["refuri"] for ref in tree.findall(nodes.reference) if "refuri" in ref
    ]
    targets += [image["uri"] for image in tree.findall(nodes.image)]
    for target in targets:
        if "://" in target or target.startswith("mailto:"):
            continue
        path = target.split("#", 1)[0]
        assert (page.parent / path).exists(), f"{page.name} links to missing {target}"


def test_api_reference_documents_every_action():
    from ckanext.webhooks.logic import action

    reference = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    missing = [name for name in action.__all__ if f"``{name}``" not in reference]
    assert not missing, f"docs/api.rst does not document {missing}"
