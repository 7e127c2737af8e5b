"""The taxi pipeline's Python models and its expectation.

clean_trips is written in the 0.3.x style (Annotated inputs, a TableSchema projection and an
output contract); zone_stats in the 0.1.x style (inputs as default values).
"""

from typing import Annotated

import pyarrow
import pyarrow.compute as pc

import lakeplan
from lakeplan.standard_expectations import expect_column_all_unique, expect_column_no_nulls


class TripColumns(lakeplan.TableSchema):
    """The columns of default.trips the pipeline reads (pushed into the scan)."""

    trip_id: Annotated[lakeplan.Int64 | None, lakeplan.TableField(doc="trip identifier")]
    vendor: Annotated[lakeplan.String | None, lakeplan.TableField(doc="taxi company")]
    pickup_zone: Annotated[lakeplan.Int64 | None, lakeplan.TableField(doc="see default.zones")]
    distance_km: Annotated[lakeplan.Float64 | None, lakeplan.TableField(doc="trip distance")]
    fare: Annotated[lakeplan.Float64 | None, lakeplan.TableField(doc="fare paid")]


class CleanTrips(lakeplan.TableSchema):
    """The output contract of clean_trips, checked after it ran."""

    trip_id: lakeplan.Int64
    vendor: lakeplan.String | None
    pickup_zone: lakeplan.Int64 | None
    distance_km: lakeplan.Float64 | None
    fare: lakeplan.Float64
    fare_per_km: lakeplan.Float64


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def clean_trips(
    trips: Annotated[
        pyarrow.Table,
        lakeplan.Model("trips", projection_schema=TripColumns, filter="fare > 0"),
    ],
    min_fare: Annotated[float, lakeplan.Parameter("min_fare")],
) -> Annotated[pyarrow.Table, CleanTrips]:
    """Trips paying at least `min_fare`, with the fare per kilometre (distance floored at 0.1)."""
    kept = trips.filter(pc.greater_equal(trips["fare"], min_fare))
    per_km = pc.divide(kept["fare"], pc.max_element_wise(kept["distance_km"], 0.1))
    print(f"clean_trips: kept {kept.num_rows} of {trips.num_rows} trips")
    return kept.append_column("fare_per_km", per_km)


@lakeplan.model()
@lakeplan.python("3.11")
def zone_stats(
    trips=lakeplan.Model("clean_trips", columns=["pickup_zone", "fare"]),
    zones=lakeplan.Model("zones", columns=["zone_id", "borough"]),
):
    """Trips and total fare per pickup zone, with the zone's borough (kept in memory only)."""
    per_zone = trips.group_by("pickup_zone").aggregate([("fare", "count"), ("fare", "sum")])
    per_zone = per_zone.rename_columns(["pickup_zone", "trips", "total_fare"])
    return per_zone.join(zones, keys="pickup_zone", right_keys="zone_id", join_type="inner")


@lakeplan.expectation()
@lakeplan.python("3.11")
def clean_trips_are_valid(data=lakeplan.Model("clean_trips", columns=["trip_id", "fare"])):
    """Each trip appears once and has a fare."""
    return expect_column_all_unique(data, "trip_id") and expect_column_no_nulls(data, "fare")
