"""`bauplan`: the lakeplan authoring API under Bauplan's name, so Bauplan projects run unchanged.

`import bauplan`, `@bauplan.model()`, `bauplan.Model(...)` and
`from bauplan.standard_expectations import expect_column_no_nulls` all resolve to lakeplan's
objects (the very same ones: `bauplan.Model is lakeplan.Model`).
"""

from lakeplan import *  # noqa: F401,F403 - the public API, re-exported as is
from lakeplan import __all__, __version__  # noqa: F401

from . import standard_expectations  # noqa: E402 - bauplan.standard_expectations, not lakeplan's
from . import store  # noqa: E402 - bauplan.store (save_obj, load_obj), lakeplan's store

# `bauplan.Client` is `lakeplan.Client`; it and Bauplan's `exceptions`, `schema` and `state`
# modules are loaded on first use, as in lakeplan.
_LAZY_MODULES = ("exceptions", "schema", "state")


def __getattr__(name):
    import importlib

    if name == "Client":
        import lakeplan

        return lakeplan.Client
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
