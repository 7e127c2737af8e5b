"""Bauplan's exception names for the errors of `lakeplan.Client` (the very same classes), plus
`BauplanError` and `BauplanHTTPError` for lakeplan's two bases."""

from lakeplan.exceptions import *  # noqa: F401,F403 - the classes, re-exported as they are
from lakeplan.exceptions import LakeplanError, LakeplanHTTPError
from lakeplan.exceptions import __all__ as _lakeplan_all

BauplanError = LakeplanError
BauplanHTTPError = LakeplanHTTPError

__all__ = [*_lakeplan_all, "BauplanError", "BauplanHTTPError"]
