"""``python -m fednas.configdoc``: rewrite the config table of docs/configuration.md from the schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fednas.config import markdown_table
from fednas.rundir import atomic_write_text

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def table_in(text: str) -> str | None:
    """The text between the markers of ``text`` (None without them)."""
    m = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, re.S)
    return m.group(1) if m else None


def update(path: Path) -> bool:
    """Replace the text between the markers; return whether the file changed."""
    text = path.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: markers {START} ... {END} not found")
    new = pattern.sub(lambda _: f"{START}\n{markdown_table()}\n{END}", text)
    if new != text:
        atomic_write_text(path, new)
    return new != text


if __name__ == "__main__":
    page = Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE
    print(f"{page}: {'updated' if update(page) else 'already up to date'}")
