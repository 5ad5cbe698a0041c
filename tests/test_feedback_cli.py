"""`launch.py feedback import | export | stats`: all-or-nothing import, TRL formats, counts."""

import json

import pytest

import launch
from feedback.export import dpo_rows, kto_rows
from feedback.store import Store

PROMPT = [{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Capital of France?"}]
LINES = [
    {"type": "preference", "prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away.",
     "user": "ann"},
    {"type": "rating", "prompt": PROMPT, "completion": "Paris.", "value": 1, "user": "bob"},
    {"type": "rating", "prompt": "2+2?", "completion": "5", "value": -1, "reason": "wrong facts",
     "user": "bob"},
    {"type": "correction", "prompt": PROMPT, "original": "Lyon.", "corrected": "Paris.",
     "user": "cy"},
]


def _write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _store(cfg):
    return Store(cfg.db_path)


def test_import_writes_every_kind(cfg, tmp_path, capsys):
    assert launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))]) == 0
    assert "imported 4 lines" in capsys.readouterr().out
    counts = _store(cfg).counts()
    # preference + correction pair; ratings and the correction hang on imported answers
    assert (counts["preferences"], counts["ratings"], counts["corrections"]) == (2, 2, 1)
    assert counts["conversations"] == 3
    answers = _store(cfg).query("SELECT * FROM messages WHERE role = 'assistant' ORDER BY id")
    assert {a["adapter_version"] for a in answers} == {"import"}
    assert json.loads(answers[0]["prompt_json"]) == PROMPT
    bob = _store(cfg).conversations("bob")
    assert len(bob) == 2 and _store(cfg).conversations("nobody") == []


@pytest.mark.parametrize("bad", [
    "{not json",
    {"type": "rating", "prompt": "x", "completion": "y", "value": 2, "user": "u"},
    {"type": "rating", "prompt": "x", "completion": "y", "value": -1, "reason": "meh",
     "user": "u"},
    {"type": "preference", "prompt": "x", "chosen": "", "rejected": "b", "user": "u"},
    {"type": "preference", "prompt": [{"role": "user"}], "chosen": "a", "rejected": "b",
     "user": "u"},
    {"type": "correction", "prompt": "x", "original": "same", "corrected": "same", "user": "u"},
    {"type": "preference", "prompt": "x", "chosen": "Same.", "rejected": " Same. ", "user": "u"},
    {"type": "preference", "prompt": [{"role": "user", "content": "  "}], "chosen": "a",
     "rejected": "b", "user": "u"},
    {"type": "rating", "prompt": "x", "completion": "y", "value": -1, "reason": ["x"],
     "user": "u"},
    {"type": "vote", "prompt": "x", "user": "u"},
    {"type": "preference", "prompt": "x", "chosen": "a", "rejected": "b"},
    {"type": "preference", "prompt": "x \ud800", "chosen": "a", "rejected": "b", "user": "u"},
    {"type": "rating", "prompt": "x", "completion": "y\udc00", "value": 1, "user": "u"},
])
def test_one_bad_line_aborts_the_whole_import(cfg, tmp_path, capsys, bad):
    path = _write(tmp_path / "bad.jsonl", LINES[:2] + [bad] + LINES[2:])
    assert launch.main(["feedback", "import", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"{path}, line 3:" in err and "\n" not in err
    counts = _store(cfg).counts()
    assert sum(counts[t] for t in ("conversations", "messages", "ratings", "corrections",
                                   "preferences")) == 0


def test_a_byte_order_mark_on_line_1_is_not_an_error(cfg, tmp_path, capsys):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(x) + "\n" for x in LINES).encode())
    assert launch.main(["feedback", "import", str(path)]) == 0
    assert _store(cfg).counts()["preferences"] == 2


def test_imported_prompts_are_framed_like_served_ones(cfg, tmp_path):
    """A bare imported question trains with the profile's system prompt and few-shot turns,
    as serving would have asked it."""
    from chat.prompt import PromptProfile, build_messages

    few_shot = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]
    profile = PromptProfile("Be brief.", few_shot)
    assert launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))]) == 0
    (pair,) = [r for r in dpo_rows(_store(cfg), profile) if r["source"] == "import"]
    assert pair["prompt"] == build_messages(profile, "Say hi")


