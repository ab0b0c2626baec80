//! The dimension tables and `braid_internal.dimension_positions`, the only code with their SQL.
//!
//! Dimension tables: the ones Braid keeps (`braid_dimensions.<name>`, loaded from files or
//! followed from Kafka) are created here and replaced in one transaction; a user's own table is
//! checked (it exists, has the key and attribute columns, and the key is unique, so that a join
//! never multiplies a view's rows). Identifiers come from validated config.

use chrono::{DateTime, Utc};
use schemas::dimension::{BRAID_DIMENSION_SCHEMA, Dimension, DimensionSource, VALID_FROM};
use schemas::pg_layout::pg_type;
use sqlx::PgPool;

/// Why a dimension's table is not usable. Each names the config key.
#[derive(Debug, thiserror::Error)]
pub enum DimensionTableError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The user's table is not there.
    #[error(
        "dimensions[{index}].source.postgres_table: table `{table}` does not exist (dimension `{dimension}`)"
    )]
    MissingTable {
        /// The dimension's position.
        index: usize,
        /// Its name.
        dimension: String,
        /// The table.
        table: String,
    },
    /// The user's table lacks a column.
    #[error(
        "dimensions[{index}].{key}: table `{table}` has no column `{column}` (dimension `{dimension}`)"
    )]
    MissingColumn {
        /// The dimension's position.
        index: usize,
        /// `key`, `versioned` or `attributes`.
        key: &'static str,
        /// Its name.
        dimension: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A table Braid keeps has other columns than the dimension now declares.
    #[error(
        "dimensions[{index}].attributes: table `{table}` was created with ({found}) but dimension `{dimension}` \
         now declares ({declared}) (attributes, or versioned and its valid_from); drop it (DROP TABLE {table} CASCADE; \
         for a followed topic also DELETE FROM braid_internal.dimension_positions WHERE dimension = '{dimension}', \
         so that it is read again from the start; then braid migrate) and load or follow the dimension again"
    )]
    DeclarationChanged {
        /// The dimension's position.
        index: usize,
        /// Its name.
        dimension: String,
        /// The table.
        table: String,
        /// Its columns.
        found: String,
        /// The declared ones.
        declared: String,
    },
    /// A versioned user table's `valid_from` is not `timestamptz NOT NULL`.
    #[error(
        "dimensions[{index}].versioned: column `valid_from` of table `{table}` is {found}; a version's start \
         must be `timestamptz NOT NULL` (a timestamp without time zone would depend on the session's \
         time zone, and a null start never joins) (dimension `{dimension}`)"
    )]
    ValidFromType {
        /// The dimension's position.
        index: usize,
        /// Its name.
        dimension: String,
        /// The table.
        table: String,
        /// The column's type and nullability.
        found: String,
    },
    /// The user's table does not keep the key unique.
    #[error(
        "dimensions[{index}].key: table `{table}` has no primary key or unique index on {column} alone{}; \
         a key with two rows would count its records twice (dimension `{dimension}`)",
        refused_indexes(.refused)
    )]
    KeyNotUnique {
        /// The dimension's position.
        index: usize,
        /// Its name.
        dimension: String,
        /// The table.
        table: String,
        /// The key column, quoted (with `valid_from` for a versioned dimension).
        column: String,
        /// The unique indexes on the key alone that do not keep it unique, and why.
        refused: Vec<RefusedIndex>,
    },
}

/// A unique index on a dimension's key that does not keep every row's key unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedIndex {
    /// The index's name.
    pub name: String,
    /// Why it does not count.
    pub fault: IndexFault,
}

/// Why a unique index does not keep a key unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexFault {
    /// It has a WHERE clause: rows outside it may repeat the key.
    Partial,
    /// It is not valid (a failed `CREATE INDEX CONCURRENTLY`): it is not enforced.
    Invalid,
    /// Its constraint is deferrable: a transaction may hold duplicates until it commits.
    Deferrable,
}

impl std::fmt::Display for IndexFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexFault::Partial => "is partial (WHERE ...): rows outside it may repeat the key",
            IndexFault::Invalid => {
                "is not valid (a failed CREATE INDEX CONCURRENTLY?), so not enforced"
            }
            IndexFault::Deferrable => {
                "is deferrable: duplicates may stand until a transaction commits"
            }
        })
    }
}

