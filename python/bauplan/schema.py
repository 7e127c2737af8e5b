"""Bauplan's `bauplan.schema` names for what `lakeplan.Client` returns (the very same classes)."""

from lakeplan.records import (  # noqa: F401 - re-exported
    Actor,
    Branch,
    Commit,
    DetachedRef,
    Job,
    Namespace,
    PartitionField,
    Ref,
    Table,
    TableField,
    TableWithMetadata,
    Tag,
)
