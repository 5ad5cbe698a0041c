"""Tiny random models for fast tests that still run the real llama code paths."""


def tiny_llama(tokenizer, max_positions: int = 1024, seed: int = 0, head_dim: int | None = None):
    """A 2-layer llama (hidden 64, GQA 4/2 heads of 16, or of `head_dim`) over the real
    tokenizer, in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=head_dim or 16,
                         max_position_embeddings=max_positions,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()
