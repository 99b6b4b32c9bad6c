"""Run a command and write its CPU time and peak RSS (from os.wait4) to a JSON file.

    python -I -S bench/_rusage.py OUT.json CMD [ARGS...]

Why a launcher: on Linux, exec() keeps the peak RSS of the address space it replaces, and a
child spawned with vfork/posix_spawn execs inside its parent's address space. A process
started straight from the bench driver would report the driver's peak RSS if larger; started
from this small launcher it reports its own (floor: this launcher's ~10 MiB).
"""

import json
import os
import subprocess
import sys

proc = subprocess.Popen(sys.argv[2:])  # inherits stdin, stdout, stderr
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(
        {
            "user": usage.ru_utime,
            "system": usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss,
            "returncode": code,
        },
        fh,
    )
sys.exit(0)
