"""Shared fixtures: small, seeded configurations that run in seconds on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch

from attacks.runner import one_thread
from fednas.config import parse_config


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _adra_cache(tmp_path_factory):
    """The learned inverse's cache (pairs, networks) in a folder of this test session, never the
    user's own: runs started by tests (Flower's processes too) inherit the variable."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDNAS_CACHE", str(tmp_path_factory.mktemp("fednas-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _one_thread():
    """Every model in the suite is tiny: one intra-op thread. On a shared 2-core machine the
    default (one per core) mostly waits, and several times slower."""
    with one_thread():
        yield


@pytest.fixture
def tiny_cfg():
    """Digits, a 4-node dag, 2 local steps: a whole client round in well under a second."""
    return parse_config({"dag-nodes": 4, "channels": 4, "local-steps": 2, "batch-size": 8, "alpha-batch-size": 4,
                         "max-samples": 400})


@pytest.fixture
def server_identity():
    """Messages built outside a Flower runtime need the sender's identity (the SuperLink's)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


# first under pytest-xdist (--dist loadfile --no-loadscope-reorder hands out whole files in
# the order their first test comes): the longest end-to-end files, then every file with a
# slow test, so that neither worker is left with a long one at the end while the other idles
LONGEST_FIRST = ("tests.simulations.test_tables_run", "tests.server.test_server_app", "tests.simulations.test_deployment")


def pytest_collection_modifyitems(config, items):
    """Slow tests first, the files of ``LONGEST_FIRST`` before the rest (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: (it.get_closest_marker("slow") is None, rank.get(it.module.__name__, len(rank))))
