"""The project's own documentation: the methods page is current, every link between pages resolves, and
nothing cites a document outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def test_the_methods_page_is_generated_from_the_method_configs():
    from unlearn_bench.report.methods_page import page

    assert (DOCS / "methods.md").read_text() == page(), \
        "docs/methods.md is stale: python -m unlearn_bench.report.methods_page > docs/methods.md"
    for name in ("salun", "scrub", "ssd", "rum"):
        assert f"## `{name}`" in page()


def test_every_page_is_linked_and_every_relative_link_resolves():
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
    assert "](docs/README.md)" in (ROOT / "README.md").read_text()
    for source in [*DOCS.glob("*.md"), ROOT / "README.md", *ROOT.glob("results/*/README.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", source.read_text()):
            if "://" not in target:
                assert (source.parent / target).exists(), f"{source.relative_to(ROOT)} links a missing {target}"


def test_the_project_cites_no_document_outside_it():
    for path in tracked("*.py", "*.md", "*.yaml", "*.toml", "Makefile", "*.sh", "*.html"):
        text = path.read_text(errors="ignore")
        for needle in ("SPEC" + " §", "SPEC" + ".md", "STYLE" + ".md"):
            assert needle not in text, f"{path.relative_to(ROOT)} cites {needle}"
