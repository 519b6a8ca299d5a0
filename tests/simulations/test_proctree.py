"""Stopping what a launcher started: its children in sessions of their own, and orphans."""

import os
import signal
import subprocess
import sys
import time

import psutil

from simulations.proctree import Launched, family, still_running

# a parent that starts a child in a session of its own (as Flower's SuperLink starts its
# SuperExec), which starts a grandchild; the parent prints the child's and grandchild's pids
_TREE = r"""
import subprocess, sys, time
code = "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); print(g.pid, flush=True); time.sleep(120)"
child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
child.wait()  # reaps the child when it dies: its own child is then linked to nothing we started
time.sleep(120)
"""


class Tree(Launched):
    what = "test tree"

    def start(self):
        self.procs.append(subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True,
                                           start_new_session=True))
        self.child, self.grandchild = map(int, self.procs[0].stdout.readline().split())
        self.note_processes()
        return self


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_children_in_their_own_session_and_orphans_are_stopped_and_nothing_else():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # ours, not the tree's
    try:
        with Tree() as tree:
            pids = {tree.procs[0].pid, tree.child, tree.grandchild}
            assert pids <= {p.pid for p in family([tree.procs[0].pid])} and pids <= set(tree.seen)
            assert os.getsid(tree.child) == tree.child != os.getsid(tree.procs[0].pid)
            os.kill(tree.child, signal.SIGKILL)  # the grandchild is orphaned: no parent links it to the tree now
            for _ in range(100):
                if not _alive(tree.child):
                    break
                time.sleep(0.1)
            assert _alive(tree.grandchild)
        assert still_running(tree.seen) == [] and not any(_alive(p) for p in pids)
        assert bystander.poll() is None  # never touched
    finally:
        bystander.kill()
        bystander.wait()
