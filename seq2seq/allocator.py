"""The memory allocator of a training process: tcmalloc where the system has it.

glibc's malloc raises its mmap threshold with every large block freed; after the first steps a
training step's activations come from a heap that fragments as nearly every batch has a new shape,
so a bf16 run's resident memory crept from 1.25 GB at step 100 to 1.76 GB by step 450 while about
440 MiB were in use. tcmalloc keeps pools per size: the same run levelled off at 1,087 MiB from step
100, and trained 1.2x faster (docs/benchmarks.md). The allocator decides no arithmetic: the model's
bytes are the same. A process cannot change its allocator once started, so the training commands
start themselves again with tcmalloc preloaded; `SEQ2SEQ_ALLOCATOR=system` keeps the system's.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping

OPT_OUT = "SEQ2SEQ_ALLOCATOR"  # "system": no tcmalloc


def loaded_allocator() -> str:
    """"tcmalloc" where this process runs on it, else "system" (read from /proc, so Linux only)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return "tcmalloc" if "libtcmalloc" in maps.read() else "system"
    except OSError:
        return "system"


def tcmalloc_environment(environment: Mapping[str, str]) -> dict[str, str] | None:
    """`environment` with tcmalloc added to LD_PRELOAD; None where it is there already, where the user
    opted out, or where the system has no tcmalloc (Debian and Ubuntu: libtcmalloc-minimal4)."""
    preloaded = environment.get("LD_PRELOAD", "")
    if sys.platform != "linux" or environment.get(OPT_OUT) == "system" or "libtcmalloc" in preloaded:
        return None
    library = ctypes.util.find_library("tcmalloc_minimal")
    if library is None:
        return None
    return {**environment, "LD_PRELOAD": f"{library} {preloaded}".strip()}


def restart_with_tcmalloc() -> None:
    """Start this `seq2seq` command again with tcmalloc preloaded, unless it runs on it already or
    `tcmalloc_environment` says no; returns only when it does not restart."""
    environment = tcmalloc_environment(os.environ)
    if environment is None or loaded_allocator() == "tcmalloc":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "seq2seq", *sys.argv[1:]], environment)
