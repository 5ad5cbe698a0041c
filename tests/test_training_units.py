"""Small parts of training, without a model: early stopping's bookkeeping, the repetition
measure, `train --set` parsing."""

from __future__ import annotations

import contextlib
import math

import pytest

from chat.errors import BadInput
from training.cli import parse_sets
from training.damage import repetition
from training.early_stop import Watch, liked_and_disliked, preference_gaps


def test_better_accuracy_wins_then_a_clearly_larger_margin():
    watch = Watch(patience=2, min_gain=0.1, enough_margin=4.0, enough_accuracy=1.0,
                  best=(0.5, 3.0))
    assert watch.improved((0.75, -1.0))  # more pairs won beats any margin
    assert not watch.improved((0.25, 9.0))
    assert not watch.improved((0.5, 3.2))  # within 10% of the best margin: no gain
    assert watch.improved((0.5, 3.5))
    assert Watch(2, 0.1, 4.0, 1.0).improved((0.0, -5.0))  # the first score is the best so far


def test_enough_means_most_pairs_won_by_the_margin():
    watch = Watch(patience=2, min_gain=0.1, enough_margin=4.0, enough_accuracy=1.0)
    assert watch.enough((1.0, 4.0)) and not watch.enough((1.0, 3.9))
    assert not watch.enough((0.9, 40.0))  # by default every pair
    watch = Watch(patience=2, min_gain=0.1, enough_margin=3.0, enough_accuracy=0.75)
    assert watch.enough((0.75, 3.0)) and watch.enough((0.9, 5.0))
    assert not watch.enough((0.7, 9.0)) and not watch.enough((1.0, 2.9))


def test_pairs_and_thumbs_give_liked_and_disliked_answers():
    prompt = [{"role": "user", "content": "q"}]
    pair = {"prompt": prompt, "chosen": [{"content": "good"}], "rejected": [{"content": "bad"}]}
    thumbs = [{"prompt": prompt, "completion": [{"content": "up"}], "label": True},
              {"prompt": prompt, "completion": [{"content": "down"}], "label": False}]
    assert liked_and_disliked([pair]) == [(prompt, "good", True), (prompt, "bad", False)]
    assert liked_and_disliked(thumbs) == [(prompt, "up", True), (prompt, "down", False)]


def test_repetition_is_the_share_of_repeated_word_4grams():
    assert repetition(["the cat sat on the mat"]) == 0.0
    assert repetition(["a b c d a b c d a b c d"]) == pytest.approx(0.556, abs=1e-3)  # 5 of 9
    assert repetition(["", "too short"]) is None  # nothing to measure


def test_set_options_become_sections():
    assert parse_sets(["optim.beta=0.1", "optim.loss_on=whole", "gate.visible_prompts=0",
                       'lora.target_modules=["q_proj"]']) == {
        "optim": {"beta": 0.1, "loss_on": "whole"}, "gate": {"visible_prompts": 0},
        "lora": {"target_modules": ["q_proj"]}}


@pytest.mark.parametrize("bad", ["beta=0.1", "optim.beta", ".beta=1", "optim.=1"])
def test_a_set_option_without_section_key_and_value_is_refused(bad):
    with pytest.raises(BadInput, match="SECTION.KEY=VALUE"):
        parse_sets([bad])


