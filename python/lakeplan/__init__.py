"""lakeplan: write data pipelines as Python functions (Bauplan-compatible authoring API).

    import lakeplan

    @lakeplan.model(materialization_strategy="REPLACE")
    @lakeplan.python("3.11")
    def clean_trips(trips=lakeplan.Model("taxi_trips", columns=["fare"], filter="fare > 0")):
        return trips

The same names are importable as `bauplan`, so Bauplan projects run unchanged. Importing this
package needs only the standard library and pyarrow.

`lakeplan.Client` (a server's lake from Python: branches, tables, imports, queries to Arrow) is
imported on first use, so that pipeline workers, which import this package too, never load it.
"""

from . import _schema, standard_expectations, store
from ._decorators import expectation, extras, model, python, resources
from ._inputs import Model, Parameter
from ._schema import (
    Any,
    Binary,
    Bool,
    Date32,
    Date64,
    FieldType,
    Float64,
    Int32,
    Int64,
    String,
    TableField,
    TableSchema,
    TimestampMicro,
    TimestampMicroUTC,
    TimestampNano,
    TimestampNanoUTC,
)

__version__ = "0.1.0"

__all__ = [
    "model",
    "python",
    "expectation",
    "resources",
    "extras",
    "Model",
    "Parameter",
    *_schema.__all__,
    "standard_expectations",
    "store",
]


# Loaded on first use (PEP 562): name → (submodule, attribute; None for the submodule itself).
_LAZY = {
    "Client": ("client", "Client"),
    "LakeplanError": ("exceptions", "LakeplanError"),
    "client": ("client", None),
    "exceptions": ("exceptions", None),
    "records": ("records", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    try:
        mod = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{module}":
            raise
        # The copy of this package inside a pipeline sandbox carries the authoring API only.
        raise AttributeError(f"lakeplan.{name} is not available in this copy of lakeplan (authoring API only)") from None
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value
