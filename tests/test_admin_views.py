"""What the admin tab shows for a training run: progress bar, curves, the gate's verdict."""

from chat.web.admin_views import (
    adapters_frame,
    dashboard_view,
    documents_frame,
    gate_rows,
    progress_html,
    run_ended,
    serving_md,
    side_by_side_html,
    stats_md,
    verdict_md,
)
from chat.web.plots import WAITING, run_figures, thumbs_down_figure

GATE = {"passed": True, "pref_accuracy": 1.0, "pref_accuracy_active": None, "ppl_base": 12.738,
        "ppl_candidate": 12.716, "ppl_ratio": 0.9983, "n_heldout": 3, "pref_kind": "pairs",
        "reward_candidate": None, "reward_active": None, "reasons": []}


def _run(status="succeeded", gate=GATE, **metrics):
    return {"id": 4, "status": status, "method": "dpo", "adapter_version": "v0004",
            "error": None, "progress": {"phase": "done", "step": 8, "total": 8},
            "metrics": {"gate": gate, **metrics}, "curve": []}


def test_passed_gate_is_a_table_of_the_checks_that_ran():
    text = verdict_md(_run(activated=True))
    assert text.startswith("**Gate passed** for v0004 (dpo, now served)")
    assert ("| preference accuracy on 3 held-out pairs | did it learn which answers users "
            "liked, on feedback it never saw | 1.000 | no adapter active |") in text
    assert "| 12.716 | base model 12.738 (×0.998) |" in text
    assert "reward" not in text and "None" not in text  # checks that did not run are left out


def test_failed_gate_lists_its_reasons_and_the_reward_check():
    gate = {**GATE, "passed": False, "pref_kind": "labels", "pref_accuracy": 0.4,
            "pref_accuracy_active": 0.7, "reward_candidate": 0.25, "reward_active": 0.5,
            "reasons": ["preference accuracy 0.40 < 0.60"]}
    text = verdict_md(_run("rejected", gate))
    assert text.startswith("**Gate failed** for v0004 (dpo, never served)")
    rows = {row[0]: row[2:] for row in gate_rows(gate)}
    assert rows["preference accuracy on 3 held-out thumbs"] == ("0.400", "active adapter 0.700")
    assert rows["reward model score"] == ("0.250", "active 0.500")
    assert text.endswith("- preference accuracy 0.40 < 0.60")


def test_passed_but_not_activated_says_why():
    why = "the served adapter changed from the base model to v0003 meanwhile"
    assert f"(dpo, not activated: {why})" in verdict_md(
        _run(activated=False, not_activated_because=why))


def test_unfinished_and_failed_runs():
    assert verdict_md(_run("running")) == ""
    failed = {**_run("failed"), "error": "out of memory"}
    assert verdict_md(failed) == "**Run failed**: out of memory"


def test_progress_bar_and_curves():
    run = {**_run("running"), "progress": {"phase": "training", "step": 3, "total": 12},
           "curve": [{"step": 1, "loss": 2.2288060188, "rewards/margins": 0.123456},
                     {"step": 2, "loss": 1.5}]}
    html = progress_html(run)
    assert "width:25%" in html and "step 3/12" in html and "data-status='running'" in html
    loss, reward = (fig.axes[0] for fig in run_figures(run))
    assert loss.lines[0].get_xydata().tolist() == [[1, 2.2288060188], [2, 1.5]]
    assert reward.lines[0].get_label() == "margins"
    assert reward.lines[0].get_xydata().tolist() == [[1, 0.123456]]
    loss.figure.canvas.draw()  # ticks are placed when drawn: whole steps only
    assert all(float(t).is_integer() for t in loss.get_xticks())
    one = run_figures({**run, "curve": [{"step": 1, "loss": 2.0}]})[0].axes[0]
    one.figure.canvas.draw()
    low, high = one.get_xlim()
    assert [t for t in one.get_xticks() if low <= t <= high] == [1]  # not 0.95, 1.0, 1.05
    for empty in run_figures({**run, "curve": []}):  # before the first step
        assert [t.get_text() for t in empty.axes[0].texts] == [WAITING]
    ended = run_figures({**_run("failed"), "curve": []})  # it will log nothing more
    assert [f.axes[0].texts[0].get_text() for f in ended] == [
        "no step was logged", "this run logged no reward figures"]
    assert progress_html(None) == "<div id='train-progress'>No training run yet.</div>"


