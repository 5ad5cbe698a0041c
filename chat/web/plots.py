"""The admin console's plots, drawn with matplotlib (gr.Plot shows each Figure as an image):
the thumbs-down rate per adapter version over time with the moments a version began to be
served, and a training run's loss and reward curves.

Not Gradio's own line plots: those draw nothing for a series of a single day (a line needs two
points), cannot mark a moment on the time axis, and label a step axis 0.5, 1, 1.5."""

from __future__ import annotations

from datetime import datetime, timedelta

from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from training.runs import FINISHED

SIZE = (6.4, 3.0)  # inches at 100 dpi: about the width of half the console
MANY_POINTS = 40  # a curve with more steps than this is drawn without a marker per step
WAITING = "waiting for the first step"


def _figure(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=SIZE, dpi=100, layout="constrained")
    axes = fig.add_subplot()
    axes.set_title(title, fontsize=11)
    axes.grid(alpha=0.3)
    return fig, axes


def _say(axes, text: str) -> None:
    """An empty plot that says why it is empty, not bare axes."""
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes,
              color="gray", fontsize=11)
    axes.set_xticks([])
    axes.set_yticks([])


def _noon(day: str) -> datetime:
    """A day's rate drawn at its middle: it covers the whole day."""
    return datetime.fromisoformat(day) + timedelta(hours=12)


def thumbs_down_figure(trend: list[dict], switches: list[dict]) -> Figure:
    """trend: {"day", "adapter", "down_rate", "n"} rows; switches: {"version", "at"} rows of
    the serving log (version None: the base model), drawn as dotted lines labelled "vNNNN on"."""
    fig, axes = _figure("Thumbs-down rate per adapter version")
    if not trend:
        _say(axes, "no ratings yet")
        return fig
    for version in dict.fromkeys(t["adapter"] for t in trend):
        rows = [t for t in trend if t["adapter"] == version]
        axes.plot([_noon(t["day"]) for t in rows], [100 * t["down_rate"] for t in rows],
                  marker="o", label=f"{version} ({sum(t['n'] for t in rows)} rated)")
    days = [_noon(t["day"]) for t in trend]
    first, last = min(days) - timedelta(days=1), max(days) + timedelta(days=1)
    for switch in switches:
        at = datetime.fromisoformat(switch["at"]).replace(tzinfo=None)
        if first <= at <= last:
            axes.axvline(at, color="gray", linestyle=":", linewidth=1)
            axes.annotate(f" {switch['version'] or 'base'} on", (at, 100), rotation=90,
                          va="top", fontsize=8, color="gray")
    axes.set_xlim(first, last)
    axes.set_ylim(0, 105)
    axes.yaxis.set_major_formatter(PercentFormatter())
    locator = mdates.AutoDateLocator(maxticks=8)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.legend(title="answered by", fontsize=8, title_fontsize=8, loc="upper left")
    return fig


def curve_figure(title: str, series: dict[str, list[tuple[int, float]]],
                 empty: str = WAITING) -> Figure:
    """Lines of (step, value) per name, on a whole-number step axis; `empty` said if none."""
    fig, axes = _figure(title)
    if not any(series.values()):
        _say(axes, empty)
        return fig
    for name, points in series.items():
        steps, values = zip(*points, strict=True)
        axes.plot(steps, values, marker="o" if len(points) <= MANY_POINTS else None,
                  label=name)
    steps = [step for points in series.values() for step, _ in points]
    axes.set_xlim(min(steps) - 0.5, max(steps) + 0.5)  # a single step is not a span of 0.1
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.set_xlabel("step")
    if len(series) > 1:
        axes.legend(fontsize=8)
    return fig


def run_figures(run: dict | None) -> tuple[Figure, Figure]:
    """A run's loss, and its reward accuracy / margins (the trainer's `rewards/*` logs)."""
    rows = (run or {}).get("curve", [])
    loss = {"loss": [(r["step"], r["loss"]) for r in rows if "loss" in r]}
    names = sorted({k for r in rows for k, v in r.items()
                    if k.startswith("rewards/") and isinstance(v, float)})
    rewards = {k.removeprefix("rewards/"): [(r["step"], r[k]) for r in rows if k in r]
               for k in names}
    done = (run or {}).get("status") in FINISHED  # an ended run will log nothing more
    return (curve_figure("Loss", loss, "no step was logged" if done else WAITING),
            curve_figure("Reward accuracy / margins", rewards,
                         "this run logged no reward figures" if done else WAITING))
