"""Exact GGUF block kernels (chat/engine/c_kernels.py) and their use by the fast path's decode."""
import copy

import pytest
import torch

from chat.engine import c_kernels
from chat.engine.c_kernels import find_blocks
from chat.engine.engine import BASE, Engine, GenParams
from chat.engine.fastpath import FastModel, prompt_kernel
from tests.model_support import tiny_llama

needs_kernels = pytest.mark.skipif(c_kernels.problem() is not None,
                                   reason=f"block kernels: {c_kernels.problem()}")
needs_prompt_kernel = pytest.mark.skipif(c_kernels.prompt_problem() is not None,
                                         reason=f"prompt kernel: {c_kernels.prompt_problem()}")


def q4_1(weight: torch.Tensor) -> torch.Tensor:
    """`weight` moved onto a Q4_1 grid as llama.cpp quantizes and gguf dequantizes it."""
    blocks = weight.reshape(weight.shape[0], -1, 32)
    low = blocks.amin(-1, keepdim=True)
    d = ((blocks.amax(-1, keepdim=True) - low) / 15).half().float()
    q = torch.round((blocks - low) / torch.where(d > 0, d, 1.0)).clamp(0, 15)
    return (q * d + low.half().float()).reshape(weight.shape)


def q8_0(weight: torch.Tensor) -> torch.Tensor:
    blocks = weight.reshape(weight.shape[0], -1, 32)
    d = (blocks.abs().amax(-1, keepdim=True) / 127).half().float()
    q = torch.round(blocks / torch.where(d > 0, d, 1.0)).clamp(-127, 127)
    return (q * d).reshape(weight.shape)


def test_grid_weights_are_found_and_rebuilt_bit_for_bit():
    torch.manual_seed(0)
    for make, kind in ((q4_1, "q4_1"), (q8_0, "q8_0")):
        weight = torch.randn(48, 96) * 0.1
        weight[7], weight[9, 32:64] = 0.0, 0.25  # blocks of one value: a padding row, say
        weight = make(weight)
        blocks = find_blocks(weight)
        assert blocks is not None and blocks.kind == kind
        if c_kernels.problem() is None:  # one-hot rows read each weight back, no sum
            assert torch.equal(blocks(torch.eye(96)).T, weight)


def test_weights_off_any_grid_are_left_alone():
    torch.manual_seed(0)
    grid = q4_1(torch.randn(16, 64))
    nudged = grid.clone()
    nudged[3, 5] = torch.nextafter(nudged[3, 5], torch.tensor(1.0))
    for weight in (torch.randn(16, 64),  # an ordinary fp32 model
                   nudged,  # one value a single ulp off the grid
                   grid.to(torch.bfloat16),  # other dtypes are not rebuilt
                   grid[:, :48]):  # rows that are not whole blocks
        assert find_blocks(weight) is None


