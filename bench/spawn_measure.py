"""Run one command and print its wall time, CPU time and peak RSS as JSON.

``python -I -S bench/spawn_measure.py OUT ERR -- CMD ARGS...``: the command's
stdout and stderr go to the files OUT and ERR. A small process of its own, so
that the command's peak RSS is its own: Linux carries the high-water mark of a
process's memory across fork and exec, and a benchmark that forks fleetctl
from a big process (an API server in a thread) would report its own RSS.
"""

import json
import os
import sys
import time


def main() -> None:
    out, err, sep, *cmd = sys.argv[1:]
    assert sep == "--" and cmd, "usage: spawn_measure.py OUT ERR -- CMD..."
    with open(out, "wb") as o, open(err, "wb") as e:
        started = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, o.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, e.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                      "maxrss_kib": usage.ru_maxrss,
                      "code": os.waitstatus_to_exitcode(status)}))


main()
