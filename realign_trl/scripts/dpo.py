"""TRL's own DPO script (``trl/scripts/dpo.py``) with the rdpo plugin active and ``RDPOConfig`` parsed.

``realign-trl dpo`` launches this file with ``accelerate launch``, exactly as ``trl dpo`` launches TRL's.
It reuses TRL's ``main`` unchanged: the only differences are the config dataclass (``RDPOConfig`` instead of
``DPOConfig``, so the rdpo knobs are flags and YAML keys) and the plugin registration. Run it directly with
``accelerate launch -m realign_trl.scripts.dpo ...`` or ``python -m realign_trl.scripts.dpo ...``.
"""

from __future__ import annotations


def make_parser(prog: str | None = None):
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from realign_trl.config import RDPOConfig

    return TrlParser((ScriptArguments, RDPOConfig, ModelConfig, DatasetMixtureConfig), prog=prog)


def run(argv: list[str] | None = None) -> None:
    import realign_trl

    realign_trl.register()
    from trl.scripts.dpo import main

    parser = make_parser()
    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(
        args=argv, fail_with_unknown_args=False
    )
    main(script_args, training_args, model_args, dataset_args)


if __name__ == "__main__":
    run()
