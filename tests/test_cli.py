"""The command line: help for every option, --version, and bad arguments refused early."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sound2sight import __version__
from sound2sight.cli import build_parser, main

SRC = Path(__file__).resolve().parents[1] / "src"


def _parsers(parser: argparse.ArgumentParser):
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_has_a_help_line_without_raw_markup():
    for name, parser in _parsers(build_parser()):
        assert "``" not in (parser.description or "") + (parser.epilog or ""), name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
            assert "``" not in action.help, (name, action.dest)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["paint", "/nonexistent.wav", "--run", "runs/x"], "/nonexistent.wav: no such file"),
        (["paint", __file__, "--run", "/nonexistent-run"], "no such run directory"),
        (["train", "all", "--run", "r", "--device", "gpu"], "use cpu, cuda"),
        (["train", "all", "--run", "r", "--set", "novalue"], "KEY=VALUE"),
        (["serve", "--run", "/nonexistent-run"], "no such run directory"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and words in capsys.readouterr().err


def test_bad_path_is_refused_before_torch_is_imported():
    code = (
        "import sys\n"
        "from sound2sight.cli import main\n"
        "try:\n"
        "    main(['paint', '/nonexistent.wav', '--run', 'runs/x'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.stdout.split() == ["exit", "2", "False"], out.stderr
    assert "no such file" in out.stderr
