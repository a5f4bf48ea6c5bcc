"""TRL's DPO script (``trl/scripts/dpo.py``) with ``RDPOConfig`` parsed and the project's own ``main``.

``realign-trl dpo`` launches this file with ``accelerate launch``, exactly as ``trl dpo`` launches TRL's. It
parses with TRL's ``TrlParser`` using ``RDPOConfig`` instead of ``DPOConfig`` (so the rdpo knobs are flags and
YAML keys), and :func:`main` follows TRL 1.16's ``main`` step for step with two differences it owns instead of
patching TRL or ``datasets``: the dataset path is loaded by :func:`_load_dataset` (``save_to_disk`` directories,
what ``realign-data build`` writes, as well as Hub ids and TRL's dataset mixtures), and the trainer class is
:func:`_trainer_class`'s. Run it directly with ``accelerate launch -m realign_trl.scripts.dpo ...`` or
``python -m realign_trl.scripts.dpo ...``.

With ``--curriculum easy-to-hard`` it runs :func:`main_curriculum` instead: the same model, PEFT and dataset
arguments, trained stage by stage with :func:`realign_trl.curriculum.train_curriculum`.

With ``--hallucination_eval pope,chair`` every trainer it builds carries a
:class:`realign_trl.eval.HallucinationEvalCallback` on the held-out images the ``hallucination_eval_*`` options
name (see :func:`_trainer_class`).
"""

from __future__ import annotations

import logging
import os

# TRL 1.16's loss names (`DPOTrainer._compute_loss`), plus ours. The TRL minor is pinned (see _compat.py).
TRL_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
LOSS_TYPES = TRL_LOSS_TYPES + ("rdpo",)


def preflight(model_args, training_args, script_args=None) -> None:
    """Catch the usual command-line mistakes before any model is loaded: one sentence instead of a traceback
    (TRL would only fail on an unknown loss at the first training step, after loading the model, and on a missing
    dataset inside the launched process)."""
    losses = training_args.loss_type if isinstance(training_args.loss_type, list) else [training_args.loss_type]
    unknown = [t for t in losses if t not in LOSS_TYPES]
    if unknown:
        raise ValueError(f"unknown loss_type {', '.join(unknown)}; valid: {', '.join(LOSS_TYPES)}")
    if not training_args.beta > 0:
        raise ValueError(f"beta={training_args.beta} must be > 0 (the DPO temperature; TRL's default is 0.1)")
    for name in ("rdpo_visual_weight", "rdpo_anchor_weight"):
        if getattr(training_args, name, 0) < 0:
            raise ValueError(f"{name}={getattr(training_args, name)} must be >= 0 (0 turns the term off)")
    weights = getattr(training_args, "loss_weights", None)
    if weights and any(w < 0 for w in weights):
        raise ValueError(f"loss_weights={weights} must all be >= 0")
    dataset = getattr(script_args, "dataset_name", None) if script_args is not None else None
    if dataset and dataset.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(dataset)):
        raise ValueError(
            f"dataset {dataset!r} does not exist; give a local dataset (a save_to_disk directory such "
            "as the output of realign-data build) or a Hub dataset id"
        )
    name = model_args.model_name_or_path
    if not name:
        raise ValueError(
            "--model_name_or_path is required (a Hub id such as llava-hf/llava-1.5-7b-hf, or a "
            "local checkpoint directory)"
        )
    if name.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(name)):
        raise ValueError(f"model directory {name!r} does not exist")
    if os.path.isdir(os.path.expanduser(name)) and not any(
        os.path.isfile(os.path.join(os.path.expanduser(name), f)) for f in ("config.json", "adapter_config.json")
    ):
        raise ValueError(
            f"model directory {name!r} holds no model (no config.json): give a checkpoint directory "
            "(config.json and weights, as save_pretrained writes them) or a Hub id such as "
            "llava-hf/llava-1.5-7b-hf"
        )
    if dataset and _is_saved_to_disk(os.path.expanduser(dataset)):
        check_dataset(os.path.expanduser(dataset), script_args.dataset_train_split, rdpo="rdpo" in losses)
    if getattr(training_args, "hallucination_eval", None) and training_args.hallucination_eval_coco_root:
        from realign_data.evalsets.pope import PopeError, open_annotations

        try:  # the annotations the held-out suite needs (cheap): a bad corpus fails before launching
            open_annotations(training_args.hallucination_eval_coco_root, training_args.hallucination_eval_split)
        except PopeError as e:
            raise ValueError(f"hallucination_eval_coco_root: {e}") from None


IMAGES_CHECKED = 256  # rows whose images the preflight opens (the first ones): cheap, and catches a broken build


def check_dataset(path: str, split: str = "train", *, rdpo: bool = False) -> None:
    """A ``save_to_disk`` dataset has the split and the columns DPO needs (``prompt``, ``chosen``, ``rejected``;
    ``rejected_images`` for rdpo) and the images of its first :data:`IMAGES_CHECKED` rows open: else one
    ``ValueError`` sentence, before any model is loaded."""
    import io

    import datasets
    from PIL import Image

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(
                f"dataset {path!r} has no split {split!r} (it has {', '.join(sorted(ds))}); pass --dataset_train_split"
            )
        ds = ds[split]
    need = ["prompt", "chosen", "rejected"] + (["rejected_images"] if rdpo else [])
    missing = [c for c in need if c not in ds.column_names]
    if missing:
        why = (
            " (loss_type rdpo trains on the image-rejected pair: build the dataset with realign-data build)"
            if "rejected_images" in missing
            else ""
        )
        raise ValueError(
            f"dataset {path!r} has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}"
            f"{why}; its columns are {', '.join(ds.column_names)}"
        )
    columns = [c for c in ("images", "image", "rejected_images") if c in ds.column_names]
    head = ds.select(range(min(len(ds), IMAGES_CHECKED))).select_columns(columns)
    for c in columns:
        feature = head.features[c]
        if isinstance(feature, datasets.Image):
            head = head.cast_column(c, datasets.Image(decode=False))
        elif isinstance(getattr(feature, "feature", None), datasets.Image):
            head = head.cast_column(c, datasets.List(datasets.Image(decode=False)))
    for i, row in enumerate(head):
        for c in columns:
            for im in row[c] if isinstance(row[c], list) else [row[c]]:
                data = im.get("bytes") if isinstance(im, dict) else None
                try:
                    with Image.open(io.BytesIO(data) if data else im["path"]) as opened:
                        opened.load()
                except Exception as e:  # noqa: BLE001 - PIL raises many types for bad data
                    raise ValueError(
                        f"dataset {path!r}: the {c} of row {i} does not open as an image "
                        f"({type(e).__name__}: {e}); rebuild the dataset"
                    ) from None


def make_parser(prog: str | None = None):
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from realign_trl.config import RDPOConfig

    return TrlParser((ScriptArguments, RDPOConfig, ModelConfig, DatasetMixtureConfig), prog=prog)


def run(argv: list[str] | None = None) -> None:
    import realign_trl  # noqa: F401 - registers loss_type="rdpo"
    from realign_data.runtime.logs import route_library_logs, show_package_logs, verbose

    route_library_logs()  # library warnings only with `realign-trl dpo -v` (REALIGN_VERBOSE=1)
    # transformers hides the progress bar when its logger is quieter than WARNING: keep the bar
    logging.getLogger("transformers.training_args").setLevel(logging.WARNING)
    show_package_logs("realign_trl")  # e.g. the trainer's "rDPO: prefix sharing on/off (why)." line
    if not verbose():
        from realign_trl.step_logs import compact_step_logs

        compact_step_logs()
    parser = make_parser()
    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(
        args=argv, fail_with_unknown_args=False
    )
    if getattr(training_args, "curriculum", None):
        main_curriculum(script_args, training_args, model_args, dataset_args)
    else:
        main(script_args, training_args, model_args, dataset_args)


def main(script_args, training_args, model_args, dataset_args):
    """TRL's ``trl/scripts/dpo.py`` ``main`` (TRL 1.16), with this project's dataset loading and trainer class.

    Two differences: the dataset comes from :func:`_load_dataset`, which also reads ``save_to_disk`` directories
    (what ``realign-data build`` writes; TRL's ``load_dataset`` refuses them), and the trainer is
    :func:`_trainer_class`'s (``RDPOTrainer``, with the hallucination-eval callback when asked).
    """
    import transformers
    from packaging.version import Version
    from trl import get_peft_config, get_quantization_config

    training_args.model_init_kwargs = _model_init_kwargs(model_args, training_args)
    dataset = _load_dataset(script_args, dataset_args)
    trainer = _trainer_class(training_args)(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    if script_args.ignore_bias_buffers:
        import torch

        # torch distributed hack, as in TRL's script
        trainer.model._ddp_params_and_buffers_to_ignore = [
            name for name, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool
        ]
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("✅ Training completed.")
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"💾 Model saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
        trainer.accelerator.print(f"🤗 Model pushed to the Hub in https://huggingface.co/{trainer.hub_model_id}.")
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()


def _model_init_kwargs(model_args, training_args) -> dict:
    kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if training_args.model_init_kwargs is not None:
        kwargs.update(training_args.model_init_kwargs)
    return kwargs


def _trainer_class(args):
    """``RDPOTrainer``, or with ``--hallucination_eval pope,chair`` a subclass that attaches
    :class:`HallucinationEvalCallback` after construction. The held-out suite is read once, here, before any
    model is loaded, so a bad corpus fails fast."""
    from realign_trl.eval.config import EvalConfig
    from realign_trl.trainer import RDPOTrainer

    config = EvalConfig.from_training_args(args)  # None: no hallucination_eval
    if config is None:
        return RDPOTrainer
    from realign_trl.eval import EvalSuite, HallucinationEvalCallback

    suite = EvalSuite.from_config(config)

    class RDPOTrainerWithHallucinationEval(RDPOTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(HallucinationEvalCallback.from_config(self, config, suite=suite))

    return RDPOTrainerWithHallucinationEval


def _is_saved_to_disk(name) -> bool:
    from realign_data.runtime.atomic import is_saved_dataset  # the project's one test for a save_to_disk folder

    return isinstance(name, str) and os.path.isdir(name) and is_saved_dataset(name)


def _load_dataset(script_args, dataset_args):
    """TRL's dataset loading, plus ``save_to_disk`` directories (``realign-data build`` output)."""
    import datasets
    from trl import get_dataset

    if dataset_args.datasets:
        return get_dataset(dataset_args)
    name = script_args.dataset_name
    if not name:
        raise ValueError("Either `datasets` or `dataset_name` must be provided.")
    if _is_saved_to_disk(name):
        loaded = datasets.load_from_disk(name)
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    return datasets.load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)


def main_curriculum(script_args, training_args, model_args, dataset_args):
    """TRL's DPO ``main`` trained as an easy-to-hard curriculum (``RDPOConfig.curriculum``).

    The splits come from the dataset's ``easy``/``medium``/``hard`` splits or from difficulty terciles of its
    train split (:func:`realign_trl.curriculum.curriculum_splits`). Per-stage checkpoints and logs go to
    ``<output_dir>/stage-<i>-<name>``, per-stage metrics to ``<output_dir>/curriculum_metrics.json``, and the
    final model to ``output_dir``.
    """
    import transformers
    from packaging.version import Version
    from trl import get_peft_config, get_quantization_config

    from realign_trl.curriculum import check_curriculum_args, format_curriculum_table, train_curriculum

    check_curriculum_args(training_args, script=True)
    training_args.model_init_kwargs = _model_init_kwargs(model_args, training_args)

    dataset = _load_dataset(script_args, dataset_args)
    eval_dataset = dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None
    result = train_curriculum(
        model_args.model_name_or_path,
        training_args,
        dataset,
        train_split=script_args.dataset_train_split,
        eval_dataset=eval_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
        trainer_cls=_trainer_class(training_args),
    )
    trainer = result.trainer
    trainer.accelerator.print(
        f"Curriculum {training_args.curriculum} (reference: {training_args.curriculum_reference}), stage means:\n"
        + format_curriculum_table(result.stages)
    )
    trainer.accelerator.print("✅ Training completed.")
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(
        f"💾 Model saved to {training_args.output_dir}; per-stage metrics in "
        f"{training_args.output_dir}/curriculum_metrics.json."
    )
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()


if __name__ == "__main__":
    run()
