"""`bauplan.store`: `save_obj(key, obj)` and `load_obj(key)`, lakeplan's object store under
Bauplan's name (the very same functions and exceptions as `lakeplan.store`)."""

from lakeplan.store import *  # noqa: F401,F403 - the public API, re-exported as is
from lakeplan.store import __all__  # noqa: F401
