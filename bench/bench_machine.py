"""What machine a benchmark ran on: printed with every table."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def describe() -> str:
    return (f"{cpu_name()}, {os.cpu_count()} cores, {platform.machine()}, "
            f"CPython {platform.python_version()}")