def test_progress_tells_the_time_taken_and_left_and_stays_full_through_the_gate():
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    run = {**_run("running"), "started_at": "2026-01-01T12:00:00+00:00",
           "progress": {"phase": "training", "step": 4, "total": 12,
                        "since": "2026-01-01T12:02:00+00:00"}}
    html = progress_html(run, now)  # 4 steps in 8 minutes: 8 more steps, 16 minutes
    assert "10 min 00 s so far" in html and "about 16 min 00 s left" in html
    gate = {**run, "progress": {**run["progress"], "phase": "gate"}}
    html = progress_html(gate, now)
    assert "width:100%" in html and "the gate is checking" in html and "left" not in html
    done = {**run, "status": "rejected", "finished_at": "2026-01-01T12:12:30+00:00",
            "progress": {"phase": "done", "step": 12, "total": 12}}
    assert "took 12 min 30 s" in progress_html(done, now)


def test_dashboard_figures_are_tables_not_json(store):
    from feedback.stats import feedback_stats

    conv = store.create_conversation("ann")
    question = store.record_message(conv, "user", "Where is my order?")
    answers = [store.record_message(conv, "assistant", f"Answer {i}.", parent_id=question,
                                    adapter_version=v) for i, v in enumerate(["base", "v0001"])]
    store.record_rating(answers[0], "ann", -1, "wrong or missing source")
    store.record_rating(answers[1], "ann", 1)
    text = stats_md(feedback_stats(store))
    assert "| conversations | answers | thumbs up | thumbs down |" in text
    assert "| 1 | 2 | 1 | 1 | 0 | 0 | 0 |" in text
    assert "| wrong or missing source | 1 | retrieval |" in text
    assert "| base | 1 | 0 | 1 | 100% |" in text and "| v0001 | 1 | 1 | 0 | 0% |" in text
    empty = stats_md(feedback_stats_of_nothing())
    assert "reason" not in empty and "adapter" not in empty


def feedback_stats_of_nothing() -> dict:
    return {"kinds": {"answers": 0}, "preferences_by_source": {}, "comparisons_by_choice": {},
            "reasons": {}, "blame": {}, "by_adapter": {}, "by_prompt_adapter": []}


def test_serving_line_names_model_device_and_kernels():
    text = serving_md({"model": "smollm2-135m", "device": "cpu", "fast_path": "fp16",
                       "decode": "exact GGUF blocks (121 of 121 linears)",
                       "prompts": "int16 inputs x GGUF blocks + LoRA (120 of 120 linears)"})
    assert text.startswith("**Serving** smollm2-135m on cpu, fast path `fp16`")
    assert "decode steps read exact GGUF blocks" in text
    assert "prompts read int16 inputs x GGUF blocks" in text


def test_an_adapter_that_did_not_move_says_so():
    gate = {"passed": False, "verdict": "no visible change", "n_heldout": 8,
            "pref_accuracy": 1.0, "visible_share": 0.0, "visible_share_served": 0.0,
            "visible_prompts": 8, "reasons": ["no visible change: 0 of 8 held-out answers"]}
    text = verdict_md(_run("rejected", gate))
    assert text.startswith("**Gate: no visible change**")
    rows = {row[0]: row[2:] for row in gate_rows(gate)}
    assert rows["greedy answers to 8 held-out questions that read like the liked feedback"] == \
        ("0%", "served now 0%")


def test_the_damage_checks_are_rows_in_plain_words():
    gate = {"passed": False, "n_heldout": 8, "pref_accuracy": 1.0, "interior_kl": 0.9,
            "facts_kept": 0.4, "facts_right_base": 20, "repetition": 0.5,
            "repetition_served": 0.02, "reasons": ["facts lost"]}
    rows = {row[0]: row[1:] for row in gate_rows(gate)}
    assert rows["facts kept, of 20 the base gets right"][1:] == ("40%", "base model 100%")
    assert rows["repeated word 4-grams in its answers"][1:] == ("50%", "served now 2%")
    assert rows["drift inside the reference answers (median token KL)"][1] == "0.900"


