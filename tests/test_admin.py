"""Authorization matrix for every admin action, as plain functions and through the web app."""

from pathlib import Path

import pytest

from chat.auth import add_user
from chat.errors import BadInput, Forbidden, NotEnoughData, NotFound
from chat.web import admin, uploads

PASSWORD = "correct horse battery"


@pytest.fixture
def ctx(monkeypatch, tiny_engine):
    from chat.config import load_config
    from chat.runtime import build_runtime

    monkeypatch.setenv("CHAT_AUTH", "accounts")
    rt = build_runtime(load_config(), engine=tiny_engine)
    add_user(rt.store, "alice", PASSWORD, "user")
    add_user(rt.store, "root", PASSWORD, "admin")
    return rt


ACTIONS = {
    "dashboard": lambda c, u: admin.dashboard(c, u),
    "serving": lambda c, u: admin.serving(c, u),
    "recent_feedback": lambda c, u: admin.recent_feedback(c, u),
    "list_documents": lambda c, u: admin.list_documents(c, u),
    "upload": lambda c, u: admin.upload_documents(c, u, [("note.txt", b"hello")]),
    "upload_nothing": lambda c, u: admin.upload_files(c, u, None, Path("/nonexistent")),
    "prompt_profile": lambda c, u: admin.prompt_profile(c, u, 1),
    "delete_document": lambda c, u: admin.delete_document(c, u, 1),
    "start_training": lambda c, u: admin.start_training(c, u, "dpo"),
    "cancel_training": lambda c, u: admin.cancel_training(c, u, 1),
    "training_status": lambda c, u: admin.training_status(c, u),
    "list_adapters": lambda c, u: admin.list_adapters(c, u),
    "activate": lambda c, u: admin.activate_adapter(c, u, "v0001"),
    "rollback": lambda c, u: admin.rollback_adapter(c, u),
    "serve_base": lambda c, u: admin.serve_base_model(c, u),
    "export": lambda c, u: admin.export_file(c, u, "dpo"),
    "list_users": lambda c, u: admin.list_users(c, u),
    "forget_user": lambda c, u: admin.forget(c, u, "alice", "alice"),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("user", [None, "alice", "mallory"])
def test_non_admins_are_refused_and_nothing_changes(ctx, action, user):
    before = ctx.store.counts()
    with pytest.raises(Forbidden):
        ACTIONS[action](ctx, user)
    assert ctx.store.counts() == before
    assert [u["name"] for u in admin.list_users(ctx, "root")] == ["alice", "root"]
    assert not (ctx.cfg.data_dir / "uploads").exists() or not any(
        (ctx.cfg.data_dir / "uploads").iterdir())


# On an empty store some admin actions stop at what the data lacks, past the role check.
EMPTY_STORE_REFUSALS = {"activate": NotFound, "delete_document": NotFound,
                        "rollback": BadInput, "serve_base": BadInput,
                        "start_training": NotEnoughData, "upload_nothing": BadInput,
                        "prompt_profile": BadInput}  # v1, the served one


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_admin_passes_the_role_check(ctx, action):
    refusal = EMPTY_STORE_REFUSALS.get(action)
    if refusal is None:
        ACTIONS[action](ctx, "root")
    else:
        with pytest.raises(refusal):
            ACTIONS[action](ctx, "root")


@pytest.mark.parametrize("name,kept", [("../../x.txt", "-x.txt"), ("a\\..\\b.md", "-b.md"),
                                       ("My Notes (v2).MD", "-My-Notes-v2.md")])
def test_upload_names_are_neutralised(name, kept):
    safe = uploads.safe_upload_name(name)
    assert safe.endswith(kept) and len(safe) == 12 + len(kept)  # 12 random hex digits first
    assert "/" not in safe and "\\" not in safe and ".." not in safe


@pytest.mark.parametrize("name", ["/etc/passwd", "evil\x00.txt", "noext", "run.sh"])
def test_upload_names_without_an_allowed_type_are_rejected(name):
    with pytest.raises(BadInput):
        uploads.safe_upload_name(name)


def test_upload_lands_inside_the_data_folder_under_a_generated_name(ctx):
    report = admin.upload_documents(ctx, "root", [("../../escape.txt", b"Zebras are striped.")])
    uploads = ctx.cfg.data_dir / "uploads"
    files = list(uploads.iterdir())
    assert len(files) == 1 and files[0].name.endswith("-escape.txt")
    assert report["documents_added"] == 1
    assert not (ctx.cfg.data_dir.parent.parent / "escape.txt").exists()
    # a text file is titled by its name: the one uploaded, not the generated one
    assert ctx.store.query("SELECT title FROM documents") == [{"title": "escape"}]


def test_the_same_file_uploaded_again_is_skipped_not_added_twice(ctx):
    data = b"# Refund policy\nRefunds are allowed within 30 days of purchase.\n"
    first = admin.upload_documents(ctx, "root", [("refunds.md", data)])
    again = admin.upload_documents(ctx, "root", [("refunds.md", data), ("copy.md", data),
                                                 ("other.md", b"# Other\nZebras are striped.")])
    assert (first["documents_added"], first["skipped"]) == (1, 0)
    assert (again["documents_added"], again["skipped"]) == (1, 2)
    assert ctx.store.counts()["documents"] == 2
    assert len(list((ctx.cfg.data_dir / "uploads").iterdir())) == 2


def test_two_uploads_of_one_file_at_once_add_it_once(ctx):
    import threading

    data = b"# Refund policy\nRefunds are allowed within 30 days of purchase.\n"
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(admin.upload_documents(
        ctx, "root", [("refunds.md", data)]))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["documents_added"] for r in reports) == [0, 1]
    assert ctx.store.counts()["documents"] == 1