def test_answer_logps_equal_a_plain_log_softmax(cfg, monkeypatch):
    """Scoring only answer positions (logits_to_keep, log-sum-exp) gives the plain numbers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chat.engine.loading import resolve_base_model
    from training import scoring
    from training.scoring import answer_logps, encode

    path = resolve_base_model(cfg)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    items = [([{"role": "user", "content": "Hi, how are you?"}], "Fine, thanks."),
             ([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "What is the capital of France?"}],
              "Paris is the capital of France, and its largest city.")]
    plain = []
    for prompt, answer in items:
        ids, start = encode(tok, prompt, answer, 512)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        plain.append(sum(float(logp[j, ids[j + 1]]) for j in range(start - 1, len(ids) - 1)))
    # a plain model has no adapters to switch between
    monkeypatch.setattr(scoring, "using", lambda model, adapter: contextlib.nullcontext())
    ours = answer_logps(model, tok, items, None)
    assert [n for _, n in ours] == [len(encode(tok, p, a, 512)[0]) - encode(tok, p, a, 512)[1]
                                    for p, a in items]
    assert [lp for lp, _ in ours] == pytest.approx(plain, abs=1e-3)


def test_reference_drift_equals_full_logits(cfg):
    """The gate's drift, batched over answer positions only, gives the numbers of a plain
    one-answer-at-a-time pass over every position's log-softmax."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chat.engine.loading import resolve_base_model
    from training.damage import EDGE_TOKENS, reference_drift
    from training.scoring import encode

    path = resolve_base_model(cfg)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="cand")
    long = "Rivers carry water from the hills down to the sea, shaping valleys as they go, " \
        "and their floods leave rich soil on the plains where farmers grow food."
    items = [([{"role": "user", "content": "Tell me about rivers."}], long),
             ([{"role": "user", "content": "Why do we need sleep?"}],
              "Sleep lets the brain store memories and the body repair itself; without it "
              "people think slowly and fall ill more often over time.")]
    kls, nll, count = [], [0.0, 0.0], 0
    for prompt, answer in items:
        ids, start = encode(tok, prompt, answer, 1024)
        with torch.no_grad():
            with model.disable_adapter():
                base = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
            cand = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
        span = range(start - 1, len(ids) - 1)
        for side, logp in enumerate((base, cand)):
            nll[side] -= sum(float(logp[j, ids[j + 1]]) for j in span)
        count += len(span)
        kl = (base.exp() * (base - cand)).sum(-1)
        kls.append(kl[start - 1 + EDGE_TOKENS:len(ids) - 1 - EDGE_TOKENS])
    ours = reference_drift(model, tok, items, "cand", batch=2)
    assert ours.interior_kl > 0.001  # the random adapter moved the model
    assert ours.interior_kl == pytest.approx(float(torch.cat(kls).median()), rel=1e-3)
    assert ours.ppl_base == pytest.approx(math.exp(nll[0] / count), rel=1e-3)
    assert ours.ppl_candidate == pytest.approx(math.exp(nll[1] / count), rel=1e-3)


def test_liked_answers_are_measured_against_their_own_prompts_disliked_one():
    keys = [("q1", True), ("q1", False), ("q2", True), ("q2", False), ("q3", True)]
    scores = [-10.0, -12.0, -50.0, -49.0, -20.0]
    # q1 won by 2, q2 lost by 1, q3 (no thumbs down) against the mean disliked answer (-30.5)
    assert preference_gaps(keys, scores) == [2.0, -1.0, 10.5]
    assert preference_gaps([("q", True)], [-1.0]) == []  # nothing disliked: no score
    assert preference_gaps([("q", False)], [-1.0]) == []  # nothing liked


def _random_lora(path, name: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(path), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name=name)


def test_paired_scoring_shares_each_pairs_start_and_gives_the_plain_numbers(cfg,
                                                                         monkeypatch):
    """The gate and early stopping score a pair's two answers with their common start run
    once; the log-probs are those of scoring each answer alone (an odd count of pairs, a
    pair sharing most of its answer, one sharing only the prompt)."""
    from transformers import AutoTokenizer

    from chat.engine.loading import resolve_base_model
    from training import shared_prefix
    from training.scoring import answer_logps, paired_logps

    shared_passes = []
    plain_shared = shared_prefix.shared_forward
    monkeypatch.setattr(shared_prefix, "shared_forward",
                        lambda *a, **k: shared_passes.append(1) or plain_shared(*a, **k))
    path = resolve_base_model(cfg)
    tok, model = AutoTokenizer.from_pretrained(path), _random_lora(path, "cand")
    q = [[{"role": "user", "content": text}] for text in
         ("Why is the sea salty?", "What is the capital of France?", "How do bees fly?")]
    firsts = [(q[0], "Rivers carry salt from rocks to the sea.\n\nHope this helps!"),
              (q[1], "Paris."), (q[2], "In short: their wings beat very fast.")]
    seconds = [(q[0], "Rivers carry salt from rocks to the sea."), (q[1], "Madrid."),
               (q[2], "Their wings beat very fast.")]
    for adapter in (None, "cand"):
        plain = [lp for lp, _ in answer_logps(model, tok, firsts + seconds, adapter)]
        ours = paired_logps(model, tok, firsts, seconds, adapter)
        assert ours[0] + ours[1] == pytest.approx(plain, abs=2e-3)
    assert len(shared_passes) == 4  # two batches of pairs, for each version
    with pytest.raises(ValueError):
        paired_logps(model, tok, firsts, seconds[:2], None)


def test_two_versions_answer_in_one_batch_as_each_would_alone(cfg):
    from transformers import AutoTokenizer

    from chat.engine.loading import resolve_base_model
    from training.scoring import greedy_answers

    path = resolve_base_model(cfg)
    tok, model = AutoTokenizer.from_pretrained(path), _random_lora(path, "cand")
    model.eval()
    prompts = [[{"role": "user", "content": "Name a colour."}],
               [{"role": "user", "content": "What do cats eat?"}]]
    together = greedy_answers(model, tok, prompts, ["cand", None], 12)
    alone = [greedy_answers(model, tok, prompts, [v], 12)[0] for v in ("cand", None)]
    assert together == alone
    assert together[0] != together[1]  # the random adapter answers otherwise