def test_import_of_a_missing_file_is_a_clear_error(cfg, tmp_path, capsys):
    assert launch.main(["feedback", "import", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_export_round_trip_loads_with_datasets(cfg, tmp_path, capsys):
    from datasets import load_dataset

    launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))])
    for fmt, keys, n in (("dpo", {"prompt", "chosen", "rejected"}, 2),
                         ("kto", {"prompt", "completion", "label"}, 2)):
        out = tmp_path / f"{fmt}.jsonl"
        assert launch.main(["feedback", "export", "--format", fmt, "--out", str(out)]) == 0
        ds = load_dataset("json", data_files=str(out), split="train")
        assert set(ds.column_names) == keys and len(ds) == n
    dpo = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")
    correction = dpo[1]
    assert correction["prompt"] == PROMPT  # exactly what the model saw, system turn included
    assert correction["chosen"] == [{"role": "assistant", "content": "Paris."}]
    assert correction["rejected"] == [{"role": "assistant", "content": "Lyon."}]
    kto = load_dataset("json", data_files=str(tmp_path / "kto.jsonl"), split="train")
    assert kto["label"] == [True, False]
    assert kto[1]["completion"] == [{"role": "assistant", "content": "5"}]


def test_export_rows_are_the_rows_a_run_trains_on(cfg, tmp_path):
    """Bare imported questions get the active profile's system prompt, as in training."""
    from chat.profiles import active_profile
    from feedback.export import DPO_KEYS, KTO_KEYS

    launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))])
    store = _store(cfg)
    profile = active_profile(store, cfg)
    for fmt, keys, rows in (("dpo", DPO_KEYS, dpo_rows(store, profile)),
                            ("kto", KTO_KEYS, kto_rows(store, profile))):
        out = tmp_path / f"{fmt}.jsonl"
        assert launch.main(["feedback", "export", "--format", fmt, "--out", str(out)]) == 0
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        assert exported == [{k: r[k] for k in keys} for r in rows]
        assert all(r["prompt"][0]["role"] == "system" for r in exported)


def test_export_raw_to_stdout(cfg, tmp_path, capsys):
    launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))])
    capsys.readouterr()
    assert launch.main(["feedback", "export", "--format", "raw"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds.count("rating") == 2 and kinds.count("correction") == 1
    assert kinds.count("preference") == 2
    assert next(r for r in rows if r["kind"] == "correction")["answer"] == "Lyon."


def test_dpo_and_kto_rows_carry_ids_and_users(cfg, tmp_path):
    launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))])
    store = _store(cfg)
    rows = dpo_rows(store)
    assert [r["user"] for r in rows] == ["ann", "cy"]
    assert dpo_rows(store, ids=[rows[1]["id"]]) == [rows[1]]
    assert dpo_rows(store, ids=[]) == []
    kto = kto_rows(store)
    ids = {r["id"] for r in store.query("SELECT id FROM ratings")}
    assert {r["id"] for r in kto} == ids and {r["user"] for r in kto} == {"bob"}


def test_stats_json(cfg, tmp_path, capsys):
    launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", LINES))])
    store = _store(cfg)
    conv = store.create_conversation("dan")
    mid = store.record_message(conv, "assistant", "hello", adapter_version="v1", prompt_version=3)
    store.record_rating(mid, "dan", -1, "wrong or missing source")
    capsys.readouterr()
    assert launch.main(["feedback", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["kinds"]["thumbs_up"] == 1 and stats["kinds"]["thumbs_down"] == 2
    assert stats["kinds"]["corrections"] == 1 and stats["kinds"]["preferences"] == 2
    assert stats["reasons"] == {"wrong facts": 1, "wrong or missing source": 1}
    assert stats["blame"] == {"generation": 1, "retrieval": 1}
    assert stats["by_adapter"]["import"]["thumbs_down_rate"] == 0.5
    assert stats["by_adapter"]["v1"] == {"answers": 1, "thumbs_up": 0, "thumbs_down": 1,
                                         "thumbs_down_rate": 1.0}
    assert {"prompt_version": 3, "adapter_version": "v1", "answers": 1, "thumbs_up": 0,
            "thumbs_down": 1, "thumbs_down_rate": 1.0} in stats["by_prompt_adapter"]
    assert launch.main(["feedback", "stats"]) == 0
    text = capsys.readouterr().out
    assert "adapter v1: 1 answers" in text and "prompt v3 + adapter v1: 1 answers" in text
    assert "no prompt profile + adapter import: 3 answers" in text and "vNone" not in text
    assert "thumbs-down blame: generation 1, retrieval 1" in text
    assert "(none)" not in text  # no answer was the base model's


def test_earlier_turns_of_an_imported_conversation_are_not_base_model_answers(cfg, tmp_path):
    from feedback.stats import feedback_stats

    history = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
               {"role": "user", "content": "Capital of France?"}]
    line = {"type": "rating", "prompt": history, "completion": "Paris.", "value": 1, "user": "u"}
    assert launch.main(["feedback", "import", str(_write(tmp_path / "f.jsonl", [line]))]) == 0
    assert list(feedback_stats(_store(cfg))["by_adapter"]) == ["import"]
