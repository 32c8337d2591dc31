"""Give memory that was freed back to the system between the steps of a large job.

Reading 10^7 log rows with pyarrow and building splits from them frees hundreds of MB of
temporaries. The allocators keep much of it: Arrow's pool (mimalloc) holds freed chunk
buffers, and glibc keeps freed heap pages. Nothing reuses them for long, so the process's
resident memory stays that much higher through training. Calling this after such a step
returns them; it costs milliseconds and changes no result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_libc = None


def give_back_memory() -> None:
    """Return freed pages to the system: Arrow's pool (if pyarrow is loaded), then glibc's."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim():
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    return getattr(_libc, "malloc_trim", None) if _libc else None  # absent on musl
