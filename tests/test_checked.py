"""The compiled tier's memory-safety tests again, under CPython's debug allocator.

`PYTHONMALLOC=debug` fills freed memory with a pattern, guards every block
and checks them on free: a compiled loop reading a freed list, a double
decref or an overrun becomes a wrong result or a fatal error here, even when
the plain run happens to get away with it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_differential_and_safety_tests_pass_under_the_debug_allocator() -> None:
    env = dict(os.environ, PYTHONMALLOC="debug", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_differential.py",
         "tests/test_safety.py", "tests/test_affine_bounds.py", "-k",
         "agree or for_in or temporaries or rebinds or leak or affine or resizes or stencil or names or nested"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
