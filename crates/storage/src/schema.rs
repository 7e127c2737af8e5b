//! Schema inference across files, Iceberg type promotion, and partition specs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use lakeplan_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::from_iceberg;

/// Maps the Arrow types that readers produce onto the ones an Iceberg table stores, so that a
/// file's schema can be compared with a table's: string views become strings, small integers
/// become `int`, nanosecond and second timestamps become microsecond ones, all-null columns
/// (type `Null`, as CSV inference gives an empty column) become strings.
pub fn normalize_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, tz) => DataType::Timestamp(
            TimeUnit::Microsecond,
            tz.as_ref().map(|_| Arc::from("+00:00")),
        ),
        DataType::Time32(_) | DataType::Time64(_) => DataType::Time64(TimeUnit::Microsecond),
        DataType::Dictionary(_, v) => normalize_type(v),
        other => other.clone(),
    }
}

pub fn normalize_schema(s: &ArrowSchema) -> ArrowSchema {
    ArrowSchema::new(
        s.fields()
            .iter()
            .map(|f| Field::new(f.name(), normalize_type(f.data_type()), true))
            .collect::<Vec<_>>(),
    )
}

/// The Iceberg type for a (normalized) Arrow type.
pub fn iceberg_type(t: &DataType) -> Result<Type> {
    iceberg::arrow::arrow_type_to_type(&normalize_type(t)).map_err(from_iceberg)
}

/// How a column's type in a new file relates to the table's.
#[derive(Debug, PartialEq)]
pub enum TypeFit {
    /// Same type, or the file's values fit in the table's wider type.
    Fits,
    /// The table's type must be promoted (Iceberg's rules: int→long, float→double, decimal
    /// precision up).
    Widen(Type),
    Incompatible,
}

pub fn fit(table: &Type, file: &Type) -> TypeFit {
    use PrimitiveType as P;
    match (table, file) {
        (a, b) if a == b => TypeFit::Fits,
        // The file's values convert without loss into the table's type.
        (Type::Primitive(P::Long), Type::Primitive(P::Int))
        | (Type::Primitive(P::Double), Type::Primitive(P::Float | P::Int | P::Long)) => {
            TypeFit::Fits
        }
        // Any primitive value has a string form; a string column takes it.
        (Type::Primitive(P::String), Type::Primitive(_)) => TypeFit::Fits,
        (Type::Primitive(P::Int), Type::Primitive(P::Long)) => {
            TypeFit::Widen(Type::Primitive(P::Long))
        }
        (Type::Primitive(P::Float), Type::Primitive(P::Double)) => {
            TypeFit::Widen(Type::Primitive(P::Double))
        }
        (
            Type::Primitive(P::Decimal {
                precision: p1,
                scale: s1,
            }),
            Type::Primitive(P::Decimal {
                precision: p2,
                scale: s2,
            }),
        ) if s1 == s2 => {
            if p2 <= p1 {
                TypeFit::Fits
            } else {
                TypeFit::Widen(Type::Primitive(P::Decimal {
                    precision: *p2,
                    scale: *s1,
                }))
            }
        }
        _ => TypeFit::Incompatible,
    }
}

/// The type two files agree on when a table is first created from both: equal types, or the
/// wider of two integer or two floating types, or `double` for a mix of integers and floats.
fn unify_for_create(a: &Type, b: &Type) -> Option<Type> {
    use PrimitiveType as P;
    if a == b {
        return Some(a.clone());
    }
    // Files that disagree between a string and another type are a conflict to resolve in the
    // plan, not a silent fallback to string.
    if matches!(a, Type::Primitive(P::String)) || matches!(b, Type::Primitive(P::String)) {
        return None;
    }
    match fit(a, b) {
        TypeFit::Fits => return Some(a.clone()),
        TypeFit::Widen(t) => return Some(t),
        TypeFit::Incompatible => {}
    }
    if let TypeFit::Fits = fit(b, a) {
        return Some(b.clone());
    }
    let numeric = |t: &Type| matches!(t, Type::Primitive(P::Int | P::Long | P::Float | P::Double));
    if numeric(a) && numeric(b) {
        return Some(Type::Primitive(P::Double));
    }
    None
}

