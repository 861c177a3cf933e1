//! `patch-agent` command line.

use clap::{Parser, Subcommand};
use patch_agent::config::{self, Override};
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
    /// Validate the configuration and exit (0 when valid, 2 with the reason otherwise).
    CheckConfig,
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("patch-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::CheckConfig => {
            let mut overrides = Override::from_env(config::ENV_PREFIX, std::env::vars());
            for s in &cli.set {
                overrides.push(Override::from_cli(s)?);
            }
            let file = cli.config.exists().then_some(cli.config.as_path());
            match config::load(file, &overrides) {
                Ok(_) => {
                    println!("configuration is valid");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("patch-agent: {e}");
                    std::process::exit(2);
                }
            }
        }
    }
}
