//! The `eventseal` command line.
#![forbid(unsafe_code)]

mod demo;
mod filter;
mod keys;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// eventseal: field-level sealing, signatures and audit for JSON events.
#[derive(Parser)]
#[command(name = "eventseal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate and rotate keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Seal an example event with the filter, then open it for two readers (no services needed).
    Demo {
        /// The event to publish (default: examples/demo/order.json, built in).
        event: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key as a JWK.
    Generate {
        /// What the key is for.
        #[arg(long, value_enum, default_value = "seal")]
        purpose: keys::Purpose,
        /// The key id.
        #[arg(long)]
        kid: String,
        /// The rotation status.
        #[arg(long, value_enum, default_value = "primary")]
        status: keys::Status,
    },
    /// Add a new primary key to a keyring file and demote the old primary.
    Rotate {
        /// The keyring file (a JWK Set); rewritten in place.
        #[arg(long)]
        keyring: PathBuf,
        /// What the key is for.
        #[arg(long, value_enum, default_value = "seal")]
        purpose: keys::Purpose,
        /// The new key's id.
        #[arg(long)]
        kid: String,
        /// The old primary's new status.
        #[arg(long, value_enum, default_value = "retired")]
        demote_to: keys::Status,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log; report the first broken link.
    Verify {
        /// The keyring holding the audit key.
        #[arg(long)]
        keyring: PathBuf,
        /// Accept chains without an audit key (they only detect accidental damage).
        #[arg(long)]
        allow_unkeyed: bool,
        /// The log file (proxy log lines around the records are skipped).
        log: PathBuf,
    },
}

/// A one-line error for the user; never contains key material.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))
}

/// Replaces `path` atomically, so a crash never leaves half a keyring.
fn write_atomically(path: &Path, text: &str) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo { event } => {
            let event = match event {
                Some(path) => read(&path)?,
                None => demo::EVENT.to_owned(),
            };
            demo::run(&event)?;
        }
        Command::Keys(KeysCommand::Generate { purpose, kid, status }) => {
            println!("{}", keys::generate(purpose, &kid, status)?);
        }
        Command::Keys(KeysCommand::Rotate {
            keyring,
            purpose,
            kid,
            demote_to,
        }) => {
            let mut jwks: serde_json::Value =
                serde_json::from_str(&read(&keyring)?).map_err(|_| Failure::new(format!("{} is not JSON", keyring.display())))?;
            keys::rotate(&mut jwks, purpose, &kid, demote_to)?;
            let text = serde_json::to_string_pretty(&jwks).map_err(|e| Failure::new(e.to_string()))?;
            write_atomically(&keyring, &(text + "\n"))?;
            eprintln!("{kid} is now the primary key in {}", keyring.display());
        }
        Command::Audit(AuditCommand::Verify {
            keyring,
            allow_unkeyed,
            log,
        }) => {
            let ring = eventseal_core::Keyring::from_jwks(&read(&keyring)?).map_err(|e| Failure::new(e.to_string()))?;
            let summary = eventseal_core::verify_audit_log(&read(&log)?, &ring, !allow_unkeyed)
                .map_err(|e| Failure::new(format!("{}: {e}", log.display())))?;
            if summary.records == 0 {
                return Err(Failure::new(format!("{}: no audit records found", log.display())));
            }
            println!("ok: {} records in {} chain(s)", summary.records, summary.instances.len());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("eventseal: {message}");
            ExitCode::FAILURE
        }
    }
}
