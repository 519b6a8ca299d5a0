import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tinynas"


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch):
    """The example app's package importable, as it is from its own folder."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in [m for m in sys.modules if m == "tinynas" or m.startswith("tinynas.")]:
        sys.modules.pop(name)
