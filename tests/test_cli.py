import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)


def test_ask_json_follows_the_contract():
    out = run_cli("ask", "What is the capital of France?", "--json", "--max-new-tokens", "24")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert "Paris" in answer["answer"]
    assert answer["adapter_version"] in (None, "base")
    assert isinstance(answer["sources"], list)
    assert isinstance(answer["message_id"], int)


def test_bad_model_gives_one_clear_line_not_a_traceback(tmp_path):
    out = run_cli("--base-model", str(tmp_path / "missing"), "ask", "hi")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: cannot load base model")


def _command_paths(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(child, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    import launch

    paths = list(_command_paths(launch.build_parser()))
    assert ("ask",) in paths and ("serve",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            launch.main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out, path


def test_empty_question_is_rejected():
    out = run_cli("ask", "   ")
    assert out.returncode == 2 and "empty" in out.stderr
