"""One job's process: `python -m tunesmith.service.runner JOB_DIR`.

It holds `JOB_DIR/worker.lock` (an exclusive lock, released by the kernel however the process ends,
so a lock that cannot be taken means the job's process is alive: a second runner of the same job
exits at once, and a restarted service knows the job still runs), records its pid and start time in
`worker.json`, runs the tunesmith CLI command of `job.json` in this process and writes `exit.json`
({"rc": ...}) when it ends. SIGTERM stops training the way Ctrl-C does (exit 130).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
from pathlib import Path

ALREADY_RUNNING = 75


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def lock_held(job_dir: Path) -> bool:
    """Whether a runner holds the job's lock (its process is alive)."""
    path = Path(job_dir) / "worker.lock"
    if not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run(job_dir: Path) -> int:
    lock = open(job_dir / "worker.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("error: this job already runs in another process", file=sys.stderr)
        return ALREADY_RUNNING
    (job_dir / "exit.json").unlink(missing_ok=True)
    write_json(job_dir / "worker.json", {"pid": os.getpid(), "start_time": process_start_time(os.getpid())})
    signal.signal(signal.SIGTERM, _sigterm)
    argv = json.loads((job_dir / "job.json").read_text())["argv"]
    from ..cli import main

    try:
        rc = main(argv)
    except KeyboardInterrupt:
        rc = 130
    except BaseException as e:  # a crash: its traceback is the log's last lines
        import traceback

        traceback.print_exc()
        rc = 1 if not isinstance(e, SystemExit) else int(e.code or 0)
    sys.stdout.flush()
    sys.stderr.flush()
    write_json(job_dir / "exit.json", {"rc": rc})
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