/// One column of an inferred plan.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlannedColumn {
    pub name: String,
    /// The Iceberg type, as Iceberg's JSON writes it (`long`, `string`, `timestamptz`, ...).
    #[serde(rename = "type")]
    pub ty: Type,
    pub required: bool,
}

/// Files that disagree on a column's type: the plan cannot be applied until the user picks
/// the type (edit the column in the plan and remove the conflict).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ColumnConflict {
    pub column: String,
    /// file -> the type it has there
    pub types: BTreeMap<String, String>,
}

/// Unifies the schemas of several files into the columns of a new table (first-seen order),
/// listing every column whose types cannot be reconciled.
pub fn unify(files: &[(String, ArrowSchema)]) -> Result<(Vec<PlannedColumn>, Vec<ColumnConflict>)> {
    let mut cols: Vec<PlannedColumn> = Vec::new();
    let mut seen: BTreeMap<String, Vec<(String, Type)>> = BTreeMap::new();
    let mut conflicts: BTreeMap<String, ColumnConflict> = BTreeMap::new();
    for (path, schema) in files {
        for f in schema.fields() {
            let ty = iceberg_type(f.data_type()).map_err(|e| Error::InvalidData {
                path: path.clone(),
                message: format!("column '{}': {e}", f.name()),
            })?;
            seen.entry(f.name().clone())
                .or_default()
                .push((path.clone(), ty.clone()));
            match cols.iter_mut().find(|c| &c.name == f.name()) {
                None => cols.push(PlannedColumn {
                    name: f.name().clone(),
                    ty,
                    required: false,
                }),
                Some(c) => match unify_for_create(&c.ty, &ty) {
                    Some(t) => c.ty = t,
                    None => {
                        let entry = conflicts.entry(c.name.clone()).or_insert(ColumnConflict {
                            column: c.name.clone(),
                            types: BTreeMap::new(),
                        });
                        for (p, t) in &seen[&c.name] {
                            entry.types.insert(p.clone(), t.to_string());
                        }
                    }
                },
            }
        }
    }
    Ok((cols, conflicts.into_values().collect()))
}

/// An Iceberg schema (ids 1..n) for planned columns.
pub fn schema_from_columns(cols: &[PlannedColumn]) -> Result<Schema> {
    let mut names = std::collections::HashSet::new();
    let fields = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !names.insert(c.name.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "column '{}' appears twice",
                    c.name
                )));
            }
            let id =
                i32::try_from(i + 1).map_err(|_| Error::InvalidInput("too many columns".into()))?;
            Ok(Arc::new(if c.required {
                NestedField::required(id, &c.name, c.ty.clone())
            } else {
                NestedField::optional(id, &c.name, c.ty.clone())
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(from_iceberg)
}

/// One partition field: `col` (identity) or `transform(col)` with transform one of
/// identity, year, month, day, hour, bucket[N], truncate[N] (also written `bucket(N, col)`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartitionColumn {
    pub from_column_name: String,
    pub transform: String,
}

/// Parses `--partitioned-by "col, day(ts), bucket(16, id)"`.
pub fn parse_partitioning(spec: &str) -> Result<Vec<PartitionColumn>> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    let mut parts = Vec::new();
    for ch in spec.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::InvalidInput(format!(
                "partition field '{part}': expected 'col' or 'transform(col)'"
            ))
        };
        match part.split_once('(') {
            None => out.push(PartitionColumn {
                from_column_name: part.to_string(),
                transform: "identity".into(),
            }),
            Some((t, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(bad)?;
                let args: Vec<&str> = inner.split(',').map(str::trim).collect();
                let t = t.trim().to_ascii_lowercase();
                let (transform, col) = match (t.as_str(), args.as_slice()) {
                    ("bucket" | "truncate", [n, c]) => (format!("{t}[{n}]"), *c),
                    (_, [c]) => (t.clone(), *c),
                    _ => return Err(bad()),
                };
                transform
                    .parse::<Transform>()
                    .map_err(|e| Error::InvalidInput(format!("partition field '{part}': {e}")))?;
                out.push(PartitionColumn {
                    from_column_name: col.to_string(),
                    transform,
                });
            }
        }
    }
    Ok(out)
}

