"""Where the project's data folders live, in a checkout and in an installed wheel."""

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path(sys.prefix) / "share" / "vogateway"


def resource(folder: str, *parts: str) -> Path:
    """Path of a file under one of the top-level data folders (``schemas``, ``xml``)."""
    for root in (_CHECKOUT, _INSTALLED):
        candidate = root / folder
        if candidate.is_dir():
            return candidate.joinpath(*parts)
    raise FileNotFoundError(f"data folder {folder!r} not found under {_CHECKOUT} or {_INSTALLED}")


SAMPLES = Path(__file__).resolve().parent / "data" / "samples"
