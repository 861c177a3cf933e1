//! `patch-manager` command line: parse flags, load the configuration, run.

use anyhow::Context;
use clap::{Parser, Subcommand};
use patch_manager::config::{self, Override};
use patch_manager::db::audit as audit_store;
use patch_manager::db::Database;
use shared::status::AuditChainState;
use std::path::PathBuf;
use std::time::Duration;

/// Linux Patch Manager — central manager.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/manager.example.toml).
    #[arg(long, short = 'c', global = true, env = "PATCH_MANAGER_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides server.listen.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Overrides data.dir.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Overrides database.url.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Overrides any key: --set section.key=value (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the manager (the default).
    Serve,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Print the effective configuration as TOML.
    PrintConfig,
    /// Verify the audit log's hash chain and the signed checkpoints of its head
    /// (<data>/audit-checkpoints.jsonl); exits 1 and names the first broken record, a cut tail
    /// (how many records are missing) or a forged checkpoint.
    VerifyAudit {
        /// Verify only the records after this one, trusting it as stored (the checkpoints are
        /// all checked still).
        #[arg(long, value_name = "RECORD_ID")]
        since: Option<i64>,
    },
    /// Create a one-time enrollment token for a new host and print it.
    EnrollmentToken {
        /// Put the host into this group.
        #[arg(long)]
        group: Option<String>,
        /// An address the host will be reached at, for a host behind NAT (repeatable); the
        /// host may then enroll from any source, for these addresses only.
        #[arg(long = "address")]
        addresses: Vec<std::net::IpAddr>,
        /// Lifetime in minutes (default: pki.enrollment_token_minutes).
        #[arg(long)]
        minutes: Option<i64>,
        /// Make this many tokens (one per line, each for one host), for enrolling many hosts at
        /// once such as the fleet simulator's.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
    },
    /// Show the source-address allow-list, or turn it off when it locks everyone out (a running
    /// manager picks the change up within seconds).
    AllowList {
        /// Turn the list off (the entries are kept).
        #[arg(long)]
        disable: bool,
    },
    /// Print the OpenAPI 3.1 document of the JSON API (also served at /api/v1/openapi.json).
    Openapi,
    /// Write a backup: the database (a consistent copy, the manager may run), the CA and secrets
    /// keys and the rest of the data directory, and the configuration file, in one archive
    /// (mode 0600) with a manifest of checksums. It holds the CA keys: keep it safe.
    Backup {
        /// The archive to write (must not exist). Default: a time-stamped name in backup.dir.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Restore a backup into this configuration's data directory and database, with the manager
    /// stopped. The whole archive is checked first; a corrupted, truncated or mismatched one is
    /// refused and nothing changes.
    Restore {
        /// The archive.
        archive: PathBuf,
        /// Only check the archive (checksums, format, that it fits this configuration's
        /// database engine) and print its manifest.
        #[arg(long)]
        check: bool,
        /// Restore over existing data: the data directory is moved aside (kept as
        /// `<dir>.replaced-<time>`) and a PostgreSQL database's tables are replaced.
        #[arg(long)]
        replace: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Openapi)) {
        // Needs no configuration: the document comes from the route table alone.
        println!("{:#}", patch_manager::api::openapi::document());
        return Ok(());
    }
    let mut overrides = Override::from_env(config::ENV_PREFIX, std::env::vars());
    let mut flag = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            overrides.push(Override {
                key: key.into(),
                value,
                origin: format!("--{}", key.replace(['.', '_'], "-")),
            });
        }
    };
    flag("server.listen", cli.listen.clone());
    flag(
        "data.dir",
        cli.data_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    flag("database.url", cli.database_url.clone());
    for s in &cli.set {
        overrides.push(Override::from_cli(s)?);
    }
    let config = match config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("patch-manager: {e}");
            std::process::exit(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration is valid");
            Ok(())
        }
        Command::PrintConfig => {
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::VerifyAudit { since } => verify_audit(&config, since),
        Command::EnrollmentToken {
            group,
            minutes,
            addresses,
            count,
        } => enrollment_token(&config, group.as_deref(), minutes, addresses, count),
        Command::AllowList { disable } => allow_list(&config, disable),
        Command::Backup { output } => backup(&config, cli.config.as_deref(), output),
        Command::Restore {
            archive,
            check,
            replace,
        } => restore(&config, cli.config.as_deref(), &archive, check, replace),
        Command::Serve => serve(config, cli.config.clone()),
        Command::Openapi => Ok(()),
    }
}