def test_a_retrieval_run_shows_its_ranks_before_and_after():
    metrics = {"mrr": 0.584, "hit@3": 0.7, "not_relevant@3": 1.0}
    gate = {"passed": True, "verdict": "passed", "reasons": [], "compared_with": "plain embedder",
            "heldout_before": metrics, "heldout_after": {**metrics, "mrr": 0.695},
            "regression_before": {"mrr": 0.804, "hit@3": 0.947, "not_relevant@3": None},
            "regression_after": {"mrr": 0.825, "hit@3": 0.965, "not_relevant@3": None}}
    run = {**_run(gate=gate, activated=True, retriever_version="r0001"), "method": "retrieval",
           "adapter_version": None}
    text = verdict_md(run)
    assert text.startswith("**Gate passed** for r0001 (retrieval, now served)")
    rows = {row[0]: row[2:] for row in gate_rows(gate)}
    assert rows["mrr, held-out marks"] == ("0.695", "plain embedder 0.584")
    assert rows["hit@3, regression questions"] == ("0.965", "plain embedder 0.947")
    assert "not_relevant@3, regression questions" not in rows  # no such marks there


def test_a_page_that_watched_a_run_is_told_once_how_it_ended():
    going = {**_run("running"), "metrics": {}}
    note, seen = run_ended(going, None)
    assert note is None and seen == {"id": 4, "status": "running"}
    served = _run(activated=True)
    note, seen = run_ended(served, seen)
    assert note == "Run 4 passed the gate: v0004 is now served."
    assert run_ended(served, seen)[0] is None  # told once
    assert run_ended(served, None)[0] is None  # a page opened after the end is not told
    refused = _run("rejected", gate={**GATE, "passed": False,
                                     "reasons": ["answers repeat themselves"]})
    assert run_ended(refused, {"id": 4, "status": "running"})[0] == (
        "Run 4 was rejected (v0004): answers repeat themselves")
    failed = {**_run("failed"), "error": "out of memory"}
    assert run_ended(failed, {"id": 4, "status": "queued"})[0] == "Run 4 failed: out of memory"


def test_empty_tables_say_nothing_yet_under_their_headers():
    empty = adapters_frame([])
    assert list(empty.columns)[0] == "version" and empty.iloc[0, 0] == "nothing yet"
    assert documents_frame([]).iloc[0].tolist() == ["nothing yet", ""]
    info = {"model": "m", "device": "cpu", "fast_path": "fp16", "decode": "d", "prompts": "p"}
    _, trend, recent = dashboard_view(info, feedback_stats_of_nothing(), ([], []), [])
    assert [t.get_text() for t in trend.axes[0].texts] == ["no ratings yet"]
    assert recent.iloc[0, 0] == "nothing yet"


def test_thumbs_down_plot_shows_a_single_day_in_percent_and_marks_activations():
    from datetime import datetime

    trend = [{"day": "2026-12-07", "adapter": "base", "down_rate": 0.25, "n": 4},
             {"day": "2026-12-08", "adapter": "v0002", "down_rate": 0.5, "n": 2}]
    switches = [{"version": "v0002", "at": "2026-12-07T15:30:00+00:00"},
                {"version": "v0001", "at": "2025-01-01T00:00:00+00:00"}]  # long before
    axes = thumbs_down_figure(trend, switches).axes[0]
    base, tuned = axes.lines[:2]
    assert base.get_marker() == "o" and base.get_ydata().tolist() == [25.0]  # one day: a dot
    assert base.get_xdata()[0] == datetime(2026, 12, 7, 12)  # drawn at the day's middle
    assert (base.get_label(), tuned.get_label()) == ("base (4 rated)", "v0002 (2 rated)")
    marks = [line for line in axes.lines[2:] if line.get_linestyle() == ":"]
    assert len(marks) == 1 and marks[0].get_xdata()[0] == datetime(2026, 12, 7, 15, 30)
    assert [t.get_text() for t in axes.texts] == [" v0002 on"]
    assert axes.get_ylim() == (0, 105) and axes.yaxis.get_major_formatter()(50, 0) == "50%"


def test_side_by_side_is_two_escaped_columns_per_question():
    out = side_by_side_html([{"question": "Q <1>?", "active": "<b>A</b>", "candidate": "C"}])
    assert "Q &lt;1&gt;?" in out and "&lt;b&gt;A&lt;/b&gt;" in out and "<b>A</b>" not in out
    assert out.count("<h4>") == 2 and "class='panes'" in out
    assert side_by_side_html([]) == "<p>nothing yet</p>"
