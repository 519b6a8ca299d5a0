"""The in-process Grid the tests drive strategies with (it lives in ``server.inprocess``)."""

from server.inprocess import InProcessGrid, through

__all__ = ["InProcessGrid", "through"]