fn allow_list(config: &config::Config, disable: bool) -> anyhow::Result<()> {
    use patch_manager::db::DbError;
    use patch_manager::settings::{self, Disabled};
    let db = open_db(config)?;
    let mut conn = db.conn()?;
    let current = if disable {
        match settings::disable_allow_list(&mut conn, patch_manager::clock::Clock::default().now())?
        {
            Disabled::AlreadyOff(s) => s,
            Disabled::TurnedOff(s) => {
                println!("allow-list disabled");
                s
            }
            Disabled::ReplacedUnreadable(reason) => {
                println!(
                    "the stored allow-list could not be read ({reason}); it was replaced by an \
                     empty list that is off (the old value is in the audit log)"
                );
                settings::read_allow_list(&mut conn)?
            }
        }
    } else {
        match settings::read_allow_list(&mut conn) {
            Ok(s) => s,
            Err(DbError::UnreadableSetting { key, reason }) => anyhow::bail!(
                "the stored allow-list ({key}) cannot be read: {reason}; every address is \
                 refused until it is fixed: run `patch-manager allow-list --disable`"
            ),
            Err(e) => return Err(e.into()),
        }
    };
    println!(
        "allow-list: {} ({} entries){}",
        if current.enabled { "enforced" } else { "off" },
        current.entries.len(),
        if current.entries.is_empty() {
            String::new()
        } else {
            format!(": {}", current.entries.join(", "))
        }
    );
    Ok(())
}

fn backup(
    config: &config::Config,
    config_file: Option<&std::path::Path>,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let output = match output {
        Some(o) => o,
        None => {
            let dir = config.backup.directory(&config.data.dir);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            dir.join(patch_manager::backup::default_name(chrono::Utc::now()))
        }
    };
    let written = patch_manager::backup::create(config, config_file, &output)?;
    println!(
        "backup written: {} ({} bytes, {} database, {} files, mode 0600)",
        written.path.display(),
        written.bytes,
        written.manifest.database_engine,
        written.manifest.files.len()
    );
    println!("it holds the CA and secrets keys: store it as carefully as the data directory");
    Ok(())
}

fn restore(
    config: &config::Config,
    config_file: Option<&std::path::Path>,
    archive: &std::path::Path,
    check: bool,
    replace: bool,
) -> anyhow::Result<()> {
    use patch_manager::backup;
    if check {
        let manifest = backup::verify(archive)?;
        println!(
            "archive intact: {} members, {} database (schema {}), written {} by manager {}; \
             fleet CA {}",
            manifest.files.len(),
            manifest.database_engine,
            manifest.schema_version,
            manifest.created_at,
            manifest.manager_version,
            manifest.fleet_ca_fingerprint
        );
        return Ok(());
    }
    let done = backup::restore(
        config,
        config_file,
        archive,
        backup::RestoreOptions { replace },
    )?;
    println!(
        "restored the backup of {} ({} database, {} members) into {}",
        done.manifest.created_at,
        done.manifest.database_engine,
        done.manifest.files.len(),
        config.data.dir.display()
    );
    if let Some(old) = done.replaced {
        println!(
            "the data directory it replaced is kept at {}",
            old.display()
        );
    }
    if let Some(c) = done.config_written {
        println!(
            "the backup's configuration file was written to {}",
            c.display()
        );
    }
    println!("start the manager; it verifies the audit chain at start (or run `patch-manager verify-audit`)");
    Ok(())
}

/// A one-connection pool for the maintenance subcommands (migrations run if pending).
fn open_db(config: &config::Config) -> anyhow::Result<Database> {
    let target = config.database_target()?;
    Database::open(
        &target,
        1,
        Duration::from_secs(config.database.pool_timeout_secs),
    )
    .context("opening the database")
}

