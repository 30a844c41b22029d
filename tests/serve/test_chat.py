"""`tunesmith chat` in a pseudo-terminal and through a pipe."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time

CMD = [sys.executable, "-m", "tunesmith.cli", "chat"]


def _read_until(fd: int, marker: bytes, buf: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while buf.count(marker) == 0:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {bytes(buf)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            assert chunk, f"terminal closed before {marker!r}: {bytes(buf)!r}"
            buf += chunk


def test_chat_in_a_terminal(tiny):
    master, slave = os.openpty()
    proc = subprocess.Popen([*CMD, str(tiny["a1"]), "--max-new-tokens", "4", "--temperature", "0"],
                            stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, close_fds=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    os.close(slave)
    buf = bytearray()
    try:
        _read_until(master, b"you> ", buf)
        os.write(master, b"hello there\n")
        _read_until(master, b"ad1> ", buf)
        del buf[:buf.index(b"ad1> ")]
        _read_until(master, b"you> ", buf)  # the answer streamed, then the next prompt
        os.write(master, b"/exit\n")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_chat_through_a_pipe(tiny):
    out = subprocess.run([*CMD, str(tiny["base"]), "--adapter", str(tiny["a2"]), "--max-new-tokens", "3",
                          "--system", "be brief"],
                         input="hi\n/reset\n/system short\nhello\n", capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ad2> ") == 2 and "(conversation reset)" in out.stdout  # EOF exits


def test_chat_compare_shows_the_base_answer_beside_the_fine_tune(tiny):
    out = subprocess.run([*CMD, str(tiny["base"]), "--adapter", str(tiny["a2"]), "--compare", str(tiny["base"]),
                          "--max-new-tokens", "4", "--temperature", "0"],
                         input="hi\nhello\n", capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    from tunesmith.serve.engine import served_name

    name = served_name(tiny["base"])   # a run's model/ answers to the run's name
    assert out.stdout.count("ad2> ") == 2 and out.stdout.count(f"{name}> ") == 2, out.stdout
    ours = [part.split("\n", 1)[0] for part in out.stdout.split("ad2> ")[1:]]
    theirs = [part.split("\n", 1)[0] for part in out.stdout.split(f"{name}> ")[1:]]
    assert ours != theirs, out.stdout   # the adapter changes the answers (greedy on both)
