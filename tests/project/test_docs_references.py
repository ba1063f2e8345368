"""Code that points a reader at a part of the docs points at a part that exists, and the docs'
list of modules lists the modules there are.

A module cites `docs/ARCHITECTURE.md, "Name"` (also written `docs/ARCHITECTURE.md §Name` or
`, section "Name"`) and `docs/PROTOCOL.md §N`. "Name" must begin a heading of ARCHITECTURE.md:
a `#` heading, or a bold lead-in (`**Name**` opening a paragraph or a list item), which is how
its longer sections name their parts. A heading may go on after the cited words ("Celery mode"
cites "Celery mode (INFERENCE_MODE=celery): GPU workers and a durable token log").
"""

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()  # its own examples are not citations
ROOT = HERE.parents[2]
CODE = ["chatsite", "inference", "bench", "tests", "frontend/src"]
SUFFIXES = {".py", ".js", ".html", ".css"}

# Between the file and the name: a comma, "section", "§", and the comment marks or line break
# of a citation wrapped over two lines.
ARCHITECTURE_CITATION = re.compile(
    r'docs/ARCHITECTURE\.md(?:,|\s)[\s#*/]*(?:section\s+|§\s*)?(?:"([^"]+)"|“([^”]+)”)'
    r"|docs/ARCHITECTURE\.md\s*§\s*([^\s\"“,;:.)][^,;:.)\n]*)"
)
PROTOCOL_CITATION = re.compile(r"docs/PROTOCOL\.md,?\s*§\s*(\d+)")


def headings(doc: str) -> list[str]:
    found = []
    for line in (ROOT / "docs" / doc).read_text().splitlines():
        if m := re.match(r"#+\s+(.+)", line):
            found.append(m[1].strip())
        elif m := re.match(r"(?:[-*]\s+)?\*\*(.+?)\*\*", line):
            found.append(m[1].strip())
    return found


def names(heading: str, cited: str) -> bool:
    return heading == cited or (
        heading.startswith(cited) and not heading[len(cited)].isalnum()
    )


def citations(pattern: re.Pattern) -> list[tuple[str, str]]:
    found = []
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in SUFFIXES or "node_modules" in path.parts or path == HERE:
                continue
            text = path.read_text(errors="replace")
            for m in pattern.finditer(text):
                cited = next(group for group in m.groups() if group)
                line = text.count("\n", 0, m.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", " ".join(cited.split())))
    return found


def test_it_finds_the_citations_it_checks():
    # The patterns below would pass vacuously if they stopped matching how code cites.
    assert len(citations(ARCHITECTURE_CITATION)) > 30
    assert len(citations(PROTOCOL_CITATION)) > 5


@pytest.mark.parametrize(
    "where, cited", citations(ARCHITECTURE_CITATION), ids=lambda value: value
)
def test_it_cites_only_headings_that_architecture_has(where, cited):
    known = headings("ARCHITECTURE.md")
    assert any(names(heading, cited) for heading in known), (
        f"{where} cites docs/ARCHITECTURE.md, “{cited}”, which is no heading there"
    )


@pytest.mark.parametrize("where, number", citations(PROTOCOL_CITATION), ids=lambda value: value)
def test_it_cites_only_numbered_sections_that_protocol_has(where, number):
    numbers = {m[1] for h in headings("PROTOCOL.md") if (m := re.match(r"(\d+)\.", h))}
    assert number in numbers, f"{where} cites docs/PROTOCOL.md §{number}, which it does not have"


def test_it_takes_a_heading_that_goes_on_after_the_cited_words_but_not_a_longer_word():
    assert names("Celery mode (INFERENCE_MODE=celery): GPU workers", "Celery mode")
    assert names("Failures: what the user sees, what is saved", "Failures")
    assert not names("Celeryish", "Celery")
    assert not names("HTTP APIs", "Wire protocol")


# --- docs/ARCHITECTURE.md, "Modules by folder" ---------------------------------------------------
PACKAGES = ["chatsite", "inference"]
DJANGO_OWN = {"__init__.py", "apps.py"}


def modules_on_disk() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name not in DJANGO_OWN and "migrations" not in path.parts
    }


def modules_listed() -> list[str]:
    """`folder` + each backticked name in the first column of the table under its heading."""
    listed, folder = [], None
    for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text().splitlines():
        if m := re.match(r"#### `([^`]+/)`", line):
            folder = m[1]
        elif line.startswith("#"):
            folder = None
        elif folder and line.startswith("| `"):
            first_column = line.split("|")[1]
            listed += [folder + name for name in re.findall(r"`([^`]+)`", first_column)]
    return listed


def test_it_lists_every_module_by_folder_in_the_parts_table():
    on_disk, listed = modules_on_disk(), modules_listed()
    unlisted = {path for path in on_disk if not any(fnmatch(path, entry) for entry in listed)}
    stale = {entry for entry in listed if not any(fnmatch(path, entry) for path in on_disk)}

    assert not unlisted, f"add a row to docs/ARCHITECTURE.md, Modules by folder: {sorted(unlisted)}"
    assert not stale, f"docs/ARCHITECTURE.md lists modules that do not exist: {sorted(stale)}"
