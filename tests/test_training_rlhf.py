"""RLHF path on the real model: reward model on pairs, then RLOO scored by it (~40 s)."""

from __future__ import annotations

import math

from tests.test_training import import_pairs, short_pairs


def test_rlhf_run_trains_reward_model_and_policy(cfg, store):
    from training import registry, runner, runs
    from training.config import TrainSettings

    import_pairs(store, short_pairs(12))
    conv = store.create_conversation("u")
    for q in ("What is 5 plus 5?", "Name a fruit.", "What is 7 plus 1?"):
        store.record_message(conv, "assistant", "Ten.", prompt=[{"role": "user", "content": q}])
    settings = TrainSettings.from_dict({
        "method": "rlhf", "optim": {"max_steps": 2, "batch_size": 4, "max_length": 96},
        "rlhf": {"rl_steps": 2, "num_generations": 2, "max_completion_length": 8},
        "lora": {"r": 4, "alpha": 8}})
    run_id = runs.create_run(store, settings, "test")
    result = runner.run(run_id, cfg)
    row = runs.get_run(store, run_id)
    assert row["status"] in ("succeeded", "rejected"), row["error"]
    gate = row["metrics"]["gate"]
    assert gate["reward_candidate"] is not None and gate["reward_active"] is not None
    train = row["metrics"]["train"]
    assert train["reward_model"]["steps"] == 2 and train["rloo"]["steps"] == 2
    adapter = registry.get(store, result["adapter_version"])
    assert adapter["method"] == "rlhf"
    phases = {e["p"] for e in store.query(
        "SELECT json_extract(metrics_json, '$.phase') AS p FROM training_events")}
    assert phases == {"reward", "rloo"}
    assert all(math.isfinite(train[part]["final_loss"]) for part in ("reward_model", "rloo"))
