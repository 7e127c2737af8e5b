"""lakeplan: write data pipelines as Python functions (Bauplan-compatible authoring API).

    import lakeplan

    @lakeplan.model(materialization_strategy="REPLACE")
    @lakeplan.python("3.11")
    def clean_trips(trips=lakeplan.Model("taxi_trips", columns=["fare"], filter="fare > 0")):
        return trips

The same names are importable as `bauplan`, so Bauplan projects run unchanged. Importing this
package needs only the standard library and pyarrow.
"""

from . import _schema, standard_expectations
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
]
