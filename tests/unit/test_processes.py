import os
import subprocess
import sys

from cloche.processes import pid_alive


def test_this_process_is_alive_and_a_reaped_child_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert pid_alive(os.getpid())
    assert not pid_alive(child.pid)


def test_no_pid_is_never_alive() -> None:
    assert not pid_alive(0) and not pid_alive(-1)
