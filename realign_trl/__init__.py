"""``realign_trl``: Re-Align's rDPO as a ``loss_type`` of TRL's ``DPOTrainer``.

After ``import realign_trl``, the stock ``trl.DPOTrainer`` accepts ``DPOConfig(loss_type="rdpo")``.

Importing this package is cheap on purpose (no torch, no transformers; ``realign-trl --help`` must be fast,
and importing TRL's trainer module takes seconds). It checks the TRL version and then:

* if ``trl.trainer.dpo_trainer`` is already imported, patches ``DPOTrainer`` at once;
* otherwise installs a one-shot import hook that patches ``DPOTrainer`` the moment TRL's trainer module
  finishes loading (``from trl import DPOTrainer`` triggers it), so the class is patched before any user code
  can see it.

``register()`` does the patch eagerly (importing TRL's trainer) and is idempotent. ``RDPOConfig``,
``DataCollatorForVisionRDPO`` and the curriculum helpers (``train_curriculum``, ``curriculum_splits``) are
loaded lazily on first access. There is deliberately no ``RDPOTrainer``:
the trainer *is* ``trl.DPOTrainer``.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

from realign_data import __version__ as __version__  # the one version string of the distribution

from ._compat import SUPPORTED_TRL, UnsupportedTRLVersionError, check_trl_version
from .loss import rdpo_loss

__all__ = [
    "register",
    "rdpo_loss",
    "RDPOConfig",
    "DataCollatorForVisionRDPO",
    "train_curriculum",
    "curriculum_splits",
    "SUPPORTED_TRL",
    "UnsupportedTRLVersionError",
]


_TRAINER_MODULE = "trl.trainer.dpo_trainer"

check_trl_version()


def register() -> None:
    """Make ``loss_type="rdpo"`` valid for the stock ``trl.DPOTrainer`` now (idempotent).

    Importing ``realign_trl`` already arranges this lazily; call ``register()`` to pay the TRL import up front
    or to be explicit in scripts.
    """
    check_trl_version()
    _remove_hook()  # before importing TRL's trainer below, or the hook would re-enter this import
    from .trainer import patch_dpo_trainer

    patch_dpo_trainer()


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """One-shot hook: let the normal machinery load TRL's trainer module, then patch it."""

    def __init__(self) -> None:
        self._loader: Any = None
        self._busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname != _TRAINER_MODULE or self._busy:
            return None
        self._busy = True
        try:
            from importlib.util import find_spec

            spec = find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _remove_hook()
        trainer = sys.modules.get(f"{__name__}.trainer")
        if trainer is not None and not hasattr(trainer, "patch_dpo_trainer"):
            return  # realign_trl.trainer, imported first, is loading TRL's trainer: it patches when it is done
        from .trainer import patch_dpo_trainer

        patch_dpo_trainer()


_HOOK: _PatchAfterImport | None = None


def _remove_hook() -> None:
    global _HOOK
    if _HOOK is not None and _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
    _HOOK = None


if _TRAINER_MODULE in sys.modules:
    register()
else:
    _HOOK = _PatchAfterImport()
    sys.meta_path.insert(0, _HOOK)


def __getattr__(name: str) -> Any:
    if name == "RDPOConfig":
        from .config import RDPOConfig

        return RDPOConfig
    if name == "DataCollatorForVisionRDPO":
        from .collator import DataCollatorForVisionRDPO

        return DataCollatorForVisionRDPO
    if name in ("train_curriculum", "curriculum_splits"):
        from . import curriculum

        return getattr(curriculum, name)
    raise AttributeError(f"module 'realign_trl' has no attribute {name!r}")
