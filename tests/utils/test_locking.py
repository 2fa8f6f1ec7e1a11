import subprocess
import sys
import time

from aimc_lsh.utils import exclusive_lock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)  # what exclusive_lock takes (plain here: no package import to wait for)
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
open(sys.argv[2] + ".done", "w").close()  # the last thing before the lock is released
"""


def _hold_in_another_process(lock, ready, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(ready), str(seconds)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder did not take the lock"
        time.sleep(0.02)
    return holder


def test_a_second_process_waits_until_the_holder_releases(tmp_path):
    lock, ready = tmp_path / "sub" / "job.lock", tmp_path / "ready"
    lock.parent.mkdir()
    holder = _hold_in_another_process(lock, ready, 1.0)
    waited = []
    with exclusive_lock(lock, on_wait=waited.append) as held:
        assert (tmp_path / "ready.done").exists()  # the holder had finished before this block could start
    assert waited == [lock] and held == lock
    assert holder.wait(60) == 0


def test_a_free_lock_is_taken_at_once_and_a_killed_holder_frees_it(tmp_path):
    lock = tmp_path / "new" / "job.lock"  # the folder is created
    waited = []
    with exclusive_lock(lock, on_wait=waited.append):
        assert lock.is_file()
    assert waited == []
    holder = _hold_in_another_process(lock, tmp_path / "ready", 600.0)
    holder.kill()
    holder.wait()
    with exclusive_lock(lock, on_wait=waited.append):
        pass
    assert waited == []  # a killed process leaves nothing taken (one is also fine to reuse)
