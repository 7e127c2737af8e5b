"""Bauplan's `bauplan.state` names for what `lakeplan.Client.run` returns (the very same classes)."""

from lakeplan.records import RunExecutionContext, RunState  # noqa: F401 - re-exported
