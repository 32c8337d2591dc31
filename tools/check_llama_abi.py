#!/usr/bin/env python3
"""Check that the installed llama-cpp-python matches the llama.cpp C API that csrc was written for.

The C++ search calls libllama through function addresses and a `struct batch` declared in
csrc/include/genrec/llama_api.h (no llama.h at build time), so a changed signature would corrupt
memory instead of failing to compile. This tool compares, without loading a model:

  1. the runtime's own guard (genrec_lite.runtime.llama_backend.check_llama_abi: the pinned
     release LLAMA_CPP_PYTHON_VERSION and the llama_context_params fields the runtime sets);
  2. the pins: pyproject.toml's llama-cpp-python==X, LLAMA_CPP_PYTHON_VERSION and the version
     llama_api.h says it mirrors;
  3. the functions: llama_api.h's `using <name>_fn = ...` declarations against the runtime's list
     of functions it hands to C++ and against llama-cpp-python's ctypes signatures
     (argtypes / restype) of the same functions, which the loaded libllama must export;
  4. struct batch against llama-cpp-python's llama_batch, field by field (types in order).

  python tools/check_llama_abi.py            # prints one line per check; exit 0 when all agree
  python tools/check_llama_abi.py --header other/llama_api.h

Exit status: 0 all checks pass, 1 a mismatch, 2 llama-cpp-python or genrec_lite not importable.
"""

from __future__ import annotations

import argparse
import ctypes
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "include" / "genrec" / "llama_api.h"

# llama_api.h's type names -> a canonical type; pointers become "ptr(<pointee>)".
_C_TYPES = {"int32_t": "int32", "token": "int32", "pos": "int32", "seq_id": "int32",
            "int64_t": "int64", "int8_t": "int8", "uint8_t": "uint8", "float": "float32", "bool": "bool", "void": "void",
            "context": "opaque", "memory": "opaque", "batch": "struct llama_batch"}
# ctypes simple-type codes -> the same canonical names (c_int / c_int32 share 'i' on LP64).
_CTYPES_CODES = {"i": "int32", "l": "int64", "q": "int64", "b": "int8", "B": "uint8", "f": "float32",
                 "?": "bool", "P": "ptr(opaque)"}


def c_type(decl: str) -> str:
    """Canonical type of a declaration such as 'const context*', 'seq_id**' or 'int32_t'."""
    decl = decl.replace("const ", "").strip()
    stars = decl.count("*")
    base = decl.replace("*", "").strip()
    if base not in _C_TYPES:
        raise ValueError(f"llama_api.h uses type {base!r}, which this tool does not know")
    out = _C_TYPES[base]
    for _ in range(stars):
        out = f"ptr({out})"
    return out


def ctypes_type(t) -> str:
    """Canonical type of a ctypes type (None = void)."""
    if t is None:
        return "void"
    if isinstance(t, type) and issubclass(t, ctypes._Pointer):
        return f"ptr({ctypes_type(t._type_)})"
    if isinstance(t, type) and issubclass(t, ctypes.Structure):
        return f"struct {t.__name__}"
    code = getattr(t, "_type_", None)
    if isinstance(code, str) and code in _CTYPES_CODES:
        if code in "il" and ctypes.sizeof(t) not in (4, 8):
            return f"int{8 * ctypes.sizeof(t)}"
        return {4: "int32", 8: "int64"}[ctypes.sizeof(t)] if code in "il" else _CTYPES_CODES[code]
    return f"unknown {t!r}"


def same(header_t: str, lib_t: str) -> bool:
    # an opaque pointer (void*) on either side is ABI-equal to any pointer
    if "ptr(opaque)" in (header_t, lib_t):
        return header_t.startswith("ptr(") and lib_t.startswith("ptr(")
    return header_t == lib_t


def parse_header(text: str) -> tuple[str | None, dict[str, tuple[str, list[str]]], list[str]]:
    """(version it mirrors, {llama function: (return type, [argument types])}, [batch field types])."""
    version = re.search(r"llama-cpp-python \(([\d.]+)\)", text)
    functions = {}
    for name, ret, args in re.findall(r"using (\w+)_fn = ([^;(]+?)\s*\(\*\)\(([^)]*)\);", text):
        functions[f"llama_{name}"] = (c_type(ret), [c_type(a) for a in args.split(",") if a.strip()])
    body = re.search(r"struct batch \{(.*?)\};", text, re.S)
    fields = []
    if body:
        for decl in re.findall(r"^\s*([\w:]+[\s*]+)\w+;", body.group(1), re.M):
            fields.append(c_type(decl))
    return (version.group(1) if version else None), functions, fields


