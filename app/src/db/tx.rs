//! Transactions for services: run a closure whose error is the service's own, so a domain refusal
//! inside a transaction rolls it back without nesting `Result<Result<_, Domain>, DbError>`.

use super::{DbConnection, DbError};
use diesel::Connection;

/// Either a query failure or the closure's own error.
enum Failed<E> {
    Query(diesel::result::Error),
    Own(E),
}

impl<E> From<diesel::result::Error> for Failed<E> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Query(e)
    }
}

/// Runs `f` in a transaction: committed when it answers `Ok`, rolled back when it answers `Err`
/// (its own error, given back unchanged) or a query fails (converted through [`DbError`]).
pub fn transaction<T, E, F>(c: &mut DbConnection, f: F) -> Result<T, E>
where
    E: From<DbError>,
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
{
    c.transaction::<T, Failed<E>, _>(|c| f(c).map_err(Failed::Own))
        .map_err(|e| match e {
            Failed::Query(q) => E::from(DbError::Query(q)),
            Failed::Own(e) => e,
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
