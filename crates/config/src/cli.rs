//! The command line every binary shares: `--config PATH` and `--check`, and the exit codes
//! operators script against (0 ok, 2 bad config).

use crate::Config;
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

/// Tells whoever started the process where it listens, once it does: one line on stdout,
/// `<binary>: listening on <traffic>, admin <admin>`, with the ports it really got (the config
/// may say port 0). Scripts and the test harness wait for this line.
pub fn announce(binary: &str, listen: &crate::Listen) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{binary}: listening on {listen}");
    let _ = out.flush();
}
