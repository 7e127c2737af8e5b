"""`bauplan.standard_expectations`: the same functions as `lakeplan.standard_expectations`."""

from lakeplan.standard_expectations import *  # noqa: F401,F403
from lakeplan.standard_expectations import __all__  # noqa: F401
