"""Keep a SuperNode running: restart flower-supernode with backoff whenever it exits, until stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

FIRST_WAIT_S = 2.0
MAX_WAIT_S = 60.0
# A run this long means the SuperLink accepted the node: the next failure starts the backoff afresh.
HEALTHY_S = 120.0


def supervise(command: list[str], env: dict[str, str], *, first_wait: float = FIRST_WAIT_S,
              max_wait: float = MAX_WAIT_S, healthy_after: float = HEALTHY_S) -> int:
    """Run `command` again after each exit (waits doubling up to `max_wait`); SIGTERM/SIGINT end both.

    Flower's SuperNode exits when the SuperLink refuses it: a key not (yet) registered, or the same
    node still marked online shortly after a crash. Either clears with time, so the site retries.
    """
    stopping = {"signal": 0}
    child: dict[str, subprocess.Popen[bytes] | None] = {"proc": None}

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping["signal"] = signum
        if child["proc"] is not None and child["proc"].poll() is None:
            child["proc"].send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait, attempt = first_wait, 0
    while True:
        attempt += 1
        started = time.monotonic()
        child["proc"] = subprocess.Popen(command, env=env)
        rc = child["proc"].wait()
        if stopping["signal"]:
            return rc
        if time.monotonic() - started > healthy_after:
            wait = first_wait
        print(f"corolla deploy supernode: {command[0]} exited with {rc} (attempt {attempt}); "
              f"starting it again in {wait:.0f} s", file=sys.stderr, flush=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not stopping["signal"]:
            time.sleep(0.2)
        if stopping["signal"]:
            return rc
        wait = min(wait * 2, max_wait)
