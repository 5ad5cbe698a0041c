"""The heavy steps of a run, behind two functions: train the chosen method, gate the result."""

from __future__ import annotations

import shutil
from pathlib import Path

from chat.sanitize import special_token_pattern
from training.config import TrainSettings
from training.datasets import Split, inert_rows
from training.gate import GateResult, evaluate, load_for_gate
from training.rlhf import train_rlhf
from training.trainers import Hooks, device_and_dtype, train_dpo, train_kto


def train_method(method: str, base_path: str, data: Split, s: TrainSettings, out_dir: Path,
                 hooks: Hooks, store, cfg):
    """Train into out_dir; returns (metrics, reward scorer or None)."""
    data = inert_split(data, base_path)
    reward = None
    if method == "dpo":
        metrics = train_dpo(base_path, data.train, s, out_dir, hooks, data.heldout)
    elif method == "kto":
        metrics = train_kto(base_path, data.train, s, out_dir, hooks, data.heldout)
    elif method == "rlhf":
        metrics, reward = train_rlhf(base_path, data, s, out_dir, hooks, store, cfg)
    else:
        raise ValueError(f"unknown method {method!r}")
    shutil.rmtree(out_dir / "work", ignore_errors=True)  # trainer scratch, not the adapter
    return metrics, reward


def gate_candidate(base_path: str, folder: Path, active: dict | None, heldout: list[dict],
                   s: TrainSettings, system_prompt: str | None, reward=None) -> GateResult:
    """Load the saved candidate (and the active adapter) from safetensors and judge it."""
    device, dtype = device_and_dtype(s.optim.precision)
    active_folder = Path(active["path"]) if active else None
    model = load_for_gate(base_path, folder, active_folder, device, dtype)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    heldout = inert_rows(heldout, special_token_pattern(tok))  # as training saw its rows
    scorer = None
    if reward is not None:
        def scorer(adapter):
            return reward(model, tok, adapter)
    return evaluate(model, tok, heldout, s.gate, candidate="candidate",
                    active="active" if active_folder else None,
                    system_prompt=system_prompt, reward=scorer)


def inert_split(data: Split, base_path: str) -> Split:
    """The split with control-token strings made inert for this base model's tokenizer, as
    Engine.encode makes them when serving."""
    import dataclasses

    from transformers import AutoTokenizer

    pattern = special_token_pattern(AutoTokenizer.from_pretrained(base_path))
    return dataclasses.replace(data, train=inert_rows(data.train, pattern),
                               heldout=inert_rows(data.heldout, pattern))
