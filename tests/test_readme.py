"""The README is a front page: short, and its test command is what CI runs."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if line.startswith("python3 -m venv")][0]
    assert command in README.read_text()


def test_readme_is_a_front_page():
    # the manual lives in docs/ (tests/test_docs.py builds it); the README stays a front page
    assert len(README.read_text().splitlines()) <= 200
