//! Logs: `tracing` events to stderr, filtered by `RUST_LOG` when it is set and by
//! etcd's `--log-level` otherwise; human-readable text by default, one JSON object per
//! event with `--log-format json`.

use clap::Args;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The logging flags of `synod node` and `synod dev` (which passes them to members).
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Minimum level: debug, info, warn, error (etcd's panic and fatal mean error).
    /// `RUST_LOG`, when set, takes precedence (e.g. `RUST_LOG=server=debug`).
    #[arg(long, default_value = "info", value_parser = ["debug", "info", "warn", "error", "panic", "fatal"])]
    pub log_level: String,
    /// `text` for people, `json` for machines (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl LogArgs {
    /// The flags again, for a child process.
    pub fn to_args(&self) -> [String; 4] {
        [
            "--log-level".into(),
            self.log_level.clone(),
            "--log-format".into(),
            self.log_format.clone(),
        ]
    }
}

/// Installs the global subscriber (once per process; later calls change nothing).
pub fn init(args: &LogArgs) {
    let level = match args.log_level.as_str() {
        "panic" | "fatal" => "error",
        l => l,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if args.log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
