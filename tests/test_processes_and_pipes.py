"""A process that has exited is not a live job, even before it is reaped; a command whose reader goes away (``| head``)
still finishes and returns its own exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from distill_core.runs import pid_alive


def test_a_zombie_is_not_alive_and_a_running_process_is():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:  # killed, not reaped: a zombie
        time.sleep(0.05)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def test_check_piped_into_head_keeps_its_exit_code_and_prints_no_traceback(tiny_run, tmp_path):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    # `check` fails here (no bench): exit code 3, whether or not its reader stays for all of its output.
    # `true` exits at once without reading: every write of `check` meets a closed pipe.
    script = (f"{sys.executable} -m distill_core check {run} | true; "
              "echo ${PIPESTATUS[0]}")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "3", out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr
