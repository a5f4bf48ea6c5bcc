"""Several evaluations side by side: a table, and a matplotlib figure (``realign-trl eval --compare ... --plot``).

matplotlib is an optional dependency (``pip install 'realign[plot]'``): only the figure needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

from .records import EvalResultFile
from .runner import RESULTS_FILE
from .suite import EvalError

# (flat metric name suffix, label, higher is better)
CHAIR_METRICS = (
    ("chair_s", "CHAIR_s", False),
    ("chair_i", "CHAIR_i", False),
    ("chair_i_unique", "CHAIR_i set", False),
    ("object_recall", "recall", True),
)
AMBER_METRICS = (
    ("amber_chair", "AMBER CHAIR", False),
    ("amber_cover", "Cover", True),
    ("amber_hal", "Hal", False),
    ("amber_cog", "Cog", False),
    ("amber_all_accuracy", "disc. acc", True),
    ("amber_all_f1", "disc. F1", True),
)
# settings that change what a number means: runs that differ in them are flagged under the table
SCORING_SETTINGS = ("pope_parser", "pope_suffix", "chair_synonyms", "chair_prompt", "vocabulary")
POPE_METRICS = (("f1", "F1"), ("accuracy", "accuracy"))
POPE_SHORT = {"accuracy": "acc"}  # table headers: "random F1", "popular acc", "adversarial F1"


def load_results(paths: Sequence[str | os.PathLike]) -> list[EvalResultFile]:
    """Read ``eval_results.json`` files (or the directories holding them); one clear error per bad path."""
    results: list[EvalResultFile] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / RESULTS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EvalError(f"{str(p)!r} is not an eval_results.json file or a directory holding one.") from None
        except (OSError, ValueError) as e:
            raise EvalError(f"cannot read {str(path)!r} as JSON ({e}).") from None
        if not isinstance(data, dict) or "flat" not in data:
            raise EvalError(f"{str(path)!r} is not written by `realign-trl eval` (no 'flat' metrics).")
        data["_path"] = str(path)
        results.append(data)
    if not results:
        raise EvalError("give the eval_results.json files to compare.")
    return results


def run_labels(results: Sequence[EvalResultFile]) -> list[str]:
    """Short names for the runs: their directory names, or their paths when those repeat."""
    names = [Path(r["_path"]).parent.name or r.get("model", "run") for r in results]
    if len(set(names)) < len(names):
        names = [str(Path(r["_path"]).parent) for r in results]
    return names


def _pope_splits(results: Sequence[EvalResultFile]) -> list[str]:
    splits: list[str] = []
    for r in results:
        for s in r.get("metrics", {}).get("pope", {}).get("splits", {}):
            if s not in splits:
                splits.append(s)
    return splits


def compare_table(results: Sequence[EvalResultFile], labels: Optional[Sequence[str]] = None) -> str:
    """Plain-text table: one row per run, the headline metrics as columns (``-`` where a run lacks one)."""
    labels = list(labels or run_labels(results))
    columns = [
        (f"pope_{s}_{m}", f"{s} {POPE_SHORT.get(m, name)}") for s in _pope_splits(results) for m, name in POPE_METRICS
    ]
    columns += [("pope_yes_ratio", "yes ratio")] if any("pope_yes_ratio" in r["flat"] for r in results) else []
    columns += [(key, name) for key, name, _ in CHAIR_METRICS + AMBER_METRICS if any(key in r["flat"] for r in results)]
    width = max(len(x) for x in labels + ["run"])
    widths = [max(9, len(name)) + 2 for _, name in columns]
    head = f"{'run':<{width}}" + "".join(f"{name:>{w}}" for (_, name), w in zip(columns, widths))
    rows = [head]
    for label, r in zip(labels, results):
        cells = "".join(
            f"{r['flat'][k]:>{w}.4f}" if k in r["flat"] else f"{'-':>{w}}" for (k, _), w in zip(columns, widths)
        )
        rows.append(f"{label:<{width}}{cells}")
    for key in SCORING_SETTINGS:
        values = [repr(r.get("settings", {}).get("suite", {}).get(key, "(not recorded)")) for r in results]
        if len(set(values)) > 1:
            rows.append(f"note: the runs differ in {key} ({', '.join(values)}): their numbers are not comparable")
    return "\n".join(rows)


def plot_comparison(
    results: Sequence[EvalResultFile], out: str | os.PathLike, labels: Optional[Sequence[str]] = None
) -> Path:
    """Grouped bars of every run: POPE F1/accuracy per split and yes ratio, CHAIR_s/CHAIR_i/recall. PNG/PDF/SVG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalError("--plot needs matplotlib: pip install 'realign[plot]' (or pip install matplotlib).") from None
    labels = list(labels or run_labels(results))
    pope = [(f"pope_{s}_{m}", f"{s}\n{name}") for s in _pope_splits(results) for m, name in POPE_METRICS]
    pope += (
        [("pope_yes_ratio", "yes ratio\n(0.5 = balanced)")]
        if any("pope_yes_ratio" in r["flat"] for r in results)
        else []
    )
    chair = [
        (key, f"{name}\n({'higher' if up else 'lower'} is better)")
        for key, name, up in CHAIR_METRICS
        if any(key in r["flat"] for r in results)
    ]
    amber = [
        (key, f"{name}\n({'higher' if up else 'lower'} is better)")
        for key, name, up in AMBER_METRICS
        if any(key in r["flat"] for r in results)
    ]
    panels = [(title, metrics) for title, metrics in (("POPE", pope), ("CHAIR", chair), ("AMBER", amber)) if metrics]
    if not panels:
        raise EvalError("the results hold no POPE or CHAIR metrics to plot.")
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(max(6.0, 1.1 * sum(len(m) for _, m in panels) + 2), 4.2),
        squeeze=False,
        gridspec_kw={"width_ratios": [len(m) for _, m in panels]},
    )
    bar = 0.8 / len(results)
    for ax, (title, metrics) in zip(axes[0], panels):
        for k, (label, r) in enumerate(zip(labels, results)):
            xs = [i - 0.4 + bar * (k + 0.5) for i in range(len(metrics))]
            values = [r["flat"].get(key, float("nan")) for key, _ in metrics]
            bars = ax.bar(xs, values, width=bar, label=label)
            if len(results) <= 4:
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_xticks(range(len(metrics)), [name for _, name in metrics], fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    # the legend goes under the panels, where it cannot cover a bar
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=min(len(names), 4), frameon=False)
    fig.tight_layout(rect=(0, 0.06 * ((len(names) + 3) // 4) + 0.02, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from realign_data.runtime.atomic import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out
