"""The manual in docs/ builds as a site with no broken link or anchor, README's links included,
and its config table is the schema's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fednas.config import markdown_table
from fednas.configdoc import PAGE, table_in

ROOT = Path(__file__).resolve().parents[1]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict``: every warning (a missing page, anchor or nav entry) fails it."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path, readme: bool = False, extra: str = "") -> Path:
    """A copy of mkdocs.yml and docs/ under tmp_path; with ``readme``, the README as a page of
    it (its ``docs/`` prefixes dropped, so its links resolve as they do from the repository root)."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    if readme:
        text = (ROOT / "README.md").read_text().replace("](docs/", "](")
        (docs / "readme-front-page.md").write_text(text)
        config["nav"].append({"README": "readme-front-page.md"})
    if extra:
        (docs / "index.md").write_text((docs / "index.md").read_text() + extra)
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_site_builds_strictly(tmp_path):
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "usage.html").exists() and (tmp_path / "site" / "results" / "tables.html").exists()


def test_the_readme_links_resolve_in_the_site(tmp_path):
    done = _build(_copy(tmp_path, readme=True), tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "img" / "quickstart-client-0.png").exists()


def test_a_broken_anchor_or_page_fails_the_build(tmp_path):
    # the check above can fail: mkdocs' strict mode does look at anchors and at pages
    extra = "\n[a](adra.md#no-such-heading) [b](no-such-page.md)\n"
    done = _build(_copy(tmp_path, extra=extra), tmp_path / "site")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "#no-such-heading" in out and "no-such-page.md" in out


def test_every_page_is_in_the_nav():
    def pages(nav):
        for item in nav:
            for value in (item.values() if isinstance(item, dict) else [item]):
                yield from (pages(value) if isinstance(value, list) else [value])

    listed = set(pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert listed == on_disk


def test_the_config_table_matches_the_schema():
    table = table_in(PAGE.read_text())
    assert table is not None, f"{PAGE} lacks the config-table markers"
    assert table.strip() == markdown_table().strip(), "regenerate with: python -m fednas.configdoc"
