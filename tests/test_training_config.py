"""TrainSettings input checks: bad values are a ValueError that names the setting."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest

from training.config import LoraSettings, OptimSettings, TrainSettings

NAN, INF = math.nan, math.inf


def test_defaults_round_trip_through_json():
    s = TrainSettings()
    assert TrainSettings.from_dict(json.loads(json.dumps(s.as_dict()))) == s
    assert TrainSettings.from_dict(None) == s == TrainSettings.from_dict({})


def test_valid_input_is_kept():
    s = TrainSettings.from_dict({
        "method": "rlhf", "activate": False,
        "optim": {"epochs": 1, "learning_rate": 1e-3, "max_steps": -1, "sft_weight": 0},
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj"]},
        "data": {"max_heldout": 1, "seed": 0},
        "gate": {"min_heldout": 0, "reward_tolerance": 0.5, "max_ppl_ratio": 1}})
    assert (s.method, s.activate, s.optim.epochs, s.optim.sft_weight) == ("rlhf", False, 1, 0)
    assert s.lora.target_modules == ["q_proj"] and s.gate.max_ppl_ratio == 1


def test_integral_floats_become_ints():
    s = TrainSettings.from_dict({"optim": {"batch_size": 4.0, "max_length": 96.0}})
    assert s.optim.batch_size == 4 and isinstance(s.optim.batch_size, int)
    assert isinstance(s.optim.max_length, int)


def test_sections_may_be_instances_or_dicts():
    optim = OptimSettings(epochs=1)
    assert TrainSettings.from_dict({"optim": optim}).optim is optim
    assert TrainSettings(lora={"r": 2}).lora == LoraSettings(r=2)


@pytest.mark.parametrize("data, message", [
    # structure
    ([1], "training settings must be a dict, got [1]"),
    ("x", "training settings must be a dict, got 'x'"),
    ({"x": 1}, "unknown training settings: x (allowed: method, activate, data,"),
    ({"optim": {"foo": 1}}, "unknown optim settings: foo (allowed: learning_rate,"),
    ({"optim": None}, "optim must be a dict, got None"),
    ({"optim": [1]}, "optim must be a dict, got [1]"),
    ({"data": "x"}, "data must be a dict, got 'x'"),
    # types
    ({"optim": {"epochs": "2"}}, "optim.epochs must be a number, got '2'"),
    ({"optim": {"max_length": "400"}}, "optim.max_length must be a whole number, got '400'"),
    ({"optim": {"epochs": NAN}}, "optim.epochs must be a finite number, got nan"),
    ({"optim": {"learning_rate": INF}}, "optim.learning_rate must be a finite number, got inf"),
    ({"gate": {"max_ppl_ratio": NAN}}, "gate.max_ppl_ratio must be a finite number"),
    ({"optim": {"beta": True}}, "optim.beta must be a number, got True"),
    ({"activate": "no"}, "activate must be true or false, got 'no'"),
    ({"activate": 1}, "activate must be true or false, got 1"),
    ({"optim": {"batch_size": 2.5}}, "optim.batch_size must be a whole number, got 2.5"),
    ({"data": {"min_pairs": 2.5}}, "data.min_pairs must be a whole number, got 2.5"),
    ({"lora": {"r": True}}, "lora.r must be a whole number, got True"),
    ({"optim": {"max_steps": None}}, "optim.max_steps must be a whole number, got None"),
    ({"lora": {"target_modules": "q_proj"}}, "lora.target_modules must be a list of"),
    ({"lora": {"target_modules": ["q_proj", 1]}}, "lora.target_modules must be a list of"),
    ({"method": None}, "method must be a string, got None"),
    # ranges
    ({"method": "ppo"}, "method must be one of auto, dpo, kto, rlhf, retrieval, got 'ppo'"),
    ({"optim": {"precision": "fp8"}}, "optim.precision must be one of auto, bf16, fp32"),
    ({"optim": {"learning_rate": 0}}, "optim.learning_rate must be positive, got 0"),
    ({"optim": {"epochs": -1.0}}, "optim.epochs must be positive, got -1.0"),
    ({"optim": {"max_seconds": -5}}, "optim.max_seconds must be"),
    ({"gate": {"min_visible_gain": 1.5}}, "gate.min_visible_gain must be"),
    ({"gate": {"visible_prompts": -1}}, "gate.visible_prompts must be"),
    ({"optim": {"max_length": 31}}, "optim.max_length must be at least 32, got 31"),
    ({"optim": {"sft_weight": -1}}, "optim.sft_weight must be zero or more, got -1"),
    ({"data": {"min_ratings": 1}}, "data.min_ratings must be at least 2, got 1"),
    ({"data": {"max_user_share": 0}}, "data.max_user_share must be within (0, 1], got 0"),
    ({"data": {"heldout_fraction": 1}}, "data.heldout_fraction must be within (0, 1), got 1"),
    ({"data": {"max_heldout": -1}}, "data.max_heldout must be positive, got -1"),
    ({"data": {"seed": -1}}, "data.seed must be within [0, 4294967295], got -1"),
    ({"lora": {"dropout": 1.0}}, "lora.dropout must be within [0, 1), got 1.0"),
    ({"lora": {"target_modules": []}}, "lora.target_modules must not be empty"),
    ({"rlhf": {"num_generations": 1}}, "rlhf.num_generations must be at least 2, got 1"),
    ({"rlhf": {"reward_epochs": -1}}, "rlhf.reward_epochs must be positive, got -1"),
    ({"rlhf": {"rl_learning_rate": -1e-4}}, "rlhf.rl_learning_rate must be positive"),
    ({"rlhf": {"max_prompts": -1}}, "rlhf.max_prompts must be positive, got -1"),
    ({"gate": {"min_heldout": -1}}, "gate.min_heldout must be zero or more, got -1"),
    ({"gate": {"reward_tolerance": -0.1}}, "gate.reward_tolerance must be zero or more"),
    ({"gate": {"min_pref_accuracy": 1.5}}, "gate.min_pref_accuracy must be within [0, 1]"),
    ({"gate": {"max_ppl_ratio": 0.9}}, "gate.max_ppl_ratio must be at least 1, got 0.9"),
    # across sections: fewer held out than the gate needs rejects every adapter
    ({"data": {"max_heldout": 1}}, "data.max_heldout must be at least gate.min_heldout (2), "
                                   "got 1"),
    ({"data": {"max_heldout": 4}, "gate": {"min_heldout": 5}}, "data.max_heldout must be at "
                                                               "least gate.min_heldout (5)"),
])
def test_bad_input_is_a_value_error_naming_the_setting(data, message):
    with pytest.raises(ValueError) as err:
        TrainSettings.from_dict(data)
    assert str(err.value).startswith(message)


def test_direct_construction_is_checked_too():
    with pytest.raises(ValueError, match=r"^optim\.epochs must be a finite number"):
        OptimSettings(epochs=NAN)
    with pytest.raises(ValueError, match=r"^optim must be a dict"):
        TrainSettings(optim=None)
    with pytest.raises(ValueError, match=r"^optim\.batch_size must be positive"):
        replace(TrainSettings().optim, batch_size=0)


def test_for_config_checks_its_arguments():
    cfg = SimpleNamespace(train_max_steps=0)
    assert TrainSettings.for_config(cfg, None, method="dpo").optim.max_steps == -1
    assert TrainSettings.for_config(SimpleNamespace(train_max_steps=3)).optim.max_steps == 3
    with pytest.raises(ValueError, match=r"^optim must be a dict, got \['epochs'\]"):
        TrainSettings.for_config(cfg, ["epochs"])
    with pytest.raises(ValueError, match=r"^optim\.epochs must be a finite number, got nan"):
        TrainSettings.for_config(cfg, {"epochs": NAN})
    with pytest.raises(ValueError, match=r"^unknown training settings: colour"):
        TrainSettings.for_config(cfg, colour="red")
    with pytest.raises(ValueError, match=r"^activate must be true or false"):
        TrainSettings.for_config(cfg, activate="no")