fn refused_indexes(refused: &[RefusedIndex]) -> String {
    refused
        .iter()
        .map(|r| format!(" (unique index `{}` {})", r.name, r.fault))
        .collect()
}

/// Creates the tables Braid keeps and checks the users' tables.
pub async fn prepare(pool: &PgPool, dimensions: &[Dimension]) -> Result<(), DimensionTableError> {
    for (index, dimension) in dimensions.iter().enumerate() {
        match &dimension.source {
            DimensionSource::PostgresTable { schema, table } => {
                check_user_table(pool, index, dimension, schema, table).await?
            }
            _ => {
                let columns: Vec<String> = dimension
                    .attributes
                    .iter()
                    .map(|a| format!("{} {}", a.name, pg_type(a.attribute_type)))
                    .collect();
                // A versioned dimension keeps a row per key and valid_from.
                let (versions, primary_key) = if dimension.versioned {
                    (
                        format!(" NOT NULL, {VALID_FROM} timestamptz NOT NULL"),
                        format!(", PRIMARY KEY ({}, {VALID_FROM})", dimension.key),
                    )
                } else {
                    (" PRIMARY KEY".to_string(), String::new())
                };
                let ddl = [
                    format!("CREATE SCHEMA IF NOT EXISTS {BRAID_DIMENSION_SCHEMA}"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} ({} {}{versions}, {}, updated_at timestamptz NOT NULL DEFAULT now(){primary_key})",
                        dimension.table(),
                        dimension.key,
                        pg_type(dimension.key_type),
                        columns.join(", ")
                    ),
                ];
                for statement in ddl {
                    sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(pool)
                        .await?;
                }
                check_kept_table(pool, index, dimension).await?;
            }
        }
    }
    Ok(())
}

/// A table Braid keeps was created for this dimension's key and attributes: a changed
/// declaration is refused rather than read with the old columns (the table is dropped by the
/// operator and loaded or followed again).
async fn check_kept_table(
    pool: &PgPool,
    index: usize,
    dimension: &Dimension,
) -> Result<(), DimensionTableError> {
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attname <> 'updated_at' ORDER BY a.attnum",
    )
    .bind(dimension.table())
    .fetch_all(pool)
    .await?;
    let mut declared: Vec<(String, String)> =
        std::iter::once((dimension.key.as_str(), dimension.key_type))
            .chain(
                dimension
                    .attributes
                    .iter()
                    .map(|a| (a.name.as_str(), a.attribute_type)),
            )
            .map(|(name, t)| (name.to_string(), pg_type(t).to_string()))
            .collect();
    if dimension.versioned {
        declared.insert(
            1,
            (
                VALID_FROM.to_string(),
                "timestamp with time zone".to_string(),
            ),
        );
    }
    if found == declared {
        return Ok(());
    }
    let show = |columns: &[(String, String)]| {
        columns
            .iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(DimensionTableError::DeclarationChanged {
        index,
        dimension: dimension.name.clone(),
        table: dimension.table(),
        found: show(&found),
        declared: show(&declared),
    })
}

