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


def test_ask_a_file_of_questions_prints_an_answer_each(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("What is the capital of France?\n\nWhat is 2 plus 2?\n")
    out = run_cli("ask", "--questions", str(questions), "--json", "--max-new-tokens", "3",
                  env={"CHAT_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(answers) == 2  # the blank line is no question
    assert {a["finish_reason"] for a in answers} == {"length"}  # 3 tokens end no answer
    assert all(a["usage"]["completion_tokens"] == 3 for a in answers)
    assert answers[0]["conversation_id"] != answers[1]["conversation_id"]


@pytest.mark.parametrize("args,message", [
    (["ask"], "give one question, or --questions FILE"),
    (["ask", "hi", "--questions", "q.txt"], "give one question, or --questions FILE"),
    (["ask", "--questions", "missing.txt"], "cannot read missing.txt"),
    (["ask", "--questions", "empty.txt"], "empty.txt holds no questions"),
])
def test_bad_question_files_change_nothing(tmp_path, capsys, cfg, monkeypatch, args, message):
    import launch

    (tmp_path / "empty.txt").write_text("\n  \n")
    monkeypatch.chdir(tmp_path)
    assert launch.main(args) == 2
    assert message in capsys.readouterr().err
    assert not cfg.db_path.exists()  # refused before the model or the database opened


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


@pytest.mark.parametrize("args,message", [
    (["ask", "hi", "--max-new-tokens", "0"], "must be a whole number >= 1"),
    (["bench", "gen", "--threads", "-1"], "must be a whole number >= 1"),
    (["prompts", "preview", "2", "--n", "0"], "must be a whole number >= 1"),
])
def test_counts_below_one_are_usage_errors(capsys, args, message):
    import launch

    with pytest.raises(SystemExit) as exit_info:
        launch.main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bad_paths_and_values_give_one_line_not_a_traceback(tmp_path, capsys, cfg):
    import launch

    note = tmp_path / "note.json"
    note.write_text(json.dumps({"system_prompt": "x", "note": {"a": 1}}))
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "\n")
    cases = [(["serve", "--port", "99999"], "port (CHAT_PORT) must be within [1, 65535]"),
             (["prompts", "add", str(tmp_path)], "cannot read"),
             (["prompts", "add", str(note)], "note must be a string"),
             (["feedback", "import", str(deep)], "line 1: nested too deeply"),
             (["feedback", "export", "--format", "raw", "--out", str(tmp_path)], "directory"),
             (["prompts", "show", str(2**63)], "error: ")]
    for args, message in cases:
        assert launch.main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (args, err)


def test_a_broken_database_is_one_line_not_a_traceback(cfg, capsys):
    import launch

    cfg.db_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.db_path.write_bytes(b"this is not a database" * 100)
    assert launch.main(["feedback", "stats"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: the database {cfg.db_path}: file is not a database"
