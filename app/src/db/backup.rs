//! What backup and restore ([`crate::backup`]) ask of the database: a consistent copy of a SQLite
//! database while it is in use, the schema version, and whether a PostgreSQL database is empty.

use super::{DbConnection, DbError, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use crate::config::DatabaseTarget;
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use std::path::Path;

/// Writes a consistent copy of the open SQLite database to `file` (`VACUUM INTO`: a snapshot
/// taken in one read transaction, so writers may go on meanwhile).
pub fn sqlite_copy(conn: &mut DbConnection, file: &Path) -> Result<(), DbError> {
    let quoted = file.to_string_lossy().replace('\'', "''");
    conn.batch_execute(&format!("VACUUM INTO '{quoted}'"))?;
    Ok(())
}

/// Newest applied migration of the open database (its version string; empty when none).
pub fn schema_version(conn: &mut DbConnection) -> Result<String, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        v: Option<String>,
    }
    let row: Row = diesel::sql_query("SELECT MAX(version) AS v FROM __diesel_schema_migrations")
        .get_result(conn)?;
    Ok(row.v.unwrap_or_default())
}

/// Newest migration this build carries for the engine of `target`.
pub fn newest_known_migration(target: &DatabaseTarget) -> String {
    let versions: Result<Vec<String>, _> = match target {
        DatabaseTarget::Postgres(_) => {
            MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
                .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        }
        DatabaseTarget::Sqlite(_) => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        }
    };
    versions
        .unwrap_or_default()
        .into_iter()
        .max()
        .unwrap_or_default()
}

/// Whether the PostgreSQL database at `url` has any table in its `public` schema.
pub fn postgres_has_tables(url: &str) -> Result<bool, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::pg::PgConnection::establish(url)?;
    let row: Row = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .get_result(&mut conn)?;
    Ok(row.n > 0)
}
