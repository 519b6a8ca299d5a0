"""``python -m fednas.readme``: rewrite README.md's config table from the schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fednas.config import markdown_table
from fednas.rundir import atomic_write_text

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


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
    readme = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "README.md"
    print(f"{readme}: {'updated' if update(readme) else 'already up to date'}")
