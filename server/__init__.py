"""Flower ServerApp, strategy set-up and server-side wrappers."""

import logging

_PACKAGES = ("fednas", "server", "clients", "attacks")


def route_logs_to_flower(level: int = logging.INFO) -> None:
    """Send this project's library logs through Flower's handlers (the run's log stream)."""
    handlers = logging.getLogger("flwr").handlers
    for name in _PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.propagate = False
