//! `lakeplan init`: writes a small working project over the sample taxi data of the repository
//! (`data/trips_*.csv` and `data/zones.jsonl` imported as `default.trips` and `default.zones`, as
//! `scripts/demo.sh` does): two Python models (one per Bauplan input style), one expectation, one
//! SQL model and a parameter.

use std::path::{Path, PathBuf};

use crate::error::{Location, PipelineError, Result};
use crate::project::PROJECT_FILES;

const MODELS_PY: &str = r#""""Example lakeplan pipeline over the sample taxi tables default.trips and default.zones.

`import bauplan` works the same way: lakeplan understands Bauplan pipelines unchanged.
"""

from typing import Annotated

import pyarrow
import pyarrow.compute as pc

import lakeplan


class TripColumns(lakeplan.TableSchema):
    """The columns of default.trips this pipeline reads (a projection pushed into the scan)."""

    trip_id: Annotated[lakeplan.Int64 | None, lakeplan.TableField(doc="trip identifier")]
    pickup_zone: Annotated[lakeplan.Int64 | None, lakeplan.TableField(doc="zone id, see default.zones")]
    distance_km: Annotated[lakeplan.Float64 | None, lakeplan.TableField(doc="trip distance")]
    fare: Annotated[lakeplan.Float64 | None, lakeplan.TableField(doc="fare paid")]


# 0.3.x style: the input is an Annotated parameter, the projection a TableSchema.
@lakeplan.model(materialization_strategy="REPLACE")
@lakeplan.python("3.11")
def paid_trips(
    trips: Annotated[
        pyarrow.Table,
        lakeplan.Model("trips", projection_schema=TripColumns, filter="fare > 0"),
    ],
    min_fare: Annotated[float, lakeplan.Parameter("min_fare")],
) -> pyarrow.Table:
    """Trips that paid at least `min_fare`, with the fare per kilometre."""
    kept = trips.filter(pc.greater_equal(trips["fare"], min_fare))
    per_km = pc.divide(kept["fare"], pc.max_element_wise(kept["distance_km"], 0.1))
    return kept.append_column("fare_per_km", per_km)


# 0.1.x style: the input is a default value, the projection a list of columns.
@lakeplan.model()
@lakeplan.python("3.11")
def fares_by_zone(trips=lakeplan.Model("paid_trips", columns=["pickup_zone", "fare"])):
    """Trip count and mean fare per pickup zone (in memory only)."""
    return trips.group_by("pickup_zone").aggregate([("fare", "count"), ("fare", "mean")])


@lakeplan.expectation()
@lakeplan.python("3.11")
def trip_ids_are_unique(data=lakeplan.Model("paid_trips", columns=["trip_id"])):
    """Each trip appears once."""
    return pc.count_distinct(data["trip_id"]).as_py() == data.num_rows
"#;

const SQL_MODEL: &str = r#"-- A SQL model: named after the file, its FROM tables are its inputs.
-- lakeplan: materialization_strategy=REPLACE
SELECT z.borough,
       sum(f.fare_count) AS trips,
       round(sum(f.fare_mean * f.fare_count) / sum(f.fare_count), 2) AS mean_fare
FROM fares_by_zone f
JOIN zones z ON f.pickup_zone = z.zone_id
GROUP BY z.borough
HAVING sum(f.fare_count) >= $min_trips
ORDER BY trips DESC
"#;

/// Writes the example project into `path` (created if needed) and returns the files written.
/// Refuses a directory that already holds a project file or any of the example's files.
pub fn scaffold(path: impl AsRef<Path>, name: &str) -> Result<Vec<PathBuf>> {
    let dir = path.as_ref();
    for f in PROJECT_FILES {
        if dir.join(f).exists() {
            return Err(PipelineError::ProjectFile {
                at: Location::file(dir.join(f).display().to_string()),
                message: "a project already exists here; choose an empty folder".to_string(),
            });
        }
    }
    let project_yml = format!(
        "project:\n  id: {}\n  name: {}\n  description: Example pipeline over the sample taxi data (tables default.trips and default.zones)\nparameters:\n  min_fare:\n    type: float\n    default: 5.0\n    description: Trips paying less are left out\n  min_trips:\n    type: int\n    default: 1\n    description: Boroughs with fewer trips are left out\n",
        uuid::Uuid::new_v4(),
        yaml_string(name)
    );
    let files: [(&str, &str); 3] = [
        ("lakeplan_project.yml", &project_yml),
        ("models.py", MODELS_PY),
        ("trips_by_borough.sql", SQL_MODEL),
    ];
    for (f, _) in &files {
        if dir.join(f).exists() {
            return Err(PipelineError::ProjectFile {
                at: Location::file(dir.join(f).display().to_string()),
                message: "the file already exists; choose an empty folder".to_string(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    let mut written = Vec::new();
    for (f, text) in files {
        let p = dir.join(f);
        std::fs::write(&p, text).map_err(|e| PipelineError::io(&p, e))?;
        written.push(p);
    }
    Ok(written)
}

/// A YAML scalar for a user-given name: a JSON string is a valid, always-quoted YAML string.
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}
