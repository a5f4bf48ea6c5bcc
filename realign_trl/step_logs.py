"""One short line per logging step instead of TRL's full metric dict (``realign-trl dpo`` without ``-v``).

TRL's progress callback prints every logged dict (20+ entries per step). At the default verbosity the training
script replaces that with ``step 2/20: loss 1.38, loss/text 0.69, loss/visual 0.69, rewards/margins 0.012,
rewards/accuracies 0.5, lr 0.001``; everything stays in ``trainer_state.json`` and any ``report_to`` logger,
and ``-v`` brings the full dicts back.
"""

from __future__ import annotations

SHOWN = ("rewards/margins", "rewards/visual_margins", "rewards/accuracies", "learning_rate")


def _num(value) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def step_line(logs: dict, step: int, max_steps: int) -> str:
    """``step N/M: loss ..., loss/<part> ..., rewards/margins ..., lr ...`` (the end of training: its summary)."""
    if "train_runtime" in logs:
        return f"trained {step} steps in {_num(logs['train_runtime'])} s" + (
            f", mean loss {_num(logs['train_loss'])}" if "train_loss" in logs else ""
        )
    keys = [k for k in logs if k == "loss" or k.startswith("loss/") or k.startswith(("eval_", "eval/"))] + [
        k for k in SHOWN if k in logs
    ]
    parts = [f"{'lr' if k == 'learning_rate' else k} {_num(logs[k])}" for k in keys]
    return f"step {step}/{max_steps}: " + ", ".join(parts)


def compact_step_logs() -> None:
    """Make transformers' progress/printer callbacks print :func:`step_line` instead of the whole dict."""
    from transformers import trainer_callback as tc

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = step_line(logs, state.global_step, state.max_steps)
        bar = getattr(self, "training_bar", None)
        if bar is not None:
            bar.write(line)
        else:
            print(line, flush=True)

    tc.ProgressCallback.on_log = on_log
    tc.PrinterCallback.on_log = on_log
