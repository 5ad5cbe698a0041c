"""The trainers: TRL DPO / KTO / reward model + RLOO, each on a LoRA over the base model."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chat.engine.hardware import cpu_has_fast_bf16
from training.config import TrainSettings
from training.datasets import kto_weights, trl_columns
from training.early_stop import Watch, make_early_stopping, restore_best
from training.memory import freeze_linears_in_bf16, trim_heap

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The run was cancelled from outside (cancel_requested)."""


@dataclass
class Hooks:
    """How a trainer reports: on_log(step, total, logs) and should_stop() -> bool."""
    on_log: Callable[[int, int, dict], None] = lambda step, total, logs: None
    should_stop: Callable[[], bool] = lambda: False
    phase: str = "train"
    trainer: object = None  # the last TRL trainer, for tests that inspect its weights
    deadline: float | None = None  # time.monotonic() past which training ends (not cancelled)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def make_callback(hooks: Hooks):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Writes logs to the database; stops the trainer when a cancel is requested or the
        run's wall time is spent (then what was trained so far is saved and gated)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            clean = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            hooks.on_log(state.global_step, state.max_steps, {"phase": hooks.phase, **clean})

        def on_step_end(self, args, state, control, **kwargs):
            trim_heap()  # each step starts from live memory (training/memory.py)
            if hooks.should_stop() or hooks.out_of_time():
                control.should_training_stop = True

    return ProgressCallback()


def device_and_dtype(precision: str = "auto"):
    """Where training runs and the dtype its weights load in: a GPU trains in bf16 (fp16
    without bf16 support) unless fp32 is asked for; a CPU keeps fp32 weights (autocast aside)."""
    import torch

    if torch.cuda.is_available():
        if precision == "fp32":
            return "cuda", torch.float32
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def cpu_autocast_bf16(precision: str) -> bool:
    """On a CPU: fp32 weights with bf16 autocast where the CPU multiplies bf16 natively."""
    return precision == "bf16" or (precision == "auto" and cpu_has_fast_bf16())


def load_frozen_policy(base_path: str, precision: str = "auto"):
    """The policy for LoRA training: under CPU bf16 autocast its frozen linear weights are
    kept in bf16 (training/memory.py), as autocast would cast them on every forward."""
    model, tok = load_policy(base_path, precision)
    if device_and_dtype(precision)[0] == "cpu" and cpu_autocast_bf16(precision):
        freeze_linears_in_bf16(model)
    return model, tok


def load_policy(base_path: str, precision: str = "auto"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = device_and_dtype(precision)
    tok = AutoTokenizer.from_pretrained(base_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device)
    return model, tok


def lora_config(s: TrainSettings, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=s.lora.r, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout,
                      target_modules=list(s.lora.target_modules), task_type=task_type,
                      bias="none")


def common_args(s: TrainSettings, out_dir: Path, lr: float | None = None,
                epochs: float | None = None, max_steps: int | None = None) -> dict:
    """TrainingArguments shared by every method (CPU-friendly; bf16 on a GPU)."""
    device, dtype = device_and_dtype(s.optim.precision)
    import torch

    bf16 = dtype == torch.bfloat16 or (device == "cpu" and cpu_autocast_bf16(s.optim.precision))
    micro = min(s.optim.micro_batch, s.optim.batch_size)
    return dict(
        output_dir=str(out_dir), per_device_train_batch_size=micro,
        gradient_accumulation_steps=math.ceil(s.optim.batch_size / micro),
        num_train_epochs=epochs or s.optim.epochs,
        max_steps=max_steps if max_steps is not None else s.optim.max_steps,
        learning_rate=lr or s.optim.learning_rate, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to=[],
        seed=s.data.seed, disable_tqdm=True, use_cpu=device == "cpu",
        bf16=bf16, fp16=dtype == torch.float16,
        gradient_checkpointing=False, dataloader_num_workers=0)


def watching(s: TrainSettings, heldout: list[dict], tok, n_train: int) -> tuple:
    """(Watch, callbacks) for early stopping on the held-out feedback (none when off)."""
    if s.optim.patience <= 0 or not heldout:
        return None, []
    per_epoch = math.ceil(n_train / s.optim.batch_size)
    every = s.optim.eval_every or max(1, math.ceil(per_epoch / 2))
    watch = Watch(patience=s.optim.patience, min_gain=s.optim.min_gain,
                  enough_margin=s.optim.enough_margin,
                  enough_accuracy=s.optim.enough_accuracy)
    return watch, [make_early_stopping(watch, heldout, tok, s.optim.max_length, every)]


def _finish(trainer, hooks: Hooks, out_dir: Path, watch: Watch | None = None) -> dict:
    hooks.trainer = trainer
    trainer.train()
    if hooks.should_stop():
        raise Cancelled("the run was cancelled")
    kept = trainer.state.global_step
    if watch is not None and watch.best_state is not None:
        restore_best(trainer.model, watch)
        kept = watch.best_step
    trainer.model.save_pretrained(str(out_dir), safe_serialization=True)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step,
            "final_loss": logs[-1]["loss"] if logs else None,
            "last_log": logs[-1] if logs else {},
            "kept_step": kept,
            "heldout_scores": watch.history if watch else []}


