//! The command line every binary shares: `--config PATH` and `--check`, and the exit codes
//! operators script against (0 ok, 2 bad config).

use crate::config::{Config, LogFormat};
use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
pub struct Args {
    /// The configuration file shared by every tier.
    #[arg(long, default_value = "config.yaml")]
    pub config: PathBuf,
    /// Validate the configuration, print a one-line summary and exit.
    #[arg(long)]
    pub check: bool,
}

/// Exit code for a configuration that cannot be used.
pub const EXIT_BAD_CONFIG: i32 = 2;

/// Parses the command line and loads the config. Exits 2 with the file, line and field on a
/// bad config; with `--check`, prints the summary and exits 0.
pub fn load_config(binary: &str) -> Config {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{binary}: bad config: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        println!("{}", config.summary());
        std::process::exit(0);
    }
    config
}

/// Logs on stderr, human-readable or JSON as the config says; `RUST_LOG` filters (default
/// `info`). Access logs use the target `access`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
