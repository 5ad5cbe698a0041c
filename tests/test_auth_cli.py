"""`launch.py users add/list/passwd/role/key` against a real SQLite file."""

from __future__ import annotations

import io
import json

from chat import auth
from feedback.store import Store
from launch import main

PW = "correct horse battery"


def run(capsys, monkeypatch, *argv, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_passwd_key(cfg, capsys, monkeypatch):
    assert run(capsys, monkeypatch, "users", "add", "root", "--admin", "--password", PW)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "users", "add", "alice", stdin=PW + "\n")
    assert code == 0 and "added user alice" in out
    store = Store(cfg.db_path)
    assert auth.verify_password(store, "alice", PW)
    assert not auth.verify_password(store, "alice", "wrong password")

    code, out, _ = run(capsys, monkeypatch, "users", "list", "--json")
    assert {u["name"]: u["role"] for u in json.loads(out)} == {"root": "admin", "alice": "user"}

    assert run(capsys, monkeypatch, "users", "passwd", "alice", stdin="new secret 123\n")[0] == 0
    assert auth.verify_password(store, "alice", "new secret 123")
    assert not auth.verify_password(store, "alice", PW)

    code, out, _ = run(capsys, monkeypatch, "users", "key", "alice")
    key = out.strip()
    assert code == 0 and auth.user_for_key(store, key) == "alice"
    assert run(capsys, monkeypatch, "users", "role", "alice", "admin")[0] == 0
    assert auth.get_user(store, "alice")["role"] == "admin"


def test_bad_input_exits_2_with_one_line_and_changes_nothing(cfg, capsys, monkeypatch):
    run(capsys, monkeypatch, "users", "add", "alice", "--password", PW)
    cases = [("users", "add", "alice", "--password", PW),  # taken
             ("users", "add", "bob", "--password", "short"),
             ("users", "add", "../bob", "--password", PW),
             ("users", "passwd", "ghost", "--password", PW),
             ("users", "key", "ghost"),
             ("users", "key", "ghost", "--revoke")]  # a typo must not look like success
    for argv in cases:
        code, out, err = run(capsys, monkeypatch, *argv)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, argv
    store = Store(cfg.db_path)
    assert [u["name"] for u in auth.list_users(store)] == ["alice"]
    assert store.query("SELECT count(*) AS n FROM api_keys")[0]["n"] == 0
    assert auth.verify_password(store, "alice", PW)
