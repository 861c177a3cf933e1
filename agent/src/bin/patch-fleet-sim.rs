//! `patch-fleet-sim`: many simulated agents in one process, for demonstrations, tests and
//! benchmarks of the manager. See `patch_agent::sim`.
//!
//! ```text
//! patch-manager enrollment-token --count 100 > tokens.txt
//! patch-fleet-sim --dir sim enroll --manager https://127.0.0.1:8443 --tokens tokens.txt
//! patch-fleet-sim --dir sim run
//! ```
//! While running, commands on standard input: `kill <address>`, `revive <address>`, `status`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use patch_agent::sim::{self, Behaviour, SimFleet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Linux Patch Manager — fleet simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Where the simulated agents keep their files.
    #[arg(long, default_value = "fleet-sim")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll one agent per token (one token per line), at the first loopback addresses from
    /// --base that hold no enrolled agent yet.
    Enroll {
        /// The manager, https://host[:port].
        #[arg(long)]
        manager: String,
        /// File of one-time tokens, one per line (`-`: standard input).
        #[arg(long)]
        tokens: PathBuf,
        /// First agent address.
        #[arg(long, default_value = "127.20.0.1")]
        base: Ipv4Addr,
        /// Agent port.
        #[arg(long, default_value_t = 12443)]
        port: u16,
        /// Enrollments at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// Serve every enrolled agent until interrupted.
    Run {
        /// Installed packages per host.
        #[arg(long, default_value_t = 600)]
        packages: usize,
        /// Most pending updates per host.
        #[arg(long, default_value_t = 25)]
        max_updates: usize,
        /// Delay of every package-database read, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Share of failing package-database reads (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        failure_rate: f64,
        /// Share of failing jobs (0 to 1): their package-manager transaction fails.
        #[arg(long, default_value_t = 0.0)]
        job_failure_rate: f64,
        /// Seconds an idle connection stays open (raise above the manager's health interval
        /// when it keeps connections).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        keep_alive_secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    actix_rt::System::new().block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Enroll {
            manager,
            tokens,
            base,
            port,
            parallel,
        } => {
            let text = match tokens.as_os_str() == "-" {
                true => std::io::read_to_string(std::io::stdin())?,
                false => std::fs::read_to_string(&tokens)
                    .with_context(|| format!("reading {}", tokens.display()))?,
            };
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let started = std::time::Instant::now();
            let done = sim::enroll(&cli.dir, &manager, &tokens, base, port, parallel).await?;
            println!(
                "enrolled {} new agents ({} to {}) in {:.1} s",
                done.len(),
                done.first().map(ToString::to_string).unwrap_or_default(),
                done.last().map(ToString::to_string).unwrap_or_default(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Run {
            packages,
            max_updates,
            latency_ms,
            failure_rate,
            job_failure_rate,
            keep_alive_secs,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&failure_rate),
                "--failure-rate must be between 0 and 1"
            );
            anyhow::ensure!(
                (0.0..=1.0).contains(&job_failure_rate),
                "--job-failure-rate must be between 0 and 1"
            );
            let behaviour = Behaviour {
                packages,
                max_updates,
                latency: Duration::from_millis(latency_ms),
                // In range by the check above.
                failure_ppm: (failure_rate * 1_000_000.0).round() as u32,
                job_failure_ppm: (job_failure_rate * 1_000_000.0).round() as u32,
                keep_alive_secs,
            };
            let mut fleet = SimFleet::start(&cli.dir, &behaviour).await?;
            anyhow::ensure!(
                !fleet.is_empty(),
                "no enrolled agent under {}; run `enroll` first",
                cli.dir.display()
            );
            println!(
                "serving {} simulated agents ({} to {}); commands: kill|revive <address>, status",
                fleet.len(),
                fleet.address(0).map(|a| a.to_string()).unwrap_or_default(),
                fleet
                    .address(fleet.len() - 1)
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            );
            // Standard input is read on a thread of its own, line by line.
            let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
            std::thread::spawn(move || {
                for line in std::io::stdin().lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    line = lines.recv() => match line {
                        // Standard input closed: keep serving until interrupted.
                        None => {
                            tokio::signal::ctrl_c().await?;
                            return Ok(());
                        }
                        Some(line) => println!("{}", command(&mut fleet, &line).await),
                    },
                }
            }
        }
    }
}

/// Carries out one control command and answers one line.
async fn command(fleet: &mut SimFleet, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let target = |w: Option<&&str>| -> Option<usize> {
        let ip: IpAddr = w?.parse().ok()?;
        fleet.index_of(ip)
    };
    match words.first().copied() {
        Some("status") => {
            let up = (0..fleet.len()).filter(|&i| fleet.is_up(i)).count();
            format!("{up} of {} agents up", fleet.len())
        }
        Some("kill") => match target(words.get(1)) {
            Some(i) => match fleet.kill(i).await {
                true => format!("killed {}", words[1]),
                false => format!("{} was not running", words[1]),
            },
            None => "unknown agent".into(),
        },
        Some("revive") => match target(words.get(1)) {
            Some(i) => match fleet.revive(i).await {
                Ok(()) => format!("revived {}", words[1]),
                Err(e) => format!("error: {e}"),
            },
            None => "unknown agent".into(),
        },
        _ => "commands: kill <address>, revive <address>, status".into(),
    }
}
