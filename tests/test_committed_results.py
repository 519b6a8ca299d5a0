"""Committed results name no folder of the machine that made them."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
TEXT = {".json", ".csv", ".md", ".log", ".txt"}
# a path under a machine's top folders, wherever it stands (after a quote, a space, "=", "…")
MACHINE = re.compile(r"(?<![\w-])/(?:tmp|work|home|root|Users|mnt|var|private|scratch|srv|opt|media)/|[A-Za-z]:\\\\")


def _hits(text: str) -> list[str]:
    found = [m.group(0) for m in MACHINE.finditer(text)]
    return found + ([str(ROOT)] if str(ROOT) in text else [])


def test_the_pattern_finds_machine_paths_and_leaves_prose_alone():
    for bad in ('"results": "/tmp/res"', "--costs-from /work/wt/x/outputs", "…/tmp/tcost", "(/home/u/p)",
                "C:\\\\Users\\\\x", f"in {ROOT}/outputs"):
        assert _hits(bad), bad
    for fine in ("D^α / D^θ, 1/3, TP/FP", "https://example.org/tmp/x", "outputs/tables-cpu", "…/tcost",
                 "docs/results/tmp-notes.md", "s/capture"):
        assert not _hits(fine), fine


def _committed() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*") if p.is_file() and p.suffix in TEXT)


@pytest.mark.parametrize("path", _committed(), ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_no_committed_result_holds_an_absolute_machine_path(path):
    text = path.read_text(encoding="utf-8")
    hits = _hits(text)
    assert not hits, f"{path.relative_to(ROOT)} names a machine folder: {hits[:5]} (publish through portable paths)"
    if path.suffix == ".json":
        json.loads(text)  # still a valid record
