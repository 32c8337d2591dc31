"""Packaging promises: the serving side never imports torch; the errors form one family."""

from __future__ import annotations

import subprocess
import sys

import genrec_lite


def test_serving_imports_do_not_load_torch():
    code = ("import sys, genrec_lite, genrec_lite.errors, genrec_lite._core, genrec_lite.sid, "
            "genrec_lite.data, genrec_lite.eval, genrec_lite.prompts, genrec_lite.cli\n"
            "from genrec_lite.sid import SemanticIds, SidEncoder\n"
            "bad = sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'peft') "
            "if m in sys.modules)\n"
            "assert not bad, bad\n")
    env_path = [p for p in sys.path if p]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": ":".join(env_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr


def test_version_and_cli_entry_point():
    from genrec_lite.cli import main

    assert genrec_lite.__version__
    assert main(["--version"]) == 0
    assert main(["sid", "--help"]) == 0


def test_core_errors_arrive_as_genrec_errors():
    import numpy as np

    from genrec_lite._core import ResidualQuantizer

    q = ResidualQuantizer(np.zeros((2, 4, 3), np.float32))
    try:
        q.encode(np.zeros((1, 5), np.float32))
    except genrec_lite.InvalidArgumentError as exc:
        assert isinstance(exc, genrec_lite.GenrecError)
    else:  # pragma: no cover
        raise AssertionError("expected InvalidArgumentError")


def test_every_command_has_help_with_an_example():
    import click
    from click.testing import CliRunner

    from genrec_lite.cli import cli

    def leaves(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from leaves(sub, path + [name])
        else:
            yield path

    paths = list(leaves(cli, []))
    assert {"train", "export", "recommend", "quickstart"} <= {p[0] for p in paths}
    for path in paths:
        res = CliRunner().invoke(cli, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Example" in res.output and "genrec-lite " + " ".join(path) in res.output, path
