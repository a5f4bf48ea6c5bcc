"""``realign_trl``: Re-Align's rDPO as a ``loss_type`` of TRL's ``DPOTrainer``.

``import realign_trl`` checks the TRL version and the shape of the TRL internals the plugin relies on, then
registers ``loss_type="rdpo"`` (:func:`realign_trl.trl_seam.install`): from then on the stock ``trl.DPOTrainer``
builds a :class:`RDPOTrainer` when its config asks for ``loss_type="rdpo"``, so ``DPOConfig(loss_type="rdpo")``,
TRL-style scripts and YAML work unchanged. ``RDPOTrainer`` and ``RDPOConfig`` are the same classes under their
own names (the recommended spelling in new code).

Registering is explicit and eager, so importing the package imports TRL's trainer (torch, transformers: seconds).
There is no import hook (the earlier lazy registration through one is gone, issue 25).

``register()`` is kept for scripts that call it explicitly; it is idempotent. ``DataCollatorForVisionRDPO`` and
the curriculum helpers (``train_curriculum``, ``curriculum_splits``) are loaded lazily on first access.
"""

from __future__ import annotations

from typing import Any

from realign_data import __version__ as __version__  # the one version string of the distribution

from ._compat import SUPPORTED_TRL, UnsupportedTRLVersionError, check_trl_version

__all__ = [
    "register",
    "rdpo_loss",
    "RDPOConfig",
    "RDPOTrainer",
    "DataCollatorForVisionRDPO",
    "train_curriculum",
    "curriculum_splits",
    "SUPPORTED_TRL",
    "UnsupportedTRLVersionError",
    "TRLShapeError",
]

check_trl_version()


def register() -> None:
    """Register ``loss_type="rdpo"`` on the stock ``trl.DPOTrainer`` (idempotent; ``import realign_trl`` does it)."""
    check_trl_version()
    from .trl_seam import check_trl_shape, install

    check_trl_shape()  # before importing the trainer, whose imports would fail less clearly on a changed TRL
    from .trainer import trainer_class_for

    install(trainer_class_for)


def __getattr__(name: str) -> Any:
    if name == "rdpo_loss":
        from .loss import rdpo_loss

        return rdpo_loss
    if name == "RDPOConfig":
        from .config import RDPOConfig

        return RDPOConfig
    if name == "RDPOTrainer":
        from .trainer import RDPOTrainer

        return RDPOTrainer
    if name == "TRLShapeError":
        from .trl_seam import TRLShapeError

        return TRLShapeError
    if name == "DataCollatorForVisionRDPO":
        from .collator import DataCollatorForVisionRDPO

        return DataCollatorForVisionRDPO
    if name in ("train_curriculum", "curriculum_splits"):
        from . import curriculum

        return getattr(curriculum, name)
    raise AttributeError(f"module 'realign_trl' has no attribute {name!r}")


register()  # the one registration of loss_type="rdpo" (realign_trl/trl_seam.py)
