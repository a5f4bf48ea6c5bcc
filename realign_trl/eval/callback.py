"""``HallucinationEvalCallback``: POPE/CHAIR on a fixed held-out subset every N steps, logged by the trainer.

    trainer = DPOTrainer(...)
    suite = EvalSuite.from_coco("data/coco", split="val2014", num_images=100)
    trainer.add_callback(HallucinationEvalCallback(trainer, suite, eval_steps=200))
    trainer.train()

Metrics go through ``trainer.log`` (so TensorBoard, W&B, trackio show them next to the rDPO rewards) as
``eval/pope_<split>_f1``, ``eval/pope_<split>_accuracy``, ``eval/pope_yes_ratio``, ``eval/chair_s``,
``eval/chair_i``, ``eval/chair_i_unique`` and ``eval/object_recall`` (plus precision/recall per split and the
unparseable count). With several processes each one answers its share of the images and the records are
gathered, so every process logs the same numbers. Records and ``eval_results.json`` of each evaluation are written under
``<output_dir>/hallucination_eval/step-<N>/`` by the main process. Like TRL's ``LogCompletionsCallback``, the
callback takes the trainer it is attached to.
"""

from __future__ import annotations

from typing import Any, Optional

from transformers import TrainerCallback

from .config import EvalConfig
from .runner import EvalResult, generate_answers, score
from .suite import EvalSuite

PREFIX = "eval/"


class HallucinationEvalCallback(TrainerCallback):
    """Evaluate hallucination every ``eval_steps`` optimizer steps and once more when training stops.

    Args:
        trainer: the trainer the callback is added to (its model, processor, accelerator and ``log``).
        suite: the held-out :class:`~realign_trl.eval.EvalSuite` (fixed for the whole run).
        eval_steps: evaluate when ``global_step`` is a multiple of this (``0``: only at the end).
        batch_size: prompts per ``generate`` call.
        pope_max_new_tokens / chair_max_new_tokens: generation bounds.
        save_records: write each evaluation's records under ``<output_dir>/hallucination_eval/step-<N>/``.

    The defaults are :class:`~realign_trl.eval.EvalConfig`'s; :meth:`from_config` takes one whole (what
    ``realign-trl dpo --hallucination_eval ...`` does with :meth:`realign_trl.RDPOConfig.eval_config`).
    """

    def __init__(
        self,
        trainer: Any,
        suite: EvalSuite,
        *,
        eval_steps: int = EvalConfig.steps,
        batch_size: int = EvalConfig.batch_size,
        pope_max_new_tokens: int = EvalConfig.pope_max_new_tokens,
        chair_max_new_tokens: int = EvalConfig.chair_max_new_tokens,
        save_records: bool = True,
    ) -> None:
        if eval_steps < 0:
            raise ValueError(f"eval_steps must be >= 0 (got {eval_steps}).")
        self.trainer, self.suite = trainer, suite
        self.eval_steps, self.batch_size, self.save_records = eval_steps, batch_size, save_records
        self.bounds = dict(pope_max_new_tokens=pope_max_new_tokens, chair_max_new_tokens=chair_max_new_tokens)
        self.history: list[dict] = []  # (step, flat metrics) of every evaluation, on every process
        self._last_step: Optional[int] = None

    @classmethod
    def from_config(
        cls, trainer: Any, config: EvalConfig, *, suite: Optional[EvalSuite] = None, save_records: bool = True
    ) -> HallucinationEvalCallback:
        """The callback ``config`` describes: every ``config.steps`` steps, on ``suite`` (default: drawn from
        ``config`` by :meth:`EvalSuite.from_config`), with its batch size and generation bounds."""
        return cls(
            trainer,
            suite if suite is not None else EvalSuite.from_config(config),
            eval_steps=config.steps,
            batch_size=config.batch_size,
            pope_max_new_tokens=config.pope_max_new_tokens,
            chair_max_new_tokens=config.chair_max_new_tokens,
            save_records=save_records,
        )

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        due = (self.eval_steps and step % self.eval_steps == 0) or control.should_training_stop
        if due and step != self._last_step:
            should_log = control.should_log
            self.evaluate(step)
            # trainer.log resets the shared control's should_log: keep this step's regular training log line
            control.should_log = should_log
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if state.global_step != self._last_step:  # training stopped outside a step end (rare)
            self.evaluate(state.global_step)

    def evaluate(self, step: int) -> dict[str, float]:
        """Run the evaluation now; log and return the flat metrics (with the ``eval/`` prefix)."""
        from accelerate.utils import gather_object
        from trl.models.utils import unwrap_model_for_generation

        from .backends import TransformersBackend

        trainer = self.trainer
        accelerator = trainer.accelerator
        ids = list(self.suite.images)
        with accelerator.split_between_processes(ids) as mine:
            shard = self.suite.select(mine)
        with unwrap_model_for_generation(
            trainer.model_wrapped, accelerator, gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
        ) as model:
            backend = TransformersBackend(model, trainer.processing_class, batch_size=self.batch_size)
            was_training = model.training
            try:
                answers = generate_answers(backend, shard, **self.bounds)
                model.eval()
                # Logged while the model is in eval mode: TRL's DPOTrainer.log folds the *train* metrics it has
                # accumulated since the last log into any log call made in train mode, which would move the
                # rDPO rewards of these steps into this line.
                gathered = gather_object([list(answers.items())])
                merged = {key: value for part in gathered for key, value in part}
                result = score(
                    self.suite,
                    merged,
                    model=backend.name,
                    settings={
                        "step": step,
                        "suite": self.suite.describe(),
                        "generation": {**self.bounds, "do_sample": False},
                    },
                )
                metrics = result.flat(prefix=PREFIX)
                trainer.log(dict(metrics))
            finally:
                model.train(was_training)
                backend.close()
        self._last_step = step
        self.history.append({"step": step, **metrics})
        if self.save_records and accelerator.is_main_process:
            self._save(result, step)
        return metrics

    def _save(self, result: EvalResult, step: int) -> None:
        from pathlib import Path

        result.save(Path(self.trainer.args.output_dir) / "hallucination_eval" / f"step-{step}")
