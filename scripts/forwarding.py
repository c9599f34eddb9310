"""Runs the campaign drivers' commands one at a time, passing SIGTERM / SIGINT on to each.

Why a module of its own: ``scripts/campaign.py`` (Table 1) and ``scripts/rl_campaign.py`` (RL)
drive long trainings through ``run.sh`` the same way, and a stop must reach the Python
process that bash started, which then saves its checkpoint before the driver exits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time


class ForwardingRunner:
    """Runs commands one at a time, each in its own process group, and passes SIGTERM /
    SIGINT on to the whole group: ``run.sh`` runs Python as a child of bash, and bash would
    die at once on SIGTERM while the training run still saves. After a signal it waits until
    every process of the group has ended, so the driver exits after the checkpoint is
    written; ``stopped`` says a signal arrived.

    Example::

        runner = ForwardingRunner()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, runner.handle)
        status = runner(["./run.sh", "miniimagenet_1shot"], "logs")   # 143 after a SIGTERM
    """

    def __init__(self, poll_seconds: float = 60.0):
        self.child = None
        self.stopped = None
        self.poll_seconds = poll_seconds

    def __call__(self, command: list, logroot: str, interrupt_when=None) -> int:
        """Runs ``command`` to its end; ``interrupt_when()``, asked every ``poll_seconds``
        while it runs, may end it early with SIGTERM (the driver's own pause, not a stop)."""
        if self.stopped is not None:
            return 128 + self.stopped
        # its own process group, not its own session: Linux schedules a session as one
        # group (autogroup), and a new one would not keep the driver's nice value
        self.child = subprocess.Popen(command, env=dict(os.environ, LOGROOT=logroot),
                                      process_group=0)
        try:
            while True:
                try:
                    code = self.child.wait(timeout=self.poll_seconds if interrupt_when
                                           else None)
                    break
                except subprocess.TimeoutExpired:
                    if self.stopped is None and interrupt_when():
                        os.killpg(self.child.pid, signal.SIGTERM)
                        code = self.child.wait()
                        _wait_for_group(self.child.pid)
                        break
            if self.stopped is not None:
                _wait_for_group(self.child.pid)
            return 128 - code if code < 0 else code
        finally:
            self.child = None

    def handle(self, signum, _frame):
        self.stopped = signum
        if self.child is not None:
            try:
                os.killpg(self.child.pid, signum)
            except ProcessLookupError:
                pass


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is left in process group ``pgid``."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _wait_for_group(pgid: int, timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