def test_deleting_an_uploaded_document_removes_its_file(ctx):
    admin.upload_documents(ctx, "root", [("salaries.txt", b"Alice earns a lot of money.")])
    (doc,) = admin.list_documents(ctx, "root")
    assert Path(doc["path"]).exists()
    admin.delete_document(ctx, "root", doc["id"])
    assert not Path(doc["path"]).exists() and not admin.list_documents(ctx, "root")


def test_an_ingest_with_no_file_says_so_and_changes_nothing(ctx):
    before = ctx.store.counts()
    for nothing in (None, []):
        with pytest.raises(BadInput, match="choose one or more files"):
            admin.upload_files(ctx, "root", nothing, ctx.cfg.data_dir)
    assert ctx.store.counts() == before


def test_activating_a_prompt_profile_is_confirmed_by_its_row(ctx):
    """The console asks before it activates: it shows the profile's version and note, and
    refuses at once what cannot be activated."""
    from chat.prompt import PromptProfile

    version = ctx.service.prompts.add(PromptProfile("Answer in one sentence."), "root", "short")
    row = admin.prompt_profile(ctx, "root", version)
    assert (row["version"], row["note"], row["status"]) == (version, "short", "draft")
    with pytest.raises(NotFound):
        admin.prompt_profile(ctx, "root", version + 1)
    admin.activate_prompt(ctx, "root", version)
    with pytest.raises(BadInput, match="already active"):
        admin.prompt_profile(ctx, "root", version)


def test_a_rejected_upload_is_reported_by_the_name_it_was_given(ctx):
    report = admin.upload_documents(ctx, "root", [("My Notes.md", b"   \n")])
    assert [e["path"] for e in report["errors"]] == ["My Notes.md"]
    assert not any((ctx.cfg.data_dir / "uploads").iterdir())


