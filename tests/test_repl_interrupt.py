"""Ctrl-C in `relay repl` interrupts the running entry and returns to the prompt, definitions kept."""

from __future__ import annotations

import os
import pty
import select
import sys
import time

from conftest import ROOT


def read(fd: int, seconds: float, until: str = "relay> ") -> str:
    """What the terminal shows, up to the next prompt (or `seconds`)."""
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end and until not in out.decode(errors="replace"):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out.decode(errors="replace")


def test_ctrl_c_interrupts_the_entry_and_keeps_definitions() -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the REPL on a terminal, as a user runs it
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "relay_lang", "repl"])
    try:
        read(fd, 30)
        os.write(fd, b"let x = 41\n")
        read(fd, 20)
        os.write(fd, b"print(\"loop\" + \"ing\"); while true { }\n")
        read(fd, 20, until="looping")  # the entry runs (not the echo of its text)
        os.write(fd, b"\x03")
        interrupted = read(fd, 30, until="relay> ")
        os.write(fd, b"x + 1\n")
        after = read(fd, 20)
        os.write(fd, b"\x03")  # at the prompt: drops the line being typed, does not quit
        read(fd, 20, until="\nrelay> ")  # the new prompt on a new line (readline may redraw the old one first)
        os.write(fd, b"x\n")
        kept = read(fd, 20)
        if "41" not in kept:  # under heavy load readline can take the next line for the interrupted one
            os.write(fd, b"x\n")
            kept += read(fd, 20)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert "interrupted (Ctrl-C)" in interrupted and "relay> " in interrupted
    assert "42" in after
    assert "41" in kept
