"""A pipeline written for Bauplan: it runs on lakeplan unchanged."""

from typing import Annotated

import bauplan
import pyarrow
import pyarrow.compute as pc
from bauplan.standard_expectations import expect_column_accepted_values


class VendorTrip(bauplan.TableSchema):
    trip_id: Annotated[bauplan.Int64 | None, bauplan.TableField(doc="trip identifier")]
    vendor: Annotated[bauplan.String | None, bauplan.TableField(doc="taxi company")]
    fare: Annotated[bauplan.Float64 | None, bauplan.TableField(doc="fare paid")]


# Bauplan 0.3.x style
@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11", pip={"pyarrow": "*"})
def vendor_trips(
    trips: Annotated[pyarrow.Table, bauplan.Model("trips", projection_schema=VendorTrip)],
    vendor: Annotated[str, bauplan.Parameter("vendor")],
) -> pyarrow.Table:
    return trips.filter(pc.equal(trips["vendor"], vendor))


# Bauplan 0.1.x style
@bauplan.model()
@bauplan.python("3.11")
def big_fares(data=bauplan.Model("vendor_trips", columns=["trip_id", "vendor", "fare"], filter="fare > 30")):
    return data


@bauplan.expectation()
@bauplan.python("3.11")
def one_vendor(data=bauplan.Model("big_fares", columns=["vendor"]), vendor=bauplan.Parameter("vendor")):
    return expect_column_accepted_values(data, "vendor", [vendor])