@needs_kernels
@pytest.mark.parametrize("kind", ["q4_1", "q8_0"])
def test_kernel_with_norm_lora_and_residual_matches_float64(kind):
    torch.manual_seed(1)
    weight = (q4_1 if kind == "q4_1" else q8_0)(torch.randn(40, 64) * 0.1)
    blocks = find_blocks(weight)
    x, norm, residual = torch.randn(3, 64), torch.rand(64) + 0.5, torch.randn(3, 40)
    a, b = torch.randn(5, 64) * 0.1, torch.randn(5, 40) * 0.1  # 40 outputs: a masked tail
    got = blocks(x, norm, 1e-5, (a, b), into=residual.clone())
    xd = x.double()
    xn = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.double()
    want = residual.double() + xn @ weight.double().T + (xn @ a.double().T) @ b.double()
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5)
    assert torch.allclose(blocks(x).double(), xd @ weight.double().T, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def grid_model(real_engine, tmp_path_factory):
    """A tiny random llama whose weights lie on GGUF grids (linears Q4_1, head Q8_0), as the
    shipped model's do, and a saved LoRA (q/v and down) with non-zero B."""
    from peft import LoraConfig, get_peft_model

    tok = real_engine.tokenizer
    model = tiny_llama(tok, head_dim=64)  # heads of 64: decode attention runs in C too
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_((q8_0 if "embed" in name or "lm_head" in name else q4_1)(p * 20))
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    folder = tmp_path_factory.mktemp("grid_lora")
    peft_model.save_pretrained(str(folder))
    return model, tok, folder


def _engine(grid_model, fast_path: str, blocks: bool = True,
            prompt_blocks: bool = False) -> Engine:
    """An engine over the grid model; prompts read fp32 weights unless `prompt_blocks`."""
    model, tok, folder = grid_model
    engine = Engine(copy.deepcopy(model), tok, "cpu", 512, fast_path=fast_path,
                    block_kernels=blocks, prompt_blocks=prompt_blocks)
    engine.load_adapter("a", folder)
    return engine


@needs_kernels
def test_block_decode_with_a_lora_gives_peft_fp32_answers(grid_model):
    fast, plain = _engine(grid_model, "fp32"), _engine(grid_model, "off")
    params = GenParams(max_new_tokens=16)
    ids = fast.encode([{"role": "user", "content": "hello there"}])
    for adapter in (BASE, "a"):
        assert list(fast.generate_ids(ids, params, adapter)) == list(
            plain.generate_ids(ids, params, adapter))
        model = fast.prepare(None if adapter == BASE else adapter)
        assert model.block_linears == 9  # 2 layers x 4 fused matrices + the head
        assert model.kernels["decode"].endswith(", attention in C")


@needs_kernels
def test_block_decode_logits_match_peft_step_by_step(grid_model):
    engine = _engine(grid_model, "fp32")
    fast = engine.prepare("a")
    ids = engine.encode([{"role": "user", "content": "count to five"}])
    cache, logits = fast.prefill(ids, len(ids) + 4)
    steps = [logits]
    for token in (11, 12, 13):
        steps.append(fast.forward([token], cache))
    engine.model.set_adapter("a")
    with torch.inference_mode():
        ref = engine.model(input_ids=torch.tensor([ids + [11, 12, 13]])).logits[0, -4:]
    assert torch.allclose(torch.stack(steps), ref, atol=1e-4)


@pytest.mark.parametrize("compiler, why", [
    ("false", "false exited 1"),  # a "compiler" that always fails
    ("/no/such/cc", "No such file"),
])
def test_without_a_compiler_decode_keeps_the_modes_own_weights(grid_model, monkeypatch,
                                                                 compiler, why):
    c_kernels._load.cache_clear()
    monkeypatch.setenv("CC", compiler)
    try:
        assert c_kernels.problem().startswith("building the block kernels failed")
        assert why in c_kernels.problem()
        engine = _engine(grid_model, "fp16")
        fast = engine.prepare("a")
        assert fast.block_linears == 0
        assert fast.kernels["decode"].startswith(
            "fp16 (block kernels: building the block kernels failed")
        assert len(list(engine.generate_ids(engine.encode([{"role": "user", "content": "hi"}]),
                                            GenParams(max_new_tokens=4), "a"))) == 4
    finally:
        monkeypatch.undo()
        c_kernels._load.cache_clear()


def test_block_kernels_can_be_turned_off(grid_model):
    fast = _engine(grid_model, "fp16", blocks=False).prepare(None)
    assert fast.block_linears == 0
    assert fast.kernels["decode"] == "fp16 (block kernels: turned off)"


@needs_kernels
def test_real_model_decodes_every_linear_through_exact_blocks(real_engine):
    fast = FastModel(real_engine.model, None, "fp16")
    layers = len(fast.layers)
    assert fast.block_linears == 4 * layers + 1, fast.kernels
    # prompts over the base (its blocks, else its fp32 weights unless bf16 pays): no copies
    if c_kernels.prompt_problem() is None or prompt_kernel("fp16") != "bf16":
        assert fast.shared_linears == 4 * layers, fast.kernels


@needs_kernels
def test_kernels_build_in_the_temp_folder_when_the_cache_folder_cannot_be_made(tmp_path,
                                                                                 monkeypatch):
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    c_kernels._load.cache_clear()
    try:
        assert c_kernels.problem() is None
        assert [p.name.startswith("blockquant-") for p in (tmp_path / "tmp").iterdir()] == [True]
    finally:
        monkeypatch.undo()
        c_kernels._load.cache_clear()


@needs_kernels
def test_a_compiler_command_with_arguments_and_a_broken_cached_library(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "env gcc")  # as CC="ccache gcc" would be
    built = c_kernels.library_path(["env", "gcc"])
    built.write_bytes(b"not a shared library")  # a crash while copying, a full disk...
    c_kernels._load.cache_clear()
    try:
        assert c_kernels.problem() is None  # rebuilt, not given up on
        assert [p.name for p in built.parent.iterdir()] == [built.name]
        assert built.stat().st_size > 1000
    finally:
        monkeypatch.undo()
        c_kernels._load.cache_clear()


@needs_kernels
def test_the_kernel_refuses_to_write_over_its_own_input():
    blocks = find_blocks(q4_1(torch.randn(32, 32)))
    x = torch.randn(1, 32)
    with pytest.raises(ValueError, match="other than x"):
        blocks(x, into=x)
    with pytest.raises(ValueError, match="fp32 CPU"):
        blocks(x.double())
    for wrong in (torch.randn(1, 16), torch.randn(2, 1, 32)):  # would read past x's end
        with pytest.raises(ValueError, match=r"\[rows, 32\] inputs"):
            blocks(wrong)
        with pytest.raises(ValueError, match=r"\[rows, 32\] inputs"):
            blocks.prompt(wrong)


@needs_kernels
def test_real_model_decode_steps_match_fp32_transformers(real_engine):
    fast = FastModel(real_engine.model, None, "fp32")  # fp32 prompts, block decode steps
    assert fast.block_linears == 4 * len(fast.layers) + 1 and fast.c_attention
    ids = real_engine.encode([{"role": "user", "content": "Name three colours."}])
    cache, logits = fast.prefill(ids, len(ids) + 8)
    steps, tokens = [logits], []
    for _ in range(4):
        tokens.append(int(steps[-1].argmax()))
        steps.append(fast.forward([tokens[-1]], cache))
    with torch.inference_mode():
        ref = real_engine.model(input_ids=torch.tensor([ids + tokens])).logits[0, -5:]
    assert torch.allclose(torch.stack(steps), ref, atol=1e-3)
