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
///
/// On SQLite the outermost transaction starts with `BEGIN IMMEDIATE`, taking the write lock at
/// once: a deferred transaction that reads and then writes while another connection writes fails
/// with "database is locked" at once (waiting could deadlock, so SQLite does not), which made
/// concurrent enrollments fail; an immediate one waits its turn (`busy_timeout`).
pub fn transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    E: From<DbError>,
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if let DbConnection::Sqlite(inner) = conn {
        let outermost = AnsiTransactionManager::transaction_manager_status_mut(inner)
            .transaction_depth()
            .map_err(|e| E::from(DbError::Query(e)))?
            .is_none();
        if outermost {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")
                .map_err(|e| E::from(DbError::Query(e)))?;
            let result = f(conn);
            let DbConnection::Sqlite(inner) = conn else {
                return Err(E::from(DbError::Inconsistent(
                    "the connection changed engine inside a transaction".into(),
                )));
            };
            return match result {
                Ok(v) => match AnsiTransactionManager::commit_transaction(inner) {
                    Ok(()) => Ok(v),
                    Err(e) => {
                        drop(AnsiTransactionManager::rollback_transaction(inner));
                        Err(E::from(DbError::Query(e)))
                    }
                },
                Err(e) => {
                    drop(AnsiTransactionManager::rollback_transaction(inner));
                    Err(e)
                }
            };
        }
    }
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
