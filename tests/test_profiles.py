import json

import pytest

from chat.errors import BadInput, NotFound
from chat.profiles import ProfileStore, load_profile_file, reframe, validate_profile
from chat.prompt import PromptProfile, build_messages

FEW_SHOT = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]


@pytest.fixture
def profiles(store, cfg):
    return ProfileStore(store, cfg.system_prompt)


def test_activation_changes_the_next_answer_without_restart(service, profiles, store):
    service.prompts = profiles
    first = service.ask("What is the capital of France?", "ann")
    v2 = profiles.add(PromptProfile("You are a pirate. Answer like one.", FEW_SHOT), "admin")
    profiles.activate(v2)
    second = service.ask("What is the capital of France?", "ann")
    assert second.prompt_version == v2
    rows = store.query("SELECT prompt_version, prompt_json FROM messages "
                       "WHERE role = 'assistant' ORDER BY id")
    assert [r["prompt_version"] for r in rows] == [first.prompt_version, v2]
    assert first.prompt_version == 1 and v2 == 2
    seen = json.loads(rows[1]["prompt_json"])
    assert seen[0]["content"].startswith("You are a pirate.")
    assert seen[1:3] == FEW_SHOT
    assert profiles.get(1).system_prompt == service.cfg.system_prompt  # old version readable
    statuses = {r["version"]: r["status"] for r in profiles.list()}
    assert statuses == {1: "retired", 2: "active"}


def test_few_shot_renders_through_the_chat_template(tiny_engine):
    profile = PromptProfile("System rules.", FEW_SHOT)
    history = [{"role": "user", "content": "old q " + "x " * 300},
               {"role": "assistant", "content": "old a " + "y " * 300}] * 3
    messages = build_messages(profile, "The real question?", history)
    fitted = tiny_engine.fit_messages(messages, 64, keep_head=len(FEW_SHOT))
    assert fitted[0]["content"] == "System rules."
    assert fitted[1:3] == FEW_SHOT
    assert fitted[-1] == {"role": "user", "content": "The real question?"}
    assert len(fitted) < len(messages)
    roles = [m["role"] for m in fitted[1:]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    text = tiny_engine.tokenizer.apply_chat_template(fitted, tokenize=False,
                                                     add_generation_prompt=True)
    assert text.index("Say hi.") < text.index("Hi!") < text.index("The real question?")
    assert text.rstrip().endswith("assistant")


@pytest.mark.parametrize("data, message", [
    ([], "JSON object"),
    ({"system_prompt": ""}, "system_prompt"),
    ({"system_prompt": "x", "few_shot": [{"role": "assistant", "content": "a"},
                                         {"role": "user", "content": "b"}]}, "alternate"),
    ({"system_prompt": "x", "few_shot": [{"role": "user", "content": "a"}]}, "pairs"),
    ({"system_prompt": "x", "source_template": "no placeholder"}, "{sources}"),
    ({"system_prompt": "x", "temperature": 3}, "unknown"),
])
def test_malformed_profiles_are_rejected(data, message):
    with pytest.raises(BadInput, match=message if message != "{sources}" else r"\{sources\}"):
        validate_profile(data)


def test_the_size_limit_counts_characters_not_json_escapes():
    from chat.profiles import MAX_PROFILE_CHARS

    validate_profile({"system_prompt": "答" * (MAX_PROFILE_CHARS // 2)})  # 12 bytes escaped
    with pytest.raises(BadInput, match="larger than"):
        validate_profile({"system_prompt": "答" * (MAX_PROFILE_CHARS + 1)})


def test_malformed_file_or_unknown_version_changes_nothing(tmp_path, capsys, profiles):
    import launch

    bad = tmp_path / "bad.json"
    bad.write_text('{"system_prompt": "x", ')
    profiles.active()  # seeds version 1
    before = profiles.list()
    with pytest.raises(BadInput, match="not valid JSON"):
        load_profile_file(bad)
    assert launch.main(["prompts", "add", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(NotFound):
        profiles.activate(99)
    assert profiles.list() == before and profiles.active().version == 1


def test_reframe_swaps_profile_but_keeps_sources_and_question():
    old = PromptProfile("Old system.", [])
    new = PromptProfile("New system.", FEW_SHOT)
    recorded = [{"role": "system", "content": "Old system.\n\nSources: [1] x"},
                {"role": "user", "content": "Q?"}]
    out = reframe(recorded, old, new)
    assert out[0]["content"] == "New system.\n\nSources: [1] x"
    assert out[1:3] == FEW_SHOT and out[-1]["content"] == "Q?"


def test_prompts_cli_add_activate_and_reject(tmp_path, capsys, store):
    import launch

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"system_prompt": "Be brief.", "few_shot": FEW_SHOT,
                                "note": "shorter"}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"system_prompt": "x", "few_shot": [{"role": "user"}]}))
    assert launch.main(["prompts", "add", str(good)]) == 0
    assert launch.main(["prompts", "add", str(bad)]) == 2
    assert "error: few_shot" in capsys.readouterr().err
    assert launch.main(["prompts", "activate", "2"]) == 0
    assert launch.main(["prompts", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["version"], r["status"]) for r in rows] == [(1, "retired"), (2, "active")]
