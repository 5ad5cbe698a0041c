"""Loop control (a repetition penalty and n-gram blocking over the answer's own tokens), the
mark on an answer cut at the length cap, and `bench quality`'s measures."""

import json

import pytest
import torch

from chat.bench.quality import answer_quality, grounded_words, repeats
from chat.engine.engine import GenParams
from chat.engine.sampling import control_loops, sample
from chat.errors import BadInput
from chat.web.views import badge, history_from_store

QUESTION = [{"role": "user", "content": "List every animal you know, one per line."}]


def test_the_penalty_makes_used_tokens_less_likely_on_either_side_of_zero():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    out = control_loops(logits, [0, 1], GenParams(repetition_penalty=2.0))
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5]  # the model's logits are left as they were


def test_a_token_that_would_repeat_an_ngram_is_ruled_out():
    logits = torch.zeros(6)
    logits[3] = 5.0
    params = GenParams(no_repeat_ngram=3)
    assert sample(logits, params, answer=[1, 2, 3, 1, 2]) != 3  # "1 2 3" said once already
    assert sample(logits, params, answer=[1, 2, 3, 1, 4]) == 3  # "1 4 3" would be new


def test_neutral_settings_leave_the_logits_alone():
    logits = torch.randn(10)
    assert control_loops(logits, [1, 2, 1, 2], GenParams()) is logits


@pytest.mark.parametrize("kwargs, field", [({"repetition_penalty": 0.9}, "repetition_penalty"),
                                           ({"repetition_penalty": 3.0}, "repetition_penalty"),
                                           ({"no_repeat_ngram": 1}, "no_repeat_ngram"),
                                           ({"no_repeat_ngram": 100}, "no_repeat_ngram")])
def test_loop_settings_out_of_range_are_refused(kwargs, field):
    with pytest.raises(BadInput, match=field):
        GenParams(**kwargs)


def test_server_loop_settings_are_checked_at_start(monkeypatch):
    from chat.config import load_config

    monkeypatch.setenv("CHAT_NO_REPEAT_NGRAM", "1")
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        load_config()


def test_the_real_model_never_repeats_a_blocked_ngram(real_engine):
    """The serving path (fast path, and transformers where an adapter has none) applies it."""
    params = GenParams(max_new_tokens=120, no_repeat_ngram=4)
    ids = real_engine.encode(QUESTION)
    tokens = list(real_engine.generate_ids(ids, params))
    grams = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    assert len(tokens) > 20 and len(grams) == len(set(grams))
    hf = list(real_engine._generate_hf(ids, params, None, None))
    hf_grams = [tuple(hf[i:i + 4]) for i in range(len(hf) - 3)]
    assert len(hf_grams) == len(set(hf_grams))


def test_bench_measures():
    assert repeats("one two three four five six seven eight. one two three four five six "
                   "seven eight.")
    assert not repeats("one two three four five six seven eight nine ten")
    assert grounded_words("Bees make honey, not milk. Bees!", ["Bees make honey."]) == (3, 5)


def test_answer_quality_on_the_real_serving_path(service):
    params = GenParams(max_new_tokens=16)
    out = answer_quality(service, ["Tell me a long story about a dragon."], params)
    assert out["cutoff_share"] == 1.0 and out["grounded_share"] is None  # no sources here
    assert service.store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] == 0


def test_a_cut_answer_is_stored_cut_and_marked_on_reopen(service):
    answer = service.ask("Tell me a long story about a dragon.", "ann",
                         params=GenParams(max_new_tokens=16))
    assert answer.cut_off and not answer.stopped
    messages = service.store.query("SELECT * FROM messages WHERE role = 'assistant'")
    assert json.loads(messages[0]["params_json"])["cut_off"] is True
    history, _, _ = history_from_store(service.store.query("SELECT * FROM messages"))
    assert "cut off at 16 tokens — continue?" in history[-1]["content"]
    short = service.ask("What is the capital of France?", "ann",
                        params=GenParams(max_new_tokens=200))
    assert not short.cut_off


def test_the_cut_mark_says_what_to_do():
    text = badge("base", 1, cut_at=256)
    assert "cut off at 256 tokens — continue?" in text and "send “continue”" in text
    assert "cut off" not in badge("base", 1)