def test_symlink_upload_is_refused(tmp_path):
    (tmp_path / "secret").write_text("x")
    (tmp_path / "link.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(BadInput, match="symbolic"):
        uploads.read_upload(tmp_path / "link.txt", tmp_path)


def test_upload_outside_gradios_folder_is_refused(tmp_path):
    """A client can name any server path as an "uploaded" file: only Gradio's folder counts."""
    folder = tmp_path / "gradio"
    folder.mkdir()
    (folder / "mine.md").write_text("# uploaded")
    (tmp_path / "secret.md").write_text("# not uploaded")
    assert uploads.read_upload(folder / "mine.md", folder) == b"# uploaded"
    for path in (tmp_path / "secret.md", folder / ".." / "secret.md", Path("/etc/passwd")):
        with pytest.raises(BadInput, match="only files uploaded"):
            uploads.read_upload(path, folder)


def test_oversized_upload_is_a_clear_error_and_writes_nothing(ctx):
    big = b"x" * (int(ctx.cfg.max_file_mb * 1024 * 1024) + 1)
    with pytest.raises(BadInput, match=f"larger than {ctx.cfg.max_file_mb:g} MiB"):
        admin.upload_documents(ctx, "root", [("big.txt", big)])
    assert ctx.store.counts()["documents"] == 0


def test_user_cannot_open_another_users_conversation(ctx):
    from chat.errors import NotFound

    cid = ctx.store.create_conversation("root", "secret plans")
    with pytest.raises(NotFound):
        ctx.store.conversation(cid, "alice")


def test_admin_events_through_the_running_app(ctx):
    """The same matrix through gradio_client against the app with logins."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError, AuthenticationError

    from chat.server import login_checker
    from chat.web.app import build_app

    app = build_app(ctx)
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
               auth=login_checker(ctx.store))
    try:
        user_client = Client(app.local_url, auth=("alice", PASSWORD), verbose=False)
        with pytest.raises(AppError, match="admin role"):
            user_client.predict(api_name="/admin_adapters")
        with pytest.raises(AppError, match="admin role"):
            user_client.predict("dpo", True, api_name="/admin_train")
        admin_client = Client(app.local_url, auth=("root", PASSWORD), verbose=False)
        table = admin_client.predict(api_name="/admin_adapters")
        assert table["headers"][0] == "version"
        for name in ("/admin_delete_document", "/admin_activate_prompt"):
            with pytest.raises(AppError, match="greater than"):  # not an OverflowError
                admin_client.predict(1e20, api_name=name)
        # the dashboard fills as the console opens: for an admin, and empty for the rest
        stats = admin_client.predict("all", "", api_name="/admin_dashboard_open")[0]
        assert "serving" in stats.lower()
        left = user_client.predict("all", "", api_name="/admin_dashboard_open")
        assert all(out == {"__type__": "update"} for out in left)  # nothing shown or changed
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(app.local_url, verbose=False).predict(api_name="/admin_adapters")
    finally:
        app.close()


def test_serving_says_which_weights_answers_come_from(ctx, real_engine):
    from chat.config import load_config
    from chat.engine import c_kernels
    from chat.runtime import build_runtime

    info = admin.serving(ctx, "root")  # the tiny random model: its weights are on no grid
    assert info["device"] == "cpu" and info["fast_path"] == "fp16"
    expected = "weights on no GGUF grid" if c_kernels.problem() is None else "block kernels"
    assert expected in info["decode"]
    real = build_runtime(load_config(), engine=real_engine)  # same store
    if c_kernels.problem() is None:  # the shipped model's weights are Q4_1 / Q8_0
        assert admin.serving(real, "root")["decode"].startswith("exact GGUF blocks")


def test_forget_wants_the_name_twice_and_changes_nothing_otherwise(ctx):
    conv = ctx.store.create_conversation("alice")
    for name, confirm in (("alice", "alic"), ("alice", ""), ("", "")):
        with pytest.raises(BadInput, match="both boxes"):
            admin.forget(ctx, "root", name, confirm)
    assert ctx.store.conversation(conv)["user"] == "alice"
    with pytest.raises(BadInput, match="last admin"):
        admin.forget(ctx, "root", "root", "root")
    out = admin.forget(ctx, "root", " alice", "alice ")
    assert out["deleted"]["users"] == 1 and out["deleted"]["conversations"] == 1
    assert [u["name"] for u in admin.list_users(ctx, "root")] == ["root"]
