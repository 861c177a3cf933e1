//! `patch-agent` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use patch_agent::audit::{self, AuditLog, Verdict};
use patch_agent::config::{self, AgentConfig, Override};
use std::path::PathBuf;

/// Linux Patch Manager — per-host agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/agent.example.toml).
    #[arg(
        long,
        short = 'c',
        global = true,
        default_value = "/etc/patch-agent/agent.toml"
    )]
    config: PathBuf,
    /// Overrides any key: --set section.key=value (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTPS API.
    Serve,
    /// Validate the configuration and the TLS material, then exit (0 valid, 2 invalid).
    CheckConfig,
    /// Verify the audit log's hash chain across its rotated files; exits 1 and names the first
    /// broken line (and file) if any.
    VerifyAudit,
    /// Join the fleet: make a key here, have the manager sign it, write certificates and config.
    Enroll {
        /// The manager, https://host[:port].
        #[arg(long)]
        manager: String,
        /// File holding the one-time token from the manager, or `-` for standard input. Without
        /// it the token is taken from the environment variable PATCH_AGENT_ENROLL_TOKEN.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Refused: a token on the command line is visible to every local user in the process
        /// list and stays in shell history. Use --token-file or PATCH_AGENT_ENROLL_TOKEN.
        #[arg(long, hide = true, value_name = "TOKEN")]
        token: Option<String>,
        /// This host's name (default: the kernel host name).
        #[arg(long)]
        hostname: Option<String>,
        /// This host's addresses (repeatable; default: the address used to reach the manager).
        #[arg(long = "address")]
        addresses: Vec<std::net::IpAddr>,
    },
    /// Print the OpenAPI 3.1 document of the API (as served at /api/v1/openapi.json).
    Openapi,
    /// Print the version.
    Version,
}

fn load(cli: &Cli) -> AgentConfig {
    let mut overrides = Override::from_env(config::ENV_PREFIX, std::env::vars());
    for s in &cli.set {
        match Override::from_cli(s) {
            Ok(o) => overrides.push(o),
            Err(e) => fail(&e.to_string()),
        }
    }
    let file = cli.config.exists().then_some(cli.config.as_path());
    match config::load(file, &overrides) {
        Ok(c) => c,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("patch-agent: {message}");
    std::process::exit(2);
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("patch-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Openapi => {
            let doc = serde_json::to_string_pretty(&patch_agent::openapi::document())?;
            println!("{doc}");
            Ok(())
        }
        Command::CheckConfig => {
            let config = load(&cli);
            if let Err(e) = patch_agent::tls::ReloadableTls::load(&config.tls) {
                fail(&e.to_string());
            }
            println!("configuration is valid");
            Ok(())
        }
        Command::VerifyAudit => {
            let config = load(&cli);
            match audit::verify_file(&config.audit.path)
                .with_context(|| format!("reading {}", config.audit.path.display()))?
            {
                Verdict::Intact { records, .. } => {
                    println!("audit log intact: {records} records verified");
                    Ok(())
                }
                Verdict::Broken { file, line, reason } => {
                    println!(
                        "audit log BROKEN at line {line} of {}: {reason}",
                        file.display()
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Enroll {
            manager,
            token_file,
            token,
            hostname,
            addresses,
        } => {
            if token.is_some() {
                fail(
                    "--token is refused: a token on the command line is visible to every local \
                     user in the process list and stays in shell history, so treat that one as \
                     exposed and ask for a new one. Pass it with --token-file PATH, on standard \
                     input with --token-file -, or in the environment variable \
                     PATCH_AGENT_ENROLL_TOKEN.",
                );
            }
            let token = match patch_agent::enroll::read_token(
                token_file.as_deref(),
                std::env::var_os(patch_agent::enroll::TOKEN_ENV),
                std::io::stdin().lock(),
            ) {
                Ok(t) => t,
                Err(e) => fail(&e.to_string()),
            };
            let hostname = hostname.unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_default()
            });
            let opts = patch_agent::enroll::EnrollOptions {
                manager: manager.clone(),
                token,
                hostname,
                addresses: addresses.clone(),
                config_path: cli.config.clone(),
                source: None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            match runtime.block_on(patch_agent::enroll::enroll(&opts)) {
                Ok(done) => {
                    println!(
                        "enrolled as host {}; certificates in {}, configuration in {}",
                        done.host_id,
                        done.config
                            .tls
                            .cert
                            .parent()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        cli.config.display()
                    );
                    Ok(())
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Serve => {
            let config = load(&cli);
            let file = cli.config.exists().then(|| cli.config.clone());
            let set = cli.set.clone();
            let loader_file = file.clone();
            let loader: patch_agent::reload::ConfigLoader = std::sync::Arc::new(move || {
                let mut overrides = Override::from_env(config::ENV_PREFIX, std::env::vars());
                for s in &set {
                    overrides.push(Override::from_cli(s).map_err(|e| e.to_string())?);
                }
                config::load(loader_file.as_deref(), &overrides).map_err(|e| e.to_string())
            });
            serve(
                config,
                patch_agent::server::ReloadSource {
                    config_file: file,
                    loader,
                },
            )
        }
    }
}

#[actix_web::main]
async fn serve(
    config: AgentConfig,
    reload: patch_agent::server::ReloadSource,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_default(),
        )
        // Colours only on a terminal, never into journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let audit = AuditLog::open_with(&config.audit.path, config.audit.limits())?;
    let backend = patch_agent::backend::open(&config).map_err(anyhow::Error::msg)?;
    tracing::info!(backend = backend.name(), "package manager");
    audit.record(
        "agent.started",
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "backend": backend.name() }),
    );
    let jobs = patch_agent::jobs::Jobs::with_retention(
        backend.clone(),
        audit.clone(),
        config.jobs.state_dir.clone(),
        config.jobs.max_concurrent,
        std::time::Duration::from_secs(config.jobs.timeout_secs),
        config.jobs.retention(),
    )?;
    let running = patch_agent::server::start(&config, backend, jobs.clone(), audit, Some(reload))?;
    let served = running.wait().await.context("serving");
    // A clean stop: what the job manager holds is written before the process ends.
    jobs.close().await;
    served
}
