import copy
import threading

import pytest
import torch

from chat.engine.engine import BASE, Engine, GenParams
from chat.engine.fastpath import FastModel
from chat.errors import BadInput
from tests.model_support import tiny_llama

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
           "How do I reverse a list in Python?"]


def _msgs(q: str) -> list[dict]:
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": q}]


@pytest.fixture(scope="module")
def tiny_lora(real_engine, tmp_path_factory):
    """A tiny random llama and two saved LoRA adapters with non-zero B (q/v and MLP)."""
    from peft import LoraConfig, get_peft_model

    tok = real_engine.tokenizer
    base = tiny_llama(tok)
    folders = {}
    for name, targets in [("a", ["q_proj", "v_proj"]), ("b", ["gate_proj", "down_proj"])]:
        peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(
            r=4, lora_alpha=8, target_modules=targets))
        with torch.no_grad():
            for pname, p in peft_model.named_parameters():
                if "lora_B" in pname:
                    p.normal_(std=0.5)
        folders[name] = tmp_path_factory.mktemp(name)
        peft_model.save_pretrained(str(folders[name]))
    return base, tok, folders


def _engine(tiny_lora, fast_path: str) -> Engine:
    base, tok, folders = tiny_lora
    engine = Engine(copy.deepcopy(base), tok, "cpu", 512, fast_path=fast_path)
    for name, folder in folders.items():
        engine.load_adapter(name, folder)
    return engine


def test_real_model_fp16_fast_path_matches_fp32_greedy(real_engine):
    plain = Engine(real_engine.model, real_engine.tokenizer, "cpu", 2048, fast_path="off")
    fast = Engine(real_engine.model, real_engine.tokenizer, "cpu", 2048, fast_path="fp16")
    params = GenParams(max_new_tokens=24)
    for q in PROMPTS:
        assert fast.complete(_msgs(q), params) == plain.complete(_msgs(q), params)
    assert fast._fast[BASE] is not None  # the answers really came from the fast path


def test_fp32_fast_logits_match_transformers(real_engine):
    ids = real_engine.encode(_msgs(PROMPTS[0]))
    fast = FastModel(real_engine.model, None, "fp32")
    _, logits = fast.prefill(ids, len(ids) + 4)
    with torch.inference_mode():
        ref = real_engine.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert torch.allclose(logits, ref, atol=1e-3)


def test_merged_lora_matches_peft_per_request(tiny_lora):
    fast, plain = _engine(tiny_lora, "fp32"), _engine(tiny_lora, "off")
    params = GenParams(max_new_tokens=12)
    outputs = {}
    for adapter in (BASE, "a", "b"):
        ours = list(fast.generate_ids(fast.encode(_msgs("hi")), params, adapter))
        assert ours == list(plain.generate_ids(plain.encode(_msgs("hi")), params, adapter))
        outputs[adapter] = ours
    assert len({tuple(v) for v in outputs.values()}) == 3  # the adapters really differ
    assert fast._fast["a"] is not None and fast._fast["b"] is not None


def test_concurrent_requests_on_different_adapters(tiny_lora):
    engine = _engine(tiny_lora, "fp16")
    params = GenParams(max_new_tokens=16)
    ids = engine.encode(_msgs("tell me"))
    expected = {a: list(engine.generate_ids(ids, params, a)) for a in ("a", "b", BASE)}
    got: dict[str, list[int]] = {}

    def worker(adapter: str) -> None:
        got[adapter] = list(engine.generate_ids(ids, params, adapter))

    threads = [threading.Thread(target=worker, args=(a,)) for a in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_in_flight_request_finishes_on_its_version_after_unload(tiny_lora):
    engine = _engine(tiny_lora, "fp16")
    params = GenParams(max_new_tokens=16)
    ids = engine.encode(_msgs("story"))
    expected = list(engine.generate_ids(ids, params, "a"))
    stream = engine.generate_ids(ids, params, "a")
    first = next(stream)
    engine.unload_adapter("a")
    assert [first, *stream] == expected
    assert "a" not in engine._fast


def test_adapter_the_fast_path_cannot_merge_falls_back_to_peft(tiny_lora, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, tok, _ = tiny_lora
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=4, target_modules=["q_proj", "embed_tokens"]))
    with torch.no_grad():
        for pname, p in peft_model.named_parameters():
            if "lora_B" in pname or "lora_embedding_B" in pname:
                p.normal_(std=0.5)
    peft_model.save_pretrained(str(tmp_path))
    fast, plain = _engine(tiny_lora, "fp32"), _engine(tiny_lora, "off")
    for engine in (fast, plain):
        engine.load_adapter("emb", tmp_path)
    params = GenParams(max_new_tokens=10)
    ids = fast.encode(_msgs("hello"))
    assert list(fast.generate_ids(ids, params, "emb")) == list(
        plain.generate_ids(ids, params, "emb"))
    assert fast._fast["emb"] is None  # served by peft, not a wrong merge


@pytest.mark.parametrize("mode", ["fp32", "fp16"])
def test_prompt_prefix_reuse_gives_the_same_logits(tiny_lora, mode):
    base, tok, _ = tiny_lora
    fast = FastModel(base, None, mode)
    encode = Engine(base, tok, "cpu", 512, fast_path="off").encode
    first, second = encode(_msgs("first question")), encode(_msgs("another one"))
    fast.prefill(list(first), 64)
    cache, reused = fast.prefill(list(second), 64)
    _, fresh = FastModel(base, None, mode).prefill(list(second), 64)
    assert torch.allclose(reused, fresh, atol=1e-4)
    assert cache.length == len(second)
    assert 0 < cache.reused < len(second)  # the shared system prompt was not recomputed


