"""Finding and stopping what a launcher started: children in sessions of their own, orphans,
tagged processes; and nothing else."""

import os
import signal
import subprocess
import sys
import textwrap

import psutil

from simulations.processes import (TAG_ENV, Launched, alive, new_tag, run_processes, session_members, still_running,
                                   terminate)
from tests.simulations.waiting import pid_alive, wait_for


SPAWNER = textwrap.dedent("""
    # parent -> child (its own session, as the SuperExec) -> grandchild; the parent then waits
    import subprocess, sys, time
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(120)
""")


def test_a_runs_processes_are_found_by_tree_and_session_even_once_orphaned():
    parent = subprocess.Popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        wait_for(lambda: len(psutil.Process(child).children()) == 1, 30, "the grandchild")
        grandchild = psutil.Process(child).children()[0].pid
        found = {p.pid for p in run_processes([parent.pid])}
        assert found == {parent.pid, child, grandchild}
        parent.kill()  # the child and grandchild are orphaned, their session remains
        parent.wait()
        wait_for(lambda: psutil.Process(child).ppid() != parent.pid, 10, "re-parenting")
        procs = run_processes([child])
        assert {p.pid for p in procs} == {child, grandchild}
        assert terminate(procs, grace=5) == [] and alive(procs) == []
    finally:
        if parent.poll() is None:
            parent.kill()


# a process started in a session of its own by a parent that exits at once: nothing but the
# tag in its environment links it to whoever started the parent
_DETACHER = textwrap.dedent("""
    import subprocess, sys
    # its own stdio: holding the caller's pipe would keep subprocess.run waiting until it died
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(p.pid, flush=True)
""")


def test_a_tagged_process_is_found_by_its_tag_alone_and_an_untagged_one_is_not():
    tag = new_tag()
    tagged = subprocess.run([sys.executable, "-c", _DETACHER], env={**os.environ, TAG_ENV: tag},
                            capture_output=True, text=True, check=True)
    untagged = subprocess.run([sys.executable, "-c", _DETACHER], env={**os.environ, TAG_ENV: new_tag()},
                              capture_output=True, text=True, check=True)
    pid, other = int(tagged.stdout), int(untagged.stdout)
    try:
        assert {p.pid for p in run_processes([], tag)} == {pid}
        assert terminate(run_processes([], tag), grace=5) == [] and not pid_alive(pid) and pid_alive(other)
    finally:
        for p in (pid, other):
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)


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
        # no tag in its environment: the orphan must be found from what was seen of it
        self.procs.append(subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True,
                                           start_new_session=True))
        self.child, self.grandchild = map(int, self.procs[0].stdout.readline().split())
        self.note_processes()
        return self


def test_children_in_their_own_session_and_orphans_are_stopped_and_nothing_else():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # ours, not the tree's
    try:
        with Tree() as tree:
            pids = {tree.procs[0].pid, tree.child, tree.grandchild}
            assert pids <= {p.pid for p in run_processes([tree.procs[0].pid])} and pids <= set(tree.seen)
            assert os.getsid(tree.child) == tree.child != os.getsid(tree.procs[0].pid)
            os.kill(tree.child, signal.SIGKILL)  # the grandchild is orphaned: no parent links it to the tree now
            # reaped, not only dead: a zombie child is still the root's child and still leads its session
            wait_for(lambda: not psutil.pid_exists(tree.child), 10, "the child to be reaped")
            assert pid_alive(tree.grandchild)
            assert tree.grandchild not in {p.pid for p in run_processes(tree.procs)}
        assert still_running(tree.seen) == [] and not any(pid_alive(p) for p in pids)
        assert tree.procs[0].returncode is not None  # reaped: no zombie of ours left
        assert bystander.poll() is None  # never touched
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_superlink_leaves_a_listener_that_is_not_a_superlink_alone(capsys):
    from simulations.__main__ import main
    from simulations.launcher import free_port

    port = free_port()
    listener = subprocess.Popen([sys.executable, "-c", f"import socket, time; s = socket.socket(); "
                                 f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(120)"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "up"
        assert main(["stop-superlink", "--port", str(port)]) == 1
        assert listener.poll() is None and "no SuperLink of yours" in capsys.readouterr().out
    finally:
        listener.kill()
        listener.wait()
    assert main(["stop-superlink", "--port", str(port)]) == 1  # nothing listens now


def test_what_an_exited_session_leader_left_is_found_by_its_session_and_tag():
    tag, other = new_tag(), new_tag()
    code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); sys.exit(1)"
    leader = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, TAG_ENV: tag}, start_new_session=True)
    untagged = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, TAG_ENV: other},
                                start_new_session=True)
    assert leader.wait(timeout=30) == 1 and untagged.wait(timeout=30) == 1
    try:
        wait_for(lambda: session_members(leader.pid, tag), 30, "the leader's child")
        left = session_members(leader.pid, tag)
        assert len(left) == 1 and os.getsid(left[0].pid) == leader.pid
        assert session_members(leader.pid, other) == []  # another tag, even in that session, is not taken
        assert terminate(left, grace=5) == [] and session_members(leader.pid, tag) == []
    finally:
        terminate(session_members(untagged.pid, other), grace=5)
