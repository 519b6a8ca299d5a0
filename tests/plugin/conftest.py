import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "plugin_app"


@pytest.fixture(autouse=True)
def app_on_path(monkeypatch):
    """The outside app's package importable, as it is from its own folder."""
    monkeypatch.syspath_prepend(str(APP))
    yield
    for name in [m for m in sys.modules if m == "cellsearch" or m.startswith("cellsearch.")]:
        sys.modules.pop(name)
