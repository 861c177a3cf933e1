//! The two migration trees: equivalent schemas, clean revert and re-apply, and the diesel schema
//! in step with both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, TestDb, BACKENDS};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use patch_manager::db::{schema, DbConnection};
use std::collections::BTreeMap;

#[derive(QueryableByName, Debug)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName, Debug)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    type_: String,
    #[diesel(sql_type = Integer)]
    not_null: i32,
    #[diesel(sql_type = Integer)]
    pk: i32,
}

#[derive(QueryableByName, Debug)]
struct PgColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

/// table -> [(column, type class, nullable)] in column order.
type Shape = BTreeMap<String, Vec<(String, String, bool)>>;

fn sqlite_class(decl: &str, pk: bool) -> String {
    match decl.to_ascii_uppercase().as_str() {
        // `INTEGER PRIMARY KEY` is SQLite's 64-bit rowid.
        "INTEGER" if pk => "bigint",
        "INTEGER" => "integer",
        "BIGINT" => "bigint",
        "TEXT" => "text",
        "BOOLEAN" => "boolean",
        "TIMESTAMP" => "timestamp",
        "BLOB" => "bytes",
        other => panic!("unexpected SQLite column type {other}"),
    }
    .to_owned()
}

fn pg_class(t: &str) -> String {
    match t {
        "bigint" => "bigint",
        "integer" => "integer",
        "text" => "text",
        "boolean" => "boolean",
        "timestamp without time zone" => "timestamp",
        "bytea" => "bytes",
        other => panic!("unexpected PostgreSQL column type {other}"),
    }
    .to_owned()
}

fn shape(conn: &mut DbConnection) -> (Shape, Vec<String>) {
    let mut out = Shape::new();
    match conn {
        DbConnection::Sqlite(c) => {
            let tables: Vec<Name> = diesel::sql_query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 AND name <> '__diesel_schema_migrations' ORDER BY name",
            )
            .load(c)
            .unwrap();
            for t in tables {
                let cols: Vec<SqliteColumn> = diesel::sql_query(
                    "SELECT name, type AS type_, \"notnull\" AS not_null, pk FROM pragma_table_info(?) ORDER BY cid",
                )
                .bind::<Text, _>(&t.name)
                .load(c)
                .unwrap();
                let cols = cols
                    .into_iter()
                    .map(|c| {
                        let single_pk = c.pk == 1;
                        (
                            c.name,
                            sqlite_class(&c.type_, single_pk && c.type_ == "INTEGER"),
                            c.not_null == 0,
                        )
                    })
                    .collect();
                out.insert(t.name, cols);
            }
            let idx: Vec<Name> = diesel::sql_query(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
            )
            .load(c)
            .unwrap();
            (out, idx.into_iter().map(|n| n.name).collect())
        }
        DbConnection::Postgres(c) => {
            let cols: Vec<PgColumn> = diesel::sql_query(
                "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                 data_type::text AS data_type, is_nullable::text AS is_nullable \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 AND table_name <> '__diesel_schema_migrations' ORDER BY table_name, ordinal_position",
            )
            .load(c)
            .unwrap();
            for col in cols {
                out.entry(col.table_name).or_default().push((
                    col.column_name,
                    pg_class(&col.data_type),
                    col.is_nullable == "YES",
                ));
            }
            let idx: Vec<Name> = diesel::sql_query(
                "SELECT indexname::text AS name FROM pg_indexes WHERE schemaname = 'public' \
                 AND indexname NOT LIKE '%_pkey' ORDER BY indexname",
            )
            .load(c)
            .unwrap();
            (out, idx.into_iter().map(|n| n.name).collect())
        }
    }
}

#[test]
fn migration_trees_produce_equivalent_schemas() {
    let sqlite = TestDb::new(Engine::Sqlite);
    let pg = TestDb::new(Engine::Postgres);
    let (s_shape, s_idx) = shape(&mut sqlite.open().conn().unwrap());
    let (p_shape, p_idx) = shape(&mut pg.open().conn().unwrap());
    assert!(
        s_shape.len() >= 20,
        "expected the whole data model, got {:?}",
        s_shape.keys()
    );
    assert_eq!(
        s_shape.keys().collect::<Vec<_>>(),
        p_shape.keys().collect::<Vec<_>>(),
        "table sets differ"
    );
    for (table, cols) in &s_shape {
        assert_eq!(
            cols, &p_shape[table],
            "columns of `{table}` differ (name, type, nullable)"
        );
    }
    assert_eq!(s_idx, p_idx, "index names differ");
}

/// Every column diesel's `schema.rs` declares exists in the database of each engine.
#[test]
fn diesel_schema_matches_both_databases() {
    macro_rules! select_all {
        ($conn:expr, $backend:ty, $($table:ident),+) => {$(
            let q = schema::$table::table.select(schema::$table::all_columns);
            let sql = diesel::debug_query::<$backend, _>(&q).to_string();
            diesel::sql_query(&sql).execute($conn)
                .unwrap_or_else(|e| panic!("schema.rs table `{}` does not match: {e}", stringify!($table)));
        )+};
    }
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        match &mut *conn {
            DbConnection::Sqlite(c) => {
                select_all!(
                    c,
                    diesel::sqlite::Sqlite,
                    hosts,
                    host_groups,
                    host_group_members,
                    users,
                    user_groups,
                    user_credentials,
                    auth_challenges,
                    signing_keys,
                    refresh_tokens,
                    maintenance_windows,
                    patch_jobs,
                    patch_job_hosts,
                    host_packages,
                    host_patches,
                    host_health,
                    certificates,
                    enrollment_tokens,
                    audit_log,
                    settings,
                    discovery_runs,
                    discovery_results
                );
            }
            DbConnection::Postgres(c) => {
                select_all!(
                    c,
                    diesel::pg::Pg,
                    hosts,
                    host_groups,
                    host_group_members,
                    users,
                    user_groups,
                    user_credentials,
                    auth_challenges,
                    signing_keys,
                    refresh_tokens,
                    maintenance_windows,
                    patch_jobs,
                    patch_job_hosts,
                    host_packages,
                    host_patches,
                    host_health,
                    certificates,
                    enrollment_tokens,
                    audit_log,
                    settings,
                    discovery_runs,
                    discovery_results
                );
            }
        }
    }
}

#[test]
fn migrations_revert_and_reapply_cleanly() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        let (before, before_idx) = shape(&mut conn);
        let reverted = conn.revert_all_migrations().unwrap();
        assert!(reverted >= 1, "{engine:?}: nothing reverted");
        let (empty, empty_idx) = shape(&mut conn);
        assert!(
            empty.is_empty() && empty_idx.is_empty(),
            "{engine:?}: revert left {empty:?} {empty_idx:?}"
        );
        let applied = conn.run_pending_migrations().unwrap();
        assert_eq!(applied, reverted, "{engine:?}");
        assert_eq!(
            shape(&mut conn),
            (before, before_idx),
            "{engine:?}: re-applied schema differs"
        );
    }
}

#[test]
fn foreign_keys_are_enforced_on_both_engines() {
    use schema::host_group_members as m;
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        let now = chrono::Utc::now().naive_utc();
        let r = diesel::insert_into(m::table)
            .values((
                m::host_id.eq(999),
                m::group_id.eq(999),
                m::created_at.eq(now),
            ))
            .execute(&mut *conn);
        assert!(
            r.is_err(),
            "{engine:?}: a row pointing at no host was accepted"
        );
    }
}
