//! The `eventseal` command line.
#![forbid(unsafe_code)]

mod demo;
mod event;
mod filter;
mod keys;

use clap::{Parser, Subcommand};
use eventseal::{Failure, reseal, rewrap};
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
    /// Generate and rotate keys; print the public half of Ed25519 signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Seal an event's fields through the filter, as Envoy would; print the event.
    Seal(EventArgs),
    /// Open an event's sealed fields for a principal through the filter; print the event.
    Open(EventArgs),
    /// Verify an event's Standard Webhooks signature (-H webhook-*) through the filter.
    Verify(EventArgs),
    /// Sign an event: print the Standard Webhooks headers.
    ///
    /// Signing does not go through the filter: in Envoy (proxy-wasm ABI 0.2.1) headers are
    /// forwarded before the body is read, so the filter cannot sign and refuses "sign": true
    /// at load. This command signs with eventseal-core directly, with the keyring's primary
    /// signing key (and every active one, for rotation), like the component does: `v1` for
    /// an HS256 key, `v1a` for an Ed25519 key.
    Sign {
        /// The keyring (a JWK Set file) holding the signing key.
        #[arg(long)]
        keyring: PathBuf,
        /// The webhook-id (default: a random msg_... id).
        #[arg(long)]
        id: Option<String>,
        /// The webhook-timestamp in Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
        /// Print one JSON object instead of three header lines.
        #[arg(long)]
        json: bool,
        /// The event file (signed byte for byte).
        event: PathBuf,
    },
    /// Rewrap an event's KMS envelopes under the latest version of their Transit key.
    ///
    /// For each field sealed with a Vault Transit data key (alg eventseal.vault-transit),
    /// asks the KMS to rewrap the data key (POST /v1/<mount>/rewrap/<key>) and replaces the
    /// envelope's encrypted-key segment; nothing else changes. Neither the data keys nor the
    /// fields' plaintext are ever seen. Prints the event, or rewrites the file with --in-place.
    Rewrap {
        /// The KMS (OpenBao or Vault) address, http://host:port.
        #[arg(long)]
        kms: String,
        /// The environment variable holding the KMS token (it needs update on <mount>/rewrap/<key>).
        #[arg(long, default_value = "BAO_TOKEN")]
        token_env: String,
        /// Rewrite the event file instead of printing it.
        #[arg(long)]
        in_place: bool,
        /// The event file.
        event: PathBuf,
    },
    /// Move an event's envelopes under retired local keys to the primary key.
    ///
    /// Every field sealed (alg dir) under a key whose status is "retired" is opened and
    /// sealed again under the keyring's primary key, for the same pointer and context; the
    /// plaintext stays in memory and is wiped. Nothing else in the event changes, byte for
    /// byte. Prints the event, or rewrites the file with --in-place, and reports on stderr
    /// what moved and what could not (unknown or disabled key, not authentic): then it
    /// exits with 1, after writing the envelopes it could move.
    Reseal {
        /// The keyring (a JWK Set file): the retired keys and the new primary.
        #[arg(long)]
        keyring: PathBuf,
        /// Rewrite the event file instead of printing it.
        #[arg(long)]
        in_place: bool,
        /// The event file.
        event: PathBuf,
    },
    /// Seal an example event with the filter, then open it for two readers (no services needed).
    Demo {
        /// The event to publish (default: examples/demo/order.json, built in).
        event: Option<PathBuf>,
    },
}

/// One event through the embedded filter (the same wasm module Envoy loads).
///
/// The event is printed to stdout as the filter forwards it. A refusal prints the filter's
/// problem+json to stderr and exits with 1.
#[derive(clap::Args)]
struct EventArgs {
    /// The policy (docs/CONFIG.md), as given to Envoy.
    #[arg(long)]
    policy: PathBuf,
    /// The keyring (a JWK Set file), passed as the policy's key environment variable.
    #[arg(long)]
    keyring: PathBuf,
    /// The request method the rule is matched with.
    #[arg(long, default_value = "POST")]
    method: String,
    /// The request path the rule is matched with.
    #[arg(long, default_value = "/")]
    path: String,
    /// A request header, 'name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The caller: mTLS URI SAN, trusted header value or JWT claim, per the policy's principal source.
    #[arg(long)]
    principal: Option<String>,
    /// JWT claims (a JSON object) for a policy whose principal source is "jwt".
    #[arg(long)]
    claims: Option<String>,
    /// Which body the event is (default: request, unless the rule applies to responses only).
    #[arg(long, value_enum)]
    direction: Option<event::Direction>,
    /// The event file.
    event: PathBuf,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key as a JWK (for Ed25519, the private key: keep it secret).
    Generate {
        /// What the key is for.
        #[arg(long, value_enum, default_value = "seal")]
        purpose: keys::Purpose,
        /// The algorithm of a signing key: hs256 (v1 signatures) or ed25519 (v1a).
        #[arg(long, value_enum, default_value = "hs256")]
        alg: keys::Alg,
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
        /// The algorithm of a new signing key: hs256 (v1 signatures) or ed25519 (v1a).
        #[arg(long, value_enum, default_value = "hs256")]
        alg: keys::Alg,
        /// The new key's id.
        #[arg(long)]
        kid: String,
        /// The old primary's new status.
        #[arg(long, value_enum, default_value = "retired")]
        demote_to: keys::Status,
    },
    /// Print the public half of an Ed25519 key (a JWK file) or of a keyring's Ed25519 keys
    /// (a JWK Set file), for gateways that only verify.
    Public {
        /// The JWK or JWK Set file holding the private keys.
        key: PathBuf,
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

fn read_bytes(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))
}

