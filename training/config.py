"""Typed settings for a training run, one dataclass per concern (TRL style). Every section
checks its fields' types and ranges on construction (training/checks.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from training.checks import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Checked,
    Range,
    non_empty,
    one_of,
    reject_unknown,
    settings_dict,
)

METHODS = ("auto", "dpo", "kto", "rlhf", "retrieval")


@dataclass
class DataSettings(Checked):
    min_pairs: int = field(default=8, metadata={"help": "fewest preference pairs for dpo/rlhf"})
    min_ratings: int = field(default=12, metadata={"help": "fewest ratings for kto"})
    max_user_share: float = field(
        default=0.5, metadata={"help": "largest share of a run one user may contribute"})
    heldout_fraction: float = field(default=0.2, metadata={"help": "kept out for the gate"})
    max_heldout: int = field(default=50, metadata={"help": "cap on held-out items"})
    seed: int = field(default=13, metadata={"help": "split/shuffle seed (reproducible)"})

    _section = "data"
    _rules = {"min_pairs": Range(2), "min_ratings": Range(2), "max_user_share": FRACTION,
              "heldout_fraction": Range(0, 1, low_open=True, high_open=True),
              "max_heldout": POSITIVE, "seed": Range(0, 2**32 - 1)}  # numpy's seed range


@dataclass
class LoraSettings(Checked):
    r: int = field(default=16, metadata={"help": "LoRA rank"})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    _section = "lora"
    _rules = {"r": POSITIVE, "alpha": POSITIVE, "dropout": Range(0, 1, high_open=True),
              "target_modules": non_empty}


@dataclass
class OptimSettings(Checked):
    # How these were chosen: docs/learning.md (the scenario suite).
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW learning rate"})
    epochs: float = field(default=4.0, metadata={
        "help": "most passes over the training split (early stopping usually ends sooner)"})
    batch_size: int = 8
    micro_batch: int = field(default=2, metadata={
        "help": "examples a forward pass (batch_size is reached by accumulation): memory"})
    max_length: int = field(default=512, metadata={"help": "prompt + answer tokens"})
    max_steps: int = field(default=-1, metadata={"help": "> 0 overrides epochs"})
    beta: float = field(default=0.5, metadata={"help": "DPO/KTO KL strength"})
    sft_weight: float = field(
        default=1.0, metadata={"help": "DPO: weight of an SFT loss on chosen answers (0: off)"})
    loss_on: str = field(default="all-but-suffix", metadata={
        "help": "DPO: the tokens the loss covers: difference (where a pair's answers differ, "
                "training/pair_focus.py) | all-but-suffix (and their shared start) | whole "
                "(every answer token)"})
    precision: str = field(default="auto", metadata={
        "help": "auto (CPU: bf16 autocast where the CPU multiplies bf16 fast, else fp32; "
                "CUDA: bf16 weights, fp16 without bf16 support) | bf16 | fp32 (on CUDA too)"})
    max_seconds: float = field(default=0.0, metadata={
        "help": "wall-time cap on training (0: none); a run stops after the step that passes "
                "it and is gated as trained so far"})
    patience: int = field(default=2, metadata={
        "help": "held-out scores without gain before training stops (0: no early stopping)"})
    eval_every: int = field(default=0, metadata={
        "help": "steps between held-out scores (0: twice an epoch)"})
    min_gain: float = field(default=0.05, metadata={
        "help": "share by which the held-out margin must beat the best to count as a gain"})
    enough_margin: float = field(default=3.0, metadata={
        "help": "training stops once the model itself prefers the held-out liked answers by "
                "this mean log-likelihood margin (nats), winning enough_accuracy of them"})
    enough_accuracy: float = field(default=0.75, metadata={
        "help": "share of held-out pairs the model must prefer the liked side of to stop "
                "on enough_margin (a few odd pairs need not be forced)"})

    _section = "optim"
    _rules = {"learning_rate": POSITIVE, "epochs": POSITIVE, "batch_size": POSITIVE,
              "micro_batch": POSITIVE, "max_length": Range(32), "beta": POSITIVE,
              "sft_weight": NON_NEGATIVE, "precision": one_of("auto", "bf16", "fp32"),
              "loss_on": one_of("difference", "all-but-suffix", "whole"),
              "max_seconds": NON_NEGATIVE, "patience": NON_NEGATIVE,
              "eval_every": NON_NEGATIVE, "min_gain": NON_NEGATIVE,
              "enough_margin": NON_NEGATIVE, "enough_accuracy": Range(0, 1)}


@dataclass
class RLHFSettings(Checked):
    reward_epochs: float = 2.0
    reward_learning_rate: float = 5e-4
    rl_steps: int = field(default=8, metadata={"help": "RLOO optimisation steps"})
    num_generations: int = field(default=4, metadata={"help": "samples per prompt (RLOO)"})
    max_completion_length: int = 48
    max_prompts: int = 64
    rl_learning_rate: float = 2e-4

    _section = "rlhf"
    _rules = {"reward_epochs": POSITIVE, "reward_learning_rate": POSITIVE,
              "rl_steps": POSITIVE, "num_generations": Range(2),  # RLOO needs a baseline
              "max_completion_length": POSITIVE, "max_prompts": POSITIVE,
              "rl_learning_rate": POSITIVE}


@dataclass
class GateSettings(Checked):
    min_pref_accuracy: float = field(
        default=0.6, metadata={"help": "held-out preference accuracy the candidate must reach"})
    # a net for wholesale damage only: perplexity of reference answers also rises with any new
    # opener, sign-off or length (up to x1.5 on the scenario suite); the drift and fact checks
    # below tell damage from change (docs/learning.md)
    max_ppl_ratio: float = field(
        default=3.0, metadata={"help": "reference-set perplexity bound relative to the base"})
    min_heldout: int = field(default=2, metadata={"help": "fewest held-out items to judge on"})
    reward_tolerance: float = field(
        default=0.0, metadata={"help": "how far below active's reward a candidate may score"})
    visible_prompts: int = field(default=8, metadata={
        "help": "held-out prompts both versions answer greedily (0: skip the visible check)"})
    min_visible_gain: float = field(default=0.25, metadata={
        "help": "share of those answers that must move to the liked side of the feedback"})
    visible_max_tokens: int = field(default=160, metadata={
        "help": "cap on each of those answers (else the longest liked answer, + 8 tokens)"})
    max_interior_kl: float = field(default=0.3, metadata={
        "help": "median token KL from the base inside the reference answers"})
    # facts scored as sentences: good adapters moved it -0.8 to 0.6 nats on the suite, 1.56 on
    # the public efficacy scenario (its answers are sentences about capitals), one trained on
    # wrong facts 4.1; the bound sits between, at about their geometric mean (docs/learning.md)
    max_facts_drop: float = field(default=2.5, metadata={
        "help": "nats by which the right answers' lead over wrong ones may fall, on average "
                "over the facts the base knows"})
    max_repetition_rise: float = field(default=0.1, metadata={
        "help": "how much more of its answers' word 4-grams the candidate may repeat"})

    _section = "gate"
    _rules = {"min_pref_accuracy": Range(0, 1), "max_ppl_ratio": Range(1),
              "min_heldout": NON_NEGATIVE, "reward_tolerance": NON_NEGATIVE,
              "visible_prompts": NON_NEGATIVE, "min_visible_gain": Range(0, 1),
              "visible_max_tokens": POSITIVE, "max_interior_kl": NON_NEGATIVE,
              "max_facts_drop": NON_NEGATIVE, "max_repetition_rise": Range(0, 1)}


@dataclass
class RetrievalSettings(Checked):
    """`train --method retrieval`: a query map learned from source feedback
    (retrieval/query_map.py); how these were chosen: docs/learning.md."""
    min_marks: int = field(default=8, metadata={"help": "fewest source marks to train on"})
    folds: int = field(default=5, metadata={
        "help": "the gate holds out each question once, ranked by a map trained on the rest"})
    candidates: int = field(default=20, metadata={
        "help": "chunks each query is ranked among in training (the index's top, plus marks)"})
    steps: int = field(default=150, metadata={"help": "full-batch optimisation steps"})
    learning_rate: float = 0.01
    temperature: float = field(default=0.05, metadata={"help": "softmax temperature on cosine"})
    identity_weight: float = field(default=0.1, metadata={
        "help": "pull toward the plain embedder (what nobody marked stays where it was)"})
    near_start: float = field(default=0.35, metadata={
        "help": "cosine to the nearest trained question below which a query is not moved"})
    near_full: float = field(default=0.5, metadata={
        "help": "cosine to the nearest trained question from which a query moves fully"})
    k: int = field(default=3, metadata={"help": "the k of hit@k in the gate"})
    depth: int = field(default=50, metadata={"help": "ranks below this count as a miss"})
    max_regression_drop: float = field(default=0.0, metadata={
        "help": "how far the shipped regression set's MRR and hit@k may fall"})

    _section = "retrieval"
    _rules = {"min_marks": Range(2), "folds": Range(2), "candidates": POSITIVE, "steps": POSITIVE,
              "learning_rate": POSITIVE, "temperature": POSITIVE,
              "identity_weight": NON_NEGATIVE, "near_start": Range(-1, 1),
              "near_full": Range(-1, 1), "k": POSITIVE, "depth": POSITIVE,
              "max_regression_drop": Range(0, 1)}


@dataclass
class TrainSettings(Checked):
    """Sections may also be given as dicts of their settings; they are built on __init__."""
    method: str = "auto"
    activate: bool = True
    data: DataSettings = field(default_factory=DataSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    rlhf: RLHFSettings = field(default_factory=RLHFSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)

    _rules = {"method": one_of(*METHODS)}

    def __post_init__(self) -> None:
        super().__post_init__()
        # the split never holds out more than data.max_heldout, and the gate rejects any
        # adapter judged on fewer than gate.min_heldout: every run would be rejected
        if self.data.max_heldout < self.gate.min_heldout:
            raise ValueError(f"data.max_heldout must be at least gate.min_heldout "
                             f"({self.gate.min_heldout}), got {self.data.max_heldout}")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_config(cls, cfg, optim: dict | None = None, **kwargs) -> TrainSettings:
        """Settings for a run started by this deployment: cfg.train_max_steps (> 0) caps the
        steps of runs that do not set their own (quick checks, demos, tests)."""
        optim = settings_dict("optim", optim, optional=True)
        if getattr(cfg, "train_max_steps", 0) > 0 and optim.get("max_steps") is None:
            optim["max_steps"] = cfg.train_max_steps
        return cls.from_dict({**kwargs, "optim": optim})

    @classmethod
    def from_dict(cls, data: dict | None) -> TrainSettings:
        """Build from (possibly partial) nested dicts; unknown keys and values of the wrong
        type or out of range are a ValueError naming the setting."""
        data = settings_dict("training settings", data, optional=True)
        reject_unknown("training", data, cls)
        return cls(**data)
