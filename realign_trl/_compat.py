"""TRL version guard, kept import-light (no torch, no trl import).

The plugin relies on private ``DPOTrainer`` internals whose shape changes between TRL minor versions (listed and
checked in :mod:`realign_trl.trl_seam`), so an untested TRL fails loudly at import instead of training with a
silently wrong loss.
"""

from __future__ import annotations

from importlib import metadata

#: The TRL versions the plugin is tested against (mirrors the ``trl`` pin in pyproject.toml).
SUPPORTED_TRL = ">=1.16,<1.17"


class UnsupportedTRLVersionError(ImportError):
    """Raised when the installed TRL is outside :data:`SUPPORTED_TRL`."""


def installed_trl_version() -> str | None:
    try:
        return metadata.version("trl")
    except metadata.PackageNotFoundError:
        return None


def check_trl_version(version: str | None = None) -> str:
    """Return the installed TRL version, or raise one clear error naming it and the supported range."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = installed_trl_version() if version is None else version
    if version is None:
        raise UnsupportedTRLVersionError(
            f"realign_trl needs TRL {SUPPORTED_TRL}, but TRL is not installed: pip install 'trl{SUPPORTED_TRL}'."
        )
    if Version(version) not in SpecifierSet(SUPPORTED_TRL):
        raise UnsupportedTRLVersionError(
            f"realign_trl supports TRL {SUPPORTED_TRL}, but TRL {version} is installed. The rdpo plugin hooks "
            f"DPOTrainer internals that change between TRL releases; install a supported version with "
            f"pip install 'trl{SUPPORTED_TRL}'."
        )
    return version