fn run_event(operation: event::Operation, args: EventArgs) -> Result<(), Failure> {
    let exchange = event::Exchange {
        method: args.method,
        path: args.path,
        headers: args.headers,
        principal: args.principal,
        claims: args.claims,
        direction: args.direction,
    };
    let body = event::run(
        operation,
        &read(&args.policy)?,
        &read(&args.keyring)?,
        &exchange,
        &read_bytes(&args.event)?,
    )?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &body)
        .and_then(|()| {
            if body.ends_with(b"\n") {
                Ok(())
            } else {
                std::io::Write::write_all(&mut out, b"\n")
            }
        })
        .map_err(|e| Failure::new(format!("cannot write the event: {e}")))
}

/// A JSON file (a key, a keyring), never quoted in the error: it may hold secrets.
fn read_json(path: &Path) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(&read(path)?).map_err(|_| Failure::new(format!("{} is not JSON", path.display())))
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
        Command::Seal(args) => run_event(event::Operation::Seal, args)?,
        Command::Open(args) => run_event(event::Operation::Open, args)?,
        Command::Verify(args) => run_event(event::Operation::Verify, args)?,
        Command::Sign {
            keyring,
            id,
            timestamp,
            json,
            event: path,
        } => {
            let headers = event::sign(&read(&keyring)?, id, timestamp, &read_bytes(&path)?)?;
            if json {
                println!("{}", event::headers_json(&headers));
            } else {
                for (name, value) in &headers {
                    println!("{name}: {value}");
                }
            }
        }
        Command::Rewrap {
            kms,
            token_env,
            in_place,
            event: path,
        } => {
            let token = std::env::var(&token_env)
                .ok()
                .filter(|t| !t.is_empty())
                .map(zeroize::Zeroizing::new)
                .ok_or_else(|| Failure::new(format!("{token_env} is not set: it must hold the KMS token")))?;
            let (event, count) = rewrap::run(&read_bytes(&path)?, &kms, &token)?;
            if in_place {
                write_atomically(&path, &String::from_utf8_lossy(&event))?;
            } else {
                std::io::Write::write_all(&mut std::io::stdout().lock(), &event)
                    .map_err(|e| Failure::new(format!("cannot write the event: {e}")))?;
            }
            eprintln!("rewrapped {count} envelope(s)");
        }
        Command::Reseal {
            keyring,
            in_place,
            event: path,
        } => {
            let ring = eventseal_core::Keyring::from_jwks(&read(&keyring)?).map_err(|e| Failure::new(e.to_string()))?;
            let done = reseal::run(&read_bytes(&path)?, &ring)?;
            if in_place {
                if !done.moved.is_empty() {
                    write_atomically(&path, &String::from_utf8_lossy(&done.event))?;
                }
            } else {
                std::io::Write::write_all(&mut std::io::stdout().lock(), &done.event)
                    .map_err(|e| Failure::new(format!("cannot write the event: {e}")))?;
            }
            for (at, from, to) in &done.moved {
                eprintln!("moved {at}: {from} -> {to}");
            }
            for (at, why) in &done.refused {
                eprintln!("not moved {at}: {why}");
            }
            eprintln!(
                "resealed {} envelope(s); {} already under keys in service; {} could not be moved",
                done.moved.len(),
                done.current,
                done.refused.len()
            );
            if !done.refused.is_empty() {
                return Err(Failure::new(format!(
                    "{} envelope(s) could not be moved (see above); the key that sealed them is unknown or disabled",
                    done.refused.len()
                )));
            }
        }
        Command::Demo { event } => {
            let event = match event {
                Some(path) => read(&path)?,
                None => demo::EVENT.to_owned(),
            };
            demo::run(&event)?;
        }
        Command::Keys(KeysCommand::Generate { purpose, alg, kid, status }) => {
            println!("{}", keys::generate(purpose, alg, &kid, status)?);
        }
        Command::Keys(KeysCommand::Public { key }) => {
            let jwks = read_json(&key)?;
            let public = serde_json::to_string_pretty(&keys::public(&jwks)?).map_err(|e| Failure::new(e.to_string()))?;
            println!("{public}");
        }
        Command::Keys(KeysCommand::Rotate {
            keyring,
            purpose,
            alg,
            kid,
            demote_to,
        }) => {
            let mut jwks = read_json(&keyring)?;
            keys::rotate(&mut jwks, purpose, alg, &kid, demote_to)?;
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
        // The filter's problem+json, printed as it is.
        Err(failure) if failure.is_problem() => {
            eprintln!("{}", failure.message());
            ExitCode::FAILURE
        }
        Err(failure) => {
            eprintln!("eventseal: {}", failure.message());
            ExitCode::FAILURE
        }
    }
}