async fn check_user_table(
    pool: &PgPool,
    index: usize,
    dimension: &Dimension,
    schema: &str,
    table: &str,
) -> Result<(), DimensionTableError> {
    let qualified = format!("{schema}.{table}");
    // Each column's name, type and whether it may be null.
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await?;
    if columns.is_empty() {
        return Err(DimensionTableError::MissingTable {
            index,
            dimension: dimension.name.clone(),
            table: qualified,
        });
    }
    let wanted = std::iter::once(("key", dimension.key.as_str()))
        .chain(dimension.versioned.then_some(("versioned", VALID_FROM)))
        .chain(
            dimension
                .attributes
                .iter()
                .map(|a| ("attributes", a.name.as_str())),
        );
    for (key, column) in wanted {
        if !columns.iter().any(|(c, _, _)| c == column) {
            return Err(DimensionTableError::MissingColumn {
                index,
                key,
                dimension: dimension.name.clone(),
                table: qualified,
                column: column.to_string(),
            });
        }
    }
    if let Some((_, data_type, nullable)) = columns
        .iter()
        .find(|(c, _, _)| dimension.versioned && c == VALID_FROM)
        && (data_type != "timestamp with time zone" || nullable != "NO")
    {
        return Err(DimensionTableError::ValidFromType {
            index,
            dimension: dimension.name.clone(),
            table: qualified,
            found: format!(
                "{data_type}{}",
                if nullable == "NO" { " NOT NULL" } else { "" }
            ),
        });
    }
    // Unique indexes (primary keys among them) whose key columns are the dimension's key (and
    // then valid_from, for a versioned one: in that order, which the join's lookup of the
    // latest version at or before a time needs), not on an expression. Only a full, valid,
    // immediate one keeps every row's key (or key and version) unique.
    let unique_columns: Vec<&str> = std::iter::once(dimension.key.as_str())
        .chain(dimension.versioned.then_some(VALID_FROM))
        .collect();
    let indexes: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, i.indpred IS NOT NULL, i.indisvalid, i.indimmediate \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indexprs IS NULL \
           AND i.indnkeyatts = cardinality($2::text[]) \
           AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n) \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) \
               = $2::text[] \
         ORDER BY 1",
    )
    .bind(&qualified)
    .bind(&unique_columns)
    .fetch_all(pool)
    .await?;
    let mut refused = Vec::new();
    for (name, partial, valid, immediate) in indexes {
        let fault = if partial {
            IndexFault::Partial
        } else if !valid {
            IndexFault::Invalid
        } else if !immediate {
            IndexFault::Deferrable
        } else {
            return Ok(());
        };
        refused.push(RefusedIndex { name, fault });
    }
    Err(DimensionTableError::KeyNotUnique {
        index,
        dimension: dimension.name.clone(),
        table: qualified,
        // `page`, or (`page`, `valid_from`) for a versioned dimension.
        column: match unique_columns.as_slice() {
            [one] => format!("`{one}`"),
            many => format!("(`{}`)", many.join("`, `")),
        },
        refused,
    })
}

/// One typed value of a dimension row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// `text`.
    Text(String),
    /// `bigint`.
    Int(i64),
    /// `double precision`.
    Float(f64),
    /// `boolean`.
    Bool(bool),
}

/// One column of rows, bound as one typed array.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// `text[]`.
    Text(Vec<Option<String>>),
    /// `bigint[]`.
    Int(Vec<Option<i64>>),
    /// `double precision[]`.
    Float(Vec<Option<f64>>),
    /// `boolean[]`.
    Bool(Vec<Option<bool>>),
}

impl ColumnValues {
    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Text(v) => v.len(),
            ColumnValues::Int(v) => v.len(),
            ColumnValues::Float(v) => v.len(),
            ColumnValues::Bool(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a value of the column's type (or null); a value of another type is a bug of
    /// the caller, which types values first.
    pub fn push(&mut self, cell: Cell) {
        match (self, cell) {
            (ColumnValues::Text(v), Cell::Text(x)) => v.push(Some(x)),
            (ColumnValues::Int(v), Cell::Int(x)) => v.push(Some(x)),
            (ColumnValues::Float(v), Cell::Float(x)) => v.push(Some(x)),
            (ColumnValues::Bool(v), Cell::Bool(x)) => v.push(Some(x)),
            (ColumnValues::Text(v), Cell::Null) => v.push(None),
            (ColumnValues::Int(v), Cell::Null) => v.push(None),
            (ColumnValues::Float(v), Cell::Null) => v.push(None),
            (ColumnValues::Bool(v), Cell::Null) => v.push(None),
            (column, cell) => panic!("a {cell:?} pushed to a column of another type ({column:?})"),
        }
    }

    fn array_type(&self) -> &'static str {
        match self {
            ColumnValues::Text(_) => "text[]",
            ColumnValues::Int(_) => "bigint[]",
            ColumnValues::Float(_) => "double precision[]",
            ColumnValues::Bool(_) => "boolean[]",
        }
    }

    fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            ColumnValues::Text(v) => query.bind(v.clone()),
            ColumnValues::Int(v) => query.bind(v.clone()),
            ColumnValues::Float(v) => query.bind(v.clone()),
            ColumnValues::Bool(v) => query.bind(v.clone()),
        }
    }
}