fn verify_audit(config: &config::Config, since: Option<i64>) -> anyhow::Result<()> {
    use patch_manager::audit::checkpoint::CheckpointFile;
    use patch_manager::audit::ChainVerifier;
    let db = open_db(config)?;
    let mut conn = db.conn()?;
    let file = CheckpointFile::open(&config.data.dir)?;
    if file.is_none() {
        eprintln!(
            "no checkpoint key in {}: the chain is checked, but a cut tail cannot be detected",
            config.data.dir.display()
        );
    }
    let mut verifier = ChainVerifier::new(file);
    let started = std::time::Instant::now();
    let report = match since {
        Some(id) => verifier.since(&mut conn, id)?,
        None => verifier.full(&mut conn)?,
    };
    let took = started.elapsed();
    match report.state {
        AuditChainState::Intact { records } => {
            let checkpoint = report
                .newest_checkpoint
                .map(|c| format!("; newest checkpoint: record {} signed {}", c.id, c.at))
                .unwrap_or_else(|| "; no checkpoint yet".into());
            println!(
                "audit chain intact: {records} records ({} verified in {:.3} s){checkpoint}",
                report.checked,
                took.as_secs_f64()
            );
            Ok(())
        }
        AuditChainState::Broken { id, reason } => {
            if reason.starts_with("TRUNCATED") {
                println!("audit chain {reason}");
            } else {
                println!("audit chain BROKEN at record {id}: {reason}");
            }
            std::process::exit(1);
        }
    }
}

fn enrollment_token(
    config: &config::Config,
    group: Option<&str>,
    minutes: Option<i64>,
    addresses: Vec<std::net::IpAddr>,
    count: u32,
) -> anyhow::Result<()> {
    use patch_manager::pki::enrollment::{agent_command, create_token, TokenRequest};
    let ca_dir = config.data.dir.join("ca");
    anyhow::ensure!(
        ca_dir.join("ca.crt").exists(),
        "no CA in {}: start the manager once first",
        ca_dir.display()
    );
    let (ca, _) = patch_manager::pki::Ca::load_or_create(
        &ca_dir,
        patch_manager::pki::manager::FLEET_CA_NAME,
    )?;
    let db = open_db(config)?;
    let mut conn = db.conn()?;
    let group_id = match group {
        Some(name) => Some(
            patch_manager::db::hosts::group_id_by_name(&mut conn, name)?
                .with_context(|| format!("no host group named {name}"))?,
        ),
        None => None,
    };
    let clock = patch_manager::clock::Clock::default();
    let now = clock.now();
    let request = TokenRequest {
        group_id,
        minutes,
        created_by: None,
        addresses,
        hostname: None,
    };
    let by = patch_manager::audit::Requester::named("cli", None);
    if count > 1 {
        // Many at once: the tokens and their audit entries in one transaction, tokens only on
        // standard output.
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let tokens = patch_manager::db::transaction::transaction(&mut conn, |conn| {
            (0..count)
                .map(|_| {
                    let created = create_token(conn, config, ca.fingerprint(), &request, now)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    audit_store::append(conn, created.audit_entry(&by), now)?;
                    Ok(created.token.encode())
                })
                .collect::<anyhow::Result<Vec<String>>>()
        })?;
        for token in tokens {
            writeln!(out, "{token}")?;
        }
        out.flush()?;
        eprintln!(
            "{count} one-time tokens, valid for {} minutes",
            request
                .minutes
                .unwrap_or(config.pki.enrollment_token_minutes)
        );
        return Ok(());
    }
    let created = create_token(&mut conn, config, ca.fingerprint(), &request, now)?;
    audit_store::append(&mut conn, created.audit_entry(&by), now)?;
    let encoded = created.token.encode();
    println!("{encoded}");
    eprintln!(
        "valid until {} UTC, once. On the new host, as root:\n  {}",
        created.expires_at,
        agent_command(config, &encoded)
    );
    Ok(())
}

#[actix_web::main]
async fn serve(config: config::Config, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    patch_manager::telemetry::init(&config.log);
    let server = patch_manager::server::start(config)
        .await
        .context("starting patch-manager")?;
    patch_manager::backup::spawn_schedule(server.state.clone(), config_file);
    server.wait().await.context("serving")
}