/// Binds partition columns to a schema: every source column must exist.
pub fn partition_spec(
    schema: &Schema,
    cols: &[PartitionColumn],
) -> Result<Option<UnboundPartitionSpec>> {
    if cols.is_empty() {
        return Ok(None);
    }
    let mut b = UnboundPartitionSpec::builder();
    for c in cols {
        let field = schema.field_by_name(&c.from_column_name).ok_or_else(|| {
            Error::InvalidInput(format!(
                "partition column '{}' is not a column of the table",
                c.from_column_name
            ))
        })?;
        let transform: Transform = c
            .transform
            .parse()
            .map_err(|e| Error::InvalidInput(format!("transform '{}': {e}", c.transform)))?;
        let target = match transform {
            Transform::Identity => c.from_column_name.clone(),
            _ => format!(
                "{}_{}",
                c.from_column_name,
                c.transform.split('[').next().unwrap_or(&c.transform)
            ),
        };
        b = b
            .add_partition_field(field.id, target, transform)
            .map_err(from_iceberg)?;
    }
    let spec = b.build();
    // Binding checks that each transform applies to its column's type.
    spec.clone()
        .bind(Arc::new(schema.clone()))
        .map_err(|e| Error::InvalidInput(format!("partitioning: {e}")))?;
    Ok(Some(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: PrimitiveType) -> Type {
        Type::Primitive(t)
    }

    #[test]
    fn promotion_follows_iceberg_rules() {
        assert_eq!(
            fit(&p(PrimitiveType::Int), &p(PrimitiveType::Long)),
            TypeFit::Widen(p(PrimitiveType::Long))
        );
        assert_eq!(
            fit(&p(PrimitiveType::Long), &p(PrimitiveType::Int)),
            TypeFit::Fits
        );
        assert_eq!(
            fit(&p(PrimitiveType::Float), &p(PrimitiveType::Double)),
            TypeFit::Widen(p(PrimitiveType::Double))
        );
        assert_eq!(
            fit(&p(PrimitiveType::Long), &p(PrimitiveType::String)),
            TypeFit::Incompatible
        );
        assert_eq!(
            fit(&p(PrimitiveType::Long), &p(PrimitiveType::Double)),
            TypeFit::Incompatible
        );
    }

    #[test]
    fn unify_lists_conflicts() {
        let a = ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
        ]);
        let b = ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("extra", DataType::Boolean, true),
        ]);
        let (cols, conflicts) = unify(&[("a.csv".into(), a), ("b.csv".into(), b)]).unwrap();
        assert_eq!(
            cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["id", "x", "extra"]
        );
        assert_eq!(cols[1].ty, p(PrimitiveType::Double));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].column, "id");
        assert_eq!(conflicts[0].types["a.csv"], "long");
        assert_eq!(conflicts[0].types["b.csv"], "string");
    }

    #[test]
    fn partitioning_parses() {
        let cols = parse_partitioning("vendor, day(ts), bucket(16, id)").unwrap();
        assert_eq!(cols[0].transform, "identity");
        assert_eq!(
            cols[1],
            PartitionColumn {
                from_column_name: "ts".into(),
                transform: "day".into()
            }
        );
        assert_eq!(cols[2].transform, "bucket[16]");
        assert!(parse_partitioning("nonsense(x)").is_err());
        let schema = schema_from_columns(&[
            PlannedColumn {
                name: "vendor".into(),
                ty: p(PrimitiveType::String),
                required: false,
            },
            PlannedColumn {
                name: "ts".into(),
                ty: p(PrimitiveType::Timestamptz),
                required: false,
            },
            PlannedColumn {
                name: "id".into(),
                ty: p(PrimitiveType::Long),
                required: false,
            },
        ])
        .unwrap();
        let spec = partition_spec(&schema, &cols).unwrap().unwrap();
        assert_eq!(spec.fields().len(), 3);
        assert!(partition_spec(&schema, &parse_partitioning("nope").unwrap()).is_err());
        assert!(partition_spec(&schema, &parse_partitioning("day(vendor)").unwrap()).is_err());
    }
}