def test_a_follow_up_starts_from_its_own_conversation_after_someone_else_asked(tiny_lora):
    base, tok, _ = tiny_lora
    encode = Engine(base, tok, "cpu", 512, fast_path="off").encode
    turn_one = _msgs("what is a lighthouse")
    follow_up = encode(turn_one + [{"role": "assistant", "content": "A tower with a light."},
                                   {"role": "user", "content": "who keeps it"}])

    def after_bob(key):
        fast = FastModel(base, None, "fp32")
        fast.prefill(encode(turn_one), 64, key="ann" if key else None)
        fast.prefill(encode(_msgs("an unrelated question from bob")), 64, key="bob")
        return fast.prefill(follow_up, 64, key=key)

    cache, reused = after_bob("ann")
    assert cache.reused >= len(encode(turn_one)) - 3  # all of ann's first turn came back
    anonymous, _ = after_bob(None)  # no conversation: only bob's prompt, the system prompt
    assert 0 < anonymous.reused < len(encode(turn_one)) - 3
    _, fresh = FastModel(base, None, "fp32").prefill(follow_up, 64)
    assert torch.allclose(reused, fresh, atol=1e-4)


def test_prefix_cache_keeps_only_the_most_recent_conversations():
    from chat.engine.fastpath import KVCache
    from chat.engine.prefix_cache import PrefixCache

    prefixes = PrefixCache(conversations=2)
    caches = {key: KVCache(1, 1, 4, 2) for key in "abc"}
    for key in "abc":
        prefixes.remember([1, 2, ord(key)], caches[key], key)
    assert prefixes.best([1, 2, ord("a"), 9], "a") == (2, caches["c"])  # a evicted: last only
    assert prefixes.best([1, 2, ord("b"), 9], "b") == (3, caches["b"])
    assert prefixes.best([7], "b") == (0, None)


def test_prefix_cache_keeps_conversations_within_its_memory_budget():
    from chat.engine.fastpath import KVCache
    from chat.engine.prefix_cache import PrefixCache

    def cache():  # 2 layers x 1 head x 8 positions x 4 dims, keys and values: 512 bytes
        return KVCache(2, 1, 8, 4)

    prefixes = PrefixCache(conversations=6, max_bytes=2 * 512)  # room for two
    for key in "abcd":
        prefixes.remember([ord(key)], cache(), key)
    assert [prefixes.best([ord(k)], k)[0] for k in "abcd"] == [0, 0, 1, 1]


def test_same_name_from_another_folder_replaces_the_adapter(tiny_lora):
    _, _, folders = tiny_lora
    engine, reference = _engine(tiny_lora, "fp16"), _engine(tiny_lora, "fp16")
    params = GenParams(max_new_tokens=8)
    ids = engine.encode(_msgs("hi"))
    engine.load_adapter("v1", folders["a"])
    assert list(engine.generate_ids(ids, params, "v1")) == list(
        reference.generate_ids(ids, params, "a"))
    engine.load_adapter("v1", folders["b"])  # e.g. v0001 of another data folder
    assert list(engine.generate_ids(ids, params, "v1")) == list(
        reference.generate_ids(ids, params, "b"))


def test_unknown_fast_path_setting_is_a_clear_error(tiny_lora):
    base, tok, _ = tiny_lora
    with pytest.raises(BadInput, match="fast_path"):
        Engine(base, tok, "cpu", 512, fast_path="int4")


@pytest.mark.parametrize("setting, expected", [
    ("auto", "picked by memory"), ("off", "off"), ("bf16", "bf16"), ("fp32", "fp32"),
    ("fp16", "CPU kernels"), ("int8", "CPU kernels")])
def test_a_gpu_takes_only_the_gpu_kinds_of_fast_path(setting, expected):
    from chat.engine.fast_mode import choose_fast_mode

    if expected == "CPU kernels":
        with pytest.raises(BadInput, match="fast_path .* uses CPU kernels; on cuda use bf16"):
            choose_fast_mode(setting, "cuda")
    else:
        assert choose_fast_mode(setting, "cuda", lambda: "picked by memory") == expected
    assert choose_fast_mode(setting, "cpu") == ("fp16" if setting == "auto" else setting)


SMOLLM2_135M = (134_515_008, 28_311_552, True)  # parameters, embedding (49152 x 576), tied
BIG_TIED = (1_700_000_000, 100_663_296, True)     # a 1.7B model with a 49152 x 2048 embedding


@pytest.mark.parametrize("model, gpu_gib, expected", [
    (SMOLLM2_135M, 80, "fp32"),  # 3 fp32 copies of 651 MB: 2.0 GB of a 21.5 GB quarter
    (SMOLLM2_135M, 5, "bf16"),   # fp32 2.0 GB > 1.34 GB; bf16 3 x 382 MB fits
    (SMOLLM2_135M, 4, "off"),    # bf16 1.15 GB > 1.07 GB
    (BIG_TIED, 80, "bf16"),      # fp32 3 x 7.20 GB = 21.61 GB > 21.47 GB (the embedding in fp32
                                 # and the tied head's own copy tip it over); bf16 11.4 GB fits
    (BIG_TIED, 160, "fp32"),
    ((7_000_000_000, 131_072_000, False), 80, "off")])  # 84 GB in fp32, 42.8 GB in bf16
def test_gpu_auto_takes_fp32_where_its_copies_fit_then_bf16_then_nothing(model, gpu_gib,
                                                                        expected):
    from chat.engine.fast_mode import gpu_auto_mode

    assert gpu_auto_mode(*model, gpu_gib * 2**30, copies=3) == expected
