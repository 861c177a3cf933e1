//! Transactions for code outside `db/`: services compose several repository functions into one
//! unit of work without naming diesel, and may fail with their own error type.

use super::{DbConnection, DbError};
use diesel::Connection;

/// Either the service's own failure or the database's, inside the transaction.
enum Failure<E> {
    Service(E),
    Diesel(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Failure<E> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Diesel(e)
    }
}

/// Runs `f` in one transaction: committed when it returns `Ok`, rolled back when it returns an
/// error (its own, or a database error converted through `From<DbError>`).
pub fn transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    E: From<DbError>,
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
{
    conn.transaction::<T, Failure<E>, _>(|c| f(c).map_err(Failure::Service))
        .map_err(|e| match e {
            Failure::Service(e) => e,
            Failure::Diesel(e) => E::from(DbError::Query(e)),
        })
}

/// Runs `f` on a pooled connection on the blocking pool (like [`super::Database::run`]) for a
/// service whose errors are its own.
pub async fn run<T, E, F>(db: &super::Database, f: F) -> Result<T, E>
where
    E: From<DbError> + Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
{
    db.run(move |c| Ok(f(c))).await?
}