# ---------------------------------------------------------------------------- DPO


def train_dpo(base_path: str, rows: list[dict], s: TrainSettings, out_dir: Path,
              hooks: Hooks, heldout: list[dict] | None = None) -> dict:
    """Direct preference optimisation on (prompt, chosen, rejected); the reference is the
    base model with the adapter disabled, which peft gives for free."""
    from datasets import Dataset
    from trl import DPOConfig

    model, tok = load_frozen_policy(base_path, s.optim.precision)
    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, s.optim.sft_weight]} \
        if s.optim.sft_weight > 0 else {}
    args = DPOConfig(**common_args(s, out_dir / "work"), beta=s.optim.beta,
                     max_length=s.optim.max_length, truncation_mode="keep_end", **losses)
    watch, early = watching(s, heldout or [], tok, len(rows))
    trainer = shared_prefix_dpo_trainer(s.optim.loss_on)(
        model=model, args=args, processing_class=tok, peft_config=lora_config(s),
        train_dataset=Dataset.from_list(trl_columns(rows, ("prompt", "chosen", "rejected"))),
        callbacks=[make_callback(hooks), *early])
    return _finish(trainer, hooks, out_dir, watch)


def shared_prefix_dpo_trainer(loss_on: str = "whole"):
    """TRL's DPOTrainer whose policy and reference passes compute each pair's shared prefix
    once (training/shared_prefix.py): same loss and gradients, fewer tokens. `loss_on` other
    than "whole": the loss covers only the tokens where a pair's answers differ, with
    "all-but-suffix" their shared start too (training/pair_focus.py)."""
    from trl import DPOTrainer

    from training.pair_focus import focus_mask
    from training.shared_prefix import sharing_prefixes

    def focused(inputs):
        if loss_on == "whole":
            return inputs
        return {**inputs, "completion_mask": focus_mask(
            inputs["input_ids"], inputs["completion_mask"], loss_on == "all-but-suffix")}

    class SharedPrefixDPOTrainer(DPOTrainer):
        def _compute_loss(self, model, inputs, return_outputs):
            with sharing_prefixes(self.model):
                return super()._compute_loss(model, focused(inputs), return_outputs)

        def compute_ref_log_probs(self, model, inputs):
            with sharing_prefixes(self.model):
                return super().compute_ref_log_probs(model, focused(inputs))

    return SharedPrefixDPOTrainer


# ---------------------------------------------------------------------------- KTO


def train_kto(base_path: str, rows: list[dict], s: TrainSettings, out_dir: Path,
              hooks: Hooks, heldout: list[dict] | None = None) -> dict:
    """KTO on thumbs (prompt, completion, label), weights balancing up- and down-votes."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    desirable, undesirable = kto_weights(rows)
    model, tok = load_frozen_policy(base_path, s.optim.precision)
    args = KTOConfig(**common_args(s, out_dir / "work"), beta=s.optim.beta,
                     max_length=s.optim.max_length, desirable_weight=desirable,
                     undesirable_weight=undesirable)
    watch, early = watching(s, heldout or [], tok, len(rows))
    trainer = KTOTrainer(
        model=model, args=args, processing_class=tok, peft_config=lora_config(s),
        train_dataset=Dataset.from_list(trl_columns(rows, ("prompt", "completion", "label"))),
        callbacks=[make_callback(hooks), *early])
    metrics = _finish(trainer, hooks, out_dir, watch)
    return {**metrics, "desirable_weight": desirable, "undesirable_weight": undesirable}
