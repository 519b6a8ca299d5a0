"""The README documents what the code does: its config table is the schema's."""

import re
from pathlib import Path

from fednas.config import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_table_matches_the_schema():
    text = README.read_text()
    m = re.search(r"<!-- config-table:start -->\n(.*?)<!-- config-table:end -->", text, re.S)
    assert m, "README lacks the config-table markers"
    assert m.group(1).strip() == markdown_table().strip(), "regenerate with: python -m fednas.readme"


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if line.startswith("python3 -m venv")][0]
    assert command in README.read_text()