def run_checks(llama_cpp, header_text: str, pyproject_text: str) -> list[tuple[bool, str]]:
    """[(ok, message)] for every check; reuses the runtime's guard and function list."""
    from genrec_lite.errors import MissingDependencyError
    from genrec_lite.runtime import llama_backend as lb

    out: list[tuple[bool, str]] = []
    try:
        lb.check_llama_abi(llama_cpp)
        out.append((True, f"runtime guard: llama-cpp-python {llama_cpp.__version__} is the pinned "
                          "release and llama_context_params has the fields the runtime sets"))
    except MissingDependencyError as exc:
        out.append((False, f"runtime guard: {exc}"))

    version, functions, fields = parse_header(header_text)
    pin = re.search(r'"llama-cpp-python==([^"]+)"', pyproject_text)
    pins = {"pyproject.toml": pin.group(1) if pin else None,
            "LLAMA_CPP_PYTHON_VERSION": lb.LLAMA_CPP_PYTHON_VERSION, "llama_api.h": version}
    out.append((len(set(pins.values())) == 1 and None not in pins.values(),
                "pins: " + ", ".join(f"{k} {v}" for k, v in pins.items())))

    declared, handed = sorted(functions), sorted(lb._API_FUNCTIONS)
    out.append((declared == handed, f"function list: llama_api.h declares {len(declared)}, the "
                f"runtime hands over {len(handed)}" + ("" if declared == handed else
                f" (only in the header: {sorted(set(declared) - set(handed))}, only in the "
                f"runtime: {sorted(set(handed) - set(declared))})")))

    lib = llama_cpp.llama_cpp._lib
    for name, (ret, args) in sorted(functions.items()):
        fn = getattr(lib, name, None)
        if fn is None:
            out.append((False, f"{name}: not exported by the loaded libllama"))
            continue
        lib_ret, lib_args = ctypes_type(fn.restype), [ctypes_type(a) for a in fn.argtypes or []]
        ok = same(ret, lib_ret) and len(args) == len(lib_args) and all(map(same, args, lib_args))
        sig = f"{ret} ({', '.join(args)})"
        out.append((ok, f"{name}: {sig}" + ("" if ok else
                    f"; llama-cpp-python declares {lib_ret} ({', '.join(lib_args)})")))

    lib_fields = [ctypes_type(t) for _, t, *_ in llama_cpp.llama_batch._fields_]
    ok = len(fields) == len(lib_fields) and all(map(same, fields, lib_fields))
    out.append((ok, f"struct batch: {len(fields)} fields, llama_batch {len(lib_fields)} fields, "
                f"{ctypes.sizeof(llama_cpp.llama_batch)} bytes" + ("" if ok else
                f"; header {fields} vs llama-cpp-python {lib_fields}")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See docs/development.md.")
    parser.add_argument("--header", type=Path, default=HEADER,
                        help=f"the C++ declarations to check (default: {HEADER.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    try:
        import llama_cpp
    except ImportError as exc:
        print(f"llama-cpp-python is not importable ({exc}); install the pinned release",
              file=sys.stderr)
        return 2
    try:
        import genrec_lite  # noqa: F401
    except ImportError:  # a plain checkout: use python/
        sys.path.insert(0, str(ROOT / "python"))
    try:
        results = run_checks(llama_cpp, args.header.read_text(), (ROOT / "pyproject.toml").read_text())
    except ImportError as exc:
        print(f"genrec_lite is not importable ({exc})", file=sys.stderr)
        return 2
    except ValueError as exc:  # a declaration this tool cannot read: not a pass
        print(f"MISMATCH {exc}")
        return 1
    for ok, msg in results:
        print(f"{'ok      ' if ok else 'MISMATCH'} {msg}")
    bad = sum(not ok for ok, _ in results)
    print(f"{len(results) - bad} of {len(results)} checks pass"
          + ("" if not bad else "; do not serve GGUF bundles with this llama-cpp-python"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