/// Upserts rows (key, then attributes in the dimension's order) into a table Braid keeps, in
/// `executor`'s transaction; a key repeated among the rows keeps its last row.
pub async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &Dimension,
    keys: &ColumnValues,
    attributes: &[ColumnValues],
    valid_from: &[DateTime<Utc>],
) -> Result<u64, sqlx::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let versioned = dimension.versioned;
    let names: Vec<&str> = std::iter::once(dimension.key.as_str())
        .chain(dimension.attributes.iter().map(|a| a.name.as_str()))
        .chain(versioned.then_some(VALID_FROM))
        .collect();
    let mut arrays: Vec<String> = std::iter::once(keys)
        .chain(attributes)
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.array_type()))
        .collect();
    if versioned {
        arrays.push(format!("${}::timestamptz[]", arrays.len() + 1));
    }
    // One row per key, or per key and version.
    let key = if versioned {
        format!("{}, {VALID_FROM}", dimension.key)
    } else {
        dimension.key.clone()
    };
    let updates: Vec<String> = dimension
        .attributes
        .iter()
        .map(|a| format!("{n} = EXCLUDED.{n}", n = a.name))
        .chain(["updated_at = now()".to_string()])
        .collect();
    // DISTINCT ON keeps one row per key (the last given: ordinality descending), since ON
    // CONFLICT cannot touch a row twice in one statement.
    let sql = format!(
        "INSERT INTO {table} ({columns}) \
         SELECT DISTINCT ON ({key}) {columns} FROM unnest({arrays}) WITH ORDINALITY AS r({columns}, ord$) \
         ORDER BY {key}, ord$ DESC \
         ON CONFLICT ({key}) DO UPDATE SET {updates}",
        table = dimension.table(),
        columns = names.join(", "),
        arrays = arrays.join(", "),
        updates = updates.join(", "),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for column in std::iter::once(keys).chain(attributes) {
        query = column.bind(query);
    }
    if versioned {
        query = query.bind(valid_from.to_vec());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// Deletes keys from a table Braid keeps (a tombstone on a followed topic): every version of
/// a versioned dimension's key.
pub async fn delete(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &Dimension,
    keys: &ColumnValues,
) -> Result<u64, sqlx::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM {} WHERE {} = ANY($1::{})",
        dimension.table(),
        dimension.key,
        keys.array_type()
    );
    Ok(keys
        .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Deletes versions (key and start) from a versioned dimension's table (a tombstone keyed
/// `<key>@<valid_from>`).
pub async fn delete_versions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &Dimension,
    keys: &ColumnValues,
    valid_from: &[DateTime<Utc>],
) -> Result<u64, sqlx::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM {table} WHERE ({key}, {VALID_FROM}) IN \
         (SELECT * FROM unnest($1::{keys_type}, $2::timestamptz[]))",
        table = dimension.table(),
        key = dimension.key,
        keys_type = keys.array_type(),
    );
    Ok(keys
        .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
        .bind(valid_from.to_vec())
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Replaces every row of a table Braid keeps, in one transaction (readers see the old rows or
/// the new, never a mix).
pub async fn replace_all(
    pool: &PgPool,
    dimension: &Dimension,
    keys: &ColumnValues,
    attributes: &[ColumnValues],
    valid_from: &[DateTime<Utc>],
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {}",
        dimension.table()
    )))
    .execute(&mut *tx)
    .await?;
    let written = upsert(&mut tx, dimension, keys, attributes, valid_from).await?;
    tx.commit().await?;
    Ok(written)
}

/// The stored next offset per partition of a followed dimension's topic.
pub async fn load_positions(
    pool: &PgPool,
    dimension: &str,
    topic: &str,
) -> Result<std::collections::BTreeMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM braid_internal.dimension_positions WHERE dimension = $1 AND topic = $2",
    )
    .bind(dimension)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Stores next offsets in `tx`, with the rows they cover.
pub async fn store_positions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    dimension: &str,
    topic: &str,
    positions: &std::collections::BTreeMap<i32, i64>,
) -> Result<(), sqlx::Error> {
    let partitions: Vec<i32> = positions.keys().copied().collect();
    let offsets: Vec<i64> = positions.values().copied().collect();
    sqlx::query(
        "INSERT INTO braid_internal.dimension_positions (dimension, topic, partition, next_offset) \
         SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS t(p, o) \
         ON CONFLICT (dimension, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
    )
    .bind(dimension)
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
