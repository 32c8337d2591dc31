#!/usr/bin/env python3
"""Regenerate python/genrec_lite/_core.pyi, the type stubs of the C++ extension.

Runs nanobind's stubgen on the built extension genrec_lite._core (imported from python/ of this
checkout, so build it first: /work/bin/devbuild, or cmake with -DGENREC_BUILD_PYTHON=ON and the
_core*.so copied into python/genrec_lite/). Commit the result whenever the bindings change.

  python tools/gen_stubs.py            # rewrite python/genrec_lite/_core.pyi
  python tools/gen_stubs.py --check    # exit 1 (and show a diff) when the committed stub is stale

Exit status: 0 done / up to date, 1 stale stub (--check), 2 stubgen or the extension unavailable.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "genrec_lite"
STUB = PACKAGE / "_core.pyi"
MODULE = "genrec_lite._core"


def generate(out: Path) -> subprocess.CompletedProcess:
    """Run stubgen on genrec_lite._core (from python/ of this checkout) into `out`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "nanobind.stubgen", "-q", "-m", MODULE, "-o", str(out)],
                          env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See docs/development.md.")
    parser.add_argument("--check", action="store_true",
                        help="compare the committed stub with a fresh one instead of rewriting it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_core.pyi"
        res = generate(fresh)
        if res.returncode != 0 or not fresh.is_file():
            print(f"stubgen failed on {MODULE} (is the extension built and nanobind installed?)\n"
                  f"{res.stdout}{res.stderr}", file=sys.stderr)
            return 2
        new = fresh.read_text()
    old = STUB.read_text() if STUB.is_file() else ""
    rel = STUB.relative_to(ROOT)
    if args.check:
        if new == old:
            print(f"{rel} is up to date")
            return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                   f"{rel} (committed)", f"{rel} (stubgen)"))
        print(f"\n{rel} is stale: run python tools/gen_stubs.py", file=sys.stderr)
        return 1
    if new == old:
        print(f"{rel} unchanged")
    else:
        STUB.write_text(new)
        print(f"wrote {rel} ({len(new.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
