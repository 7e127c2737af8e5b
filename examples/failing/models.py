"""expensive_trips runs, then the expectation fares_are_cheap fails: the run fails before
anything is published, the target branch is left exactly as it was and the run's temporary
branch and log are kept for inspection."""

import lakeplan
from lakeplan.standard_expectations import expect_column_mean_smaller_than


@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def expensive_trips(trips=lakeplan.Model("trips", columns=["trip_id", "fare"], filter="fare > 20")):
    return trips


@lakeplan.expectation()
@lakeplan.python("3.11")
def fares_are_cheap(
    data=lakeplan.Model("expensive_trips", columns=["fare"]),
    max_mean_fare=lakeplan.Parameter("max_mean_fare"),
):
    return expect_column_mean_smaller_than(data, "fare", max_mean_fare)
