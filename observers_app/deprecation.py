"""Import paths kept for one release after a move: each old name resolves with a DeprecationWarning."""

import importlib
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "0.4"


def moved(old_module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) resolving each old name to its ``"new.module:new_name"``.

    The new module is imported on first use, so an old path costs nothing until it is used and no
    import cycle forms; the warning points at the line that used the old path."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new_module, _, new_name = names[name].partition(":")
        warnings.warn(
            f"{old_module}.{name} moved to {new_module}.{new_name} (also in observers_app.manager); "
            f"the old path is removed in {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__
