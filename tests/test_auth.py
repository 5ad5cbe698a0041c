"""Accounts: salted password hashes, API keys stored hashed, roles checked server-side."""

from __future__ import annotations

import pytest

from chat import auth
from chat.config import replace
from chat.errors import BadInput, Forbidden, NotFound
from chat.server import login_checker

PW = "correct horse battery"


def test_passwords_are_salted_scrypt_hashes(store):
    auth.add_user(store, "alice", PW)
    auth.add_user(store, "bob", PW)
    hashes = [r["password_hash"] for r in store.query("SELECT password_hash FROM users")]
    assert all(h.startswith("scrypt$") and PW not in h for h in hashes)
    assert hashes[0] != hashes[1]  # same password, different salts
    assert auth.verify_password(store, "alice", PW)
    assert not auth.verify_password(store, "alice", PW + "!")
    assert not auth.verify_password(store, "nobody", PW)
    assert not auth.verify_password(store, "alice", "")


def test_add_user_validates_and_changes_nothing_on_error(store):
    auth.add_user(store, "alice", PW, "admin")
    for name, password, role in [("alice", PW, "user"), ("", PW, "user"), ("../x", PW, "user"),
                                 ("a b", PW, "user"), ("carol", "short", "user"),
                                 ("carol", PW, "root"), ("x" * 65, PW, "user")]:
        with pytest.raises(BadInput):
            auth.add_user(store, name, password, role)
    assert [u["name"] for u in auth.list_users(store)] == ["alice"]
    assert auth.get_user(store, "alice")["role"] == "admin"


def test_set_password_replaces_the_old_one(store):
    auth.add_user(store, "alice", PW)
    auth.set_password(store, "alice", "a brand new secret")
    assert auth.verify_password(store, "alice", "a brand new secret")
    assert not auth.verify_password(store, "alice", PW)
    with pytest.raises(NotFound):
        auth.set_password(store, "nobody", "a brand new secret")
    with pytest.raises(BadInput):
        auth.set_password(store, "alice", "short")
    assert auth.verify_password(store, "alice", "a brand new secret")


def test_api_keys_are_stored_hashed_and_map_to_their_user(store):
    auth.add_user(store, "alice", PW)
    auth.add_user(store, "bob", PW)
    ka, kb = auth.create_api_key(store, "alice"), auth.create_api_key(store, "bob")
    stored = [r["key_hash"] for r in store.query("SELECT key_hash FROM api_keys")]
    assert ka not in stored and kb not in stored and len(stored) == 2
    assert auth.user_for_key(store, ka) == "alice" and auth.user_for_key(store, kb) == "bob"
    for bad in (None, "", ka[:-1], ka + "x", "Bearer " + ka, "lc-" + "a" * 500):
        assert auth.user_for_key(store, bad) is None
    with pytest.raises(NotFound):
        auth.create_api_key(store, "nobody")
    assert auth.revoke_api_keys(store, "alice") == 1
    assert auth.user_for_key(store, ka) is None and auth.user_for_key(store, kb) == "bob"


def test_require_role_matrix(store, cfg):
    auth.add_user(store, "alice", PW)
    auth.add_user(store, "root", PW, "admin")
    accounts = auth.Authorizer(replace(cfg, auth="accounts"), store)
    for who in (None, "", "ghost", "alice"):
        with pytest.raises(Forbidden):
            accounts.require(who, "admin")
        assert not accounts.is_admin(who)
    assert accounts.require("root", "admin") == "root"
    assert accounts.require("alice", "user") == "alice"
    assert accounts.require("root", "user") == "root"  # admins may do what users do
    with pytest.raises(Forbidden):
        accounts.require("ghost", "user")
    auth.set_role(store, "alice", "admin")
    assert accounts.is_admin("alice")


def test_open_mode_is_explicit_and_local_only(store, cfg):
    open_cfg = replace(cfg, auth="open")
    local = auth.Authorizer(open_cfg, store)
    assert local.require("guest-1234", "admin") == "guest-1234"
    assert local.web_user(None) == auth.OPEN_USER and local.is_admin(auth.OPEN_USER)
    auth.check_auth_mode(open_cfg, "127.0.0.1")
    with pytest.raises(BadInput, match="localhost"):
        auth.check_auth_mode(open_cfg, "0.0.0.0")
    with pytest.raises(ValueError, match=r"auth \(CHAT_AUTH\) must be open or accounts"):
        replace(cfg, auth="none")
    accounts = replace(cfg, auth="accounts")
    with pytest.raises(BadInput, match="no accounts"):
        auth.check_auth_mode(accounts, "0.0.0.0", store)
    auth.add_user(store, "root", PW, "admin")
    auth.check_auth_mode(accounts, "0.0.0.0", store)
    auth.add_user(store, "alice", PW)  # an account (say, behind an API key) keeps its role
    with pytest.raises(Forbidden):
        local.require("alice", "admin")
    assert local.require("root", "admin") == "root"
    with pytest.raises(BadInput, match="reserved"):  # else it would change the operator's rights
        auth.add_user(store, auth.OPEN_USER, PW, "user")


def test_web_login_checker_accepts_only_the_right_password(store):
    """Guessing is throttled in front of it (tests/test_login_guard.py), never by name alone:
    failures for a name must not lock its owner out."""
    auth.add_user(store, "alice", PW)
    check = login_checker(store)
    assert not check("alice", "guess one")
    assert not check("ghost", PW)
    for _ in range(20):
        assert not check("alice", "wrong password")
    assert check("alice", PW)


def test_unknown_names_cost_the_same_scrypt_as_known_ones(store, monkeypatch):
    """A login with a name that does not exist runs the same hash, so timing hides which
    names exist."""
    import hashlib

    auth.add_user(store, "alice", PW)
    calls, scrypt = [], hashlib.scrypt

    def counting_scrypt(password, **kwargs):
        calls.append((kwargs["n"], kwargs["r"], kwargs["p"]))
        return scrypt(password, **kwargs)

    monkeypatch.setattr(auth.hashlib, "scrypt", counting_scrypt)
    assert not auth.verify_password(store, "alice", "wrong password")
    assert not auth.verify_password(store, "nosuchuser", "wrong password")
    assert not auth.verify_password(store, "nosuchuser", PW)
    assert len(calls) == 3 and len(set(calls)) == 1
