"""What the entry points do so that the first lines a person reads are groundlabel's: the libraries' known warnings
that nobody running groundlabel can act on are filtered, each by its category, the module that warns and its text.
Only the entry points (``python -m pipeline``, ``python -m pipeline.testing``, ``python -m sync.prelabel`` and
``python app.py``) call this; importing groundlabel changes no warning filter."""

from __future__ import annotations

import warnings

# (category, module that warns, message): each is a library's housekeeping, not a problem of the user's setup.
KNOWN_WARNINGS = (
    # mobile_sam imports timm's old module paths
    (FutureWarning, r"timm\.models\.(layers|registry)\b", r"Importing from timm\.models\.\w+ is deprecated"),
    # mobile_sam registers its TinyViT models under names timm already has
    (UserWarning, r"mobile_sam\.modeling\.tiny_vit_sam\b", r"Overwriting tiny_vit_\w+ in registry"),
)


def quiet_known_warnings() -> None:
    """Ignore ``KNOWN_WARNINGS`` (and nothing else) for the rest of this process."""
    for category, module, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
