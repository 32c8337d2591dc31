"""Latency, throughput, scale and quality benchmarks, importable as a package from the
repository root: ``python -m benchmarks.quality``, ``from benchmarks._common import table``.
Each module also runs as a script (``python benchmarks/quality.py``); a two-line bootstrap at its
top then puts the repository root on ``sys.path``, so both ways import the same modules.
"""

import sys
from pathlib import Path

try:  # an installed genrec-lite wins
    import genrec_lite  # noqa: F401
except ImportError:  # a plain checkout: the package is in python/, next to benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
