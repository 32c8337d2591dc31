"""tools/: each developer tool runs, has --help, and check_llama_abi reports a changed ABI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted((ROOT / "tools").glob("*.py"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("tool", TOOLS, ids=lambda p: p.name)
def test_tool_has_a_docstring_and_help(tool):
    assert _load(tool.stem).__doc__.strip()
    # the package and the benchmarks package importable as in the tests (installed or not)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"), str(ROOT)]))
    res = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr


def test_check_llama_abi_passes_for_the_pinned_release():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "check_llama_abi.py")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "MISMATCH" not in res.stdout and "12 of 12 checks pass" in res.stdout, res.stdout


def test_check_llama_abi_reports_a_changed_declaration():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    tool = _load("check_llama_abi")
    header = tool.HEADER.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert all(ok for ok, _ in tool.run_checks(llama_cpp, header, pyproject))
    changed = (header.replace("bool (*)(memory*, seq_id, pos, pos)", "bool (*)(memory*, seq_id, pos)")
               .replace("  int8_t* logits;", "  float* logits;")
               .replace("using memory_seq_keep_fn", "using memory_seq_drop_fn"))
    assert changed.count("seq_id, pos)") == 1 and "float* logits" in changed
    bad = [msg for ok, msg in tool.run_checks(llama_cpp, changed, pyproject) if not ok]
    assert any(m.startswith("llama_memory_seq_rm:") for m in bad), bad
    assert any(m.startswith("struct batch:") for m in bad), bad
    assert any(m.startswith("function list:") and "llama_memory_seq_drop" in m for m in bad), bad
    stale_pin = pyproject.replace("llama-cpp-python==", "llama-cpp-python==9.")
    assert any(m.startswith("pins:") for ok, m in tool.run_checks(llama_cpp, header, stale_pin) if not ok)


def test_rendered_doc_blocks_match_the_results():
    """Every `<!-- render: ... -->` block of the docs equals what benchmarks/results renders now."""
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "render_results.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_render_results_refuses_a_block_it_cannot_render():
    tool = _load("render_results")
    ok = "<!-- render: tuning collab-weight -->\nold\n<!-- /render -->\n"
    assert "| amazon weight 1 (adopted) | 0.1340 / 0.0922 |" in tool.render_text(ok)
    for bad, why in (("tuning no-such-study", "no study"), ("cold-start amazon-industrial mars", "no mars"),
                     ("quality amazon-industrial SASRec No%20such%20model", "no model 'No such model'"),
                     ("plot", "unknown block")):
        with pytest.raises(tool.RenderError, match=why):
            tool.render_text(ok.replace("tuning collab-weight", bad))
