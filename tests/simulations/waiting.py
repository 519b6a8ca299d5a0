"""Polling helpers of the process tests (test_interrupt, test_processes)."""

import time

import psutil

from simulations.processes import alive


def wait_for(predicate, timeout: float, what: str) -> None:
    """Return once ``predicate()`` is true; an AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    """Whether the process ``pid`` exists and is not a zombie (``simulations.processes.alive`` by pid)."""
    try:
        return bool(alive([psutil.Process(pid)]))
    except psutil.NoSuchProcess:
        return False
