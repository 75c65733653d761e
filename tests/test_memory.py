"""REUSE_FREED_MEMORY: activation-sized buffers come back from the heap, not from new pages."""
from __future__ import annotations

import platform
import resource
import subprocess
import sys
import textwrap

import pytest

# a render's pattern in small: several activation-sized buffers (4-28 MB) made, used and freed,
# again and again; prints the page faults of five repeats after a first one
ROUNDS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "reuse":
        from service.memory import reuse_freed_memory
        assert reuse_freed_memory() and reuse_freed_memory()  # once per process, idempotent
    def render():
        buffers = [np.ones(n * 1024 * 1024, dtype=np.uint8) for n in (4, 12, 20, 28, 8, 16)]
        del buffers
    render()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        render()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    # a fresh process each: the allocator's state is per process
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_activation_sized_buffers_are_reused_without_page_faults() -> None:
    pages = 88 * 1024 * 1024 // resource.getpagesize()  # one render's buffers
    assert _faults("default") > pages // 4   # glibc's own thresholds hand much of it back
    assert _faults("reuse") < pages // 100   # kept: the repeats touch no new page
