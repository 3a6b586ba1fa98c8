//! cdn-admin: what an operator makes for the edge's auth and the tiers' trust, offline.
//!
//!   cdn-admin keygen --id 2026-11 --out keys/         an Ed25519 key pair for signed tokens
//!   cdn-admin token --key keys/2026-11.key.pem --id 2026-11 --subject ci \
//!       --scope 'npm:@acme/*' --ttl 30d                a signed token
//!   cdn-admin key new --subject ci --scope 'oci:acme/*' [--document entitlements.json]
//!                                                      an API key, and its entry (hash only)
//!   cdn-admin key hash [KEY]                           the hash the document lists a key by
//!   cdn-admin secret --out secrets/edge-to-shield      a tier secret
//!   cdn-admin publish oci --to s3://pkgs --endpoint http://127.0.0.1:9100 [--root R] \
//!       image-dir-or-docker-save.tar acme/app:1.0     an image into registry:2's layout
//!   cdn-admin publish npm --to /srv/storage [--root R] [--tag latest] pkg-1.0.0.tgz …
//!                                                      npm tarballs into Verdaccio's layout
//!
//! Secrets go to stdout or to files only this user can read; nothing is sent anywhere.
//! Publishing writes straight into the storage the origin-adapter serves (a directory or an
//! S3-compatible bucket, credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).

use cdn_admin::publish::{self, Dest, S3Options};
use cdn_auth::keys::{hash_key, new_key};
use cdn_auth::{token, Claims};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "cdn-admin",
    version,
    about = "Keys, tokens and secrets for the CDN's tiers; publishing into its storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Makes an Ed25519 key pair: `<ID>.key.pem` (private, for `token`) and `<ID>.pub.pem`
    /// (public, for the edge's `auth.token_keys`).
    Keygen {
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Signs a token for `subject` with these scopes, valid for `ttl`.
    Token {
        /// The private key (`<ID>.key.pem` from keygen).
        #[arg(long)]
        key: PathBuf,
        /// The key id the edge knows the public key by.
        #[arg(long)]
        id: String,
        #[arg(long)]
        subject: String,
        /// `path:/private/*`, `npm:@acme/*`, `oci:acme/*`, or `*`; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// How long it is valid: 1h, 30d, …
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// API keys for the entitlement document.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Makes a tier secret (`trust.edge_to_shield`, `trust.shield_to_origin`).
    Secret {
        /// Write it to this file (readable by its owner only) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Publishes images or npm packages into the storage the origin-adapter serves.
    Publish {
        #[command(subcommand)]
        command: PublishCommand,
    },
}

#[derive(Subcommand)]
enum PublishCommand {
    /// An OCI image layout (directory or tar) or a `docker save` tarball, as NAME:TAG in
    /// registry:2's layout; prints the manifest digest.
    Oci {
        #[command(flatten)]
        dest: DestArgs,
        /// The image: an OCI image layout, or a `docker save` output.
        source: PathBuf,
        /// The repository and tag to publish it as (`acme/app:1.0`); the tag also picks the
        /// image in the source when it holds several.
        reference: String,
    },
    /// `npm pack` tarballs into Verdaccio's layout (versions are immutable).
    Npm {
        #[command(flatten)]
        dest: DestArgs,
        /// The dist-tag pointed at each version published.
        #[arg(long, default_value = "latest")]
        tag: String,
        #[arg(required = true)]
        tarballs: Vec<PathBuf>,
    },
}

/// Where to publish to.
#[derive(clap::Args)]
struct DestArgs {
    /// A directory, or `s3://bucket[/prefix]`.
    #[arg(long)]
    to: String,
    /// The key prefix inside it (registry:2's `rootdirectory`, Verdaccio's `storage`).
    #[arg(long, default_value = "")]
    root: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9100`); plain HTTP is allowed for it.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

impl DestArgs {
    fn open(&self) -> Result<Dest, String> {
        let s3 = S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            credentials: None,
        };
        Dest::open(&self.to, &s3)
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Makes an API key: prints it once, and its entry for the entitlement document.
    New {
        #[arg(long)]
        subject: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// When it stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
        /// Add the entry to this document (made if missing) instead of printing it.
        #[arg(long)]
        document: Option<PathBuf>,
    },
    /// Prints the hash the document lists a key by (the key from the argument or stdin).
    Hash { key: Option<String> },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdn-admin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Publish { command } => run_publish(command),
        Command::Keygen { id, out } => {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "key id {id:?}: use letters, digits, '-', '_' or '.'"
                ));
            }
            let (private, public) = token::generate_key_pair().map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let private_path = out.join(format!("{id}.key.pem"));
            let public_path = out.join(format!("{id}.pub.pem"));
            write_new(&private_path, private.as_bytes(), 0o600)?;
            write_new(&public_path, public.as_bytes(), 0o644)?;
            println!(
                "private key {} (keep it where tokens are signed)\npublic key  {} — in config.yaml:\n  auth:\n    token_keys:\n      - id: {id}\n        public_key: {}",
                private_path.display(),
                public_path.display(),
                public_path.display()
            );
            Ok(())
        }
        Command::Token {
            key,
            id,
            subject,
            scopes,
            ttl,
        } => {
            let pem = std::fs::read(&key).map_err(|e| format!("{}: {e}", key.display()))?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs();
            let claims = Claims {
                sub: subject,
                exp: now + ttl.as_secs(),
                scope: scopes.join(" "),
                iat: Some(now),
            };
            let token =
                token::mint(&id, &pem, &claims).map_err(|e| format!("{}: {e}", key.display()))?;
            println!("{token}");
            Ok(())
        }
        Command::Key {
            command:
                KeyCommand::New {
                    subject,
                    scopes,
                    expires,
                    document,
                },
        } => {
            if let Some(at) = &expires {
                humantime::parse_rfc3339_weak(at).map_err(|e| format!("--expires {at:?}: {e}"))?;
            }
            let key = new_key();
            let mut entry = serde_json::json!({
                "sha256": hash_key(&key),
                "subject": subject,
                "scopes": scopes,
            });
            if let Some(at) = expires {
                entry["expires"] = at.into();
            }
            match document {
                Some(path) => {
                    add_entry(&path, entry)?;
                    eprintln!("entry added to {}", path.display());
                }
                None => eprintln!("entry for the entitlement document:\n{entry}"),
            }
            println!("{key}");
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Hash { key },
        } => {
            let key = match key {
                Some(key) => key,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| e.to_string())?;
                    line.trim().to_owned()
                }
            };
            if key.is_empty() {
                return Err("no key given".into());
            }
            println!("{}", hash_key(&key));
            Ok(())
        }
        Command::Secret { out } => {
            let secret = new_key();
            match out {
                Some(path) => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                    }
                    write_new(&path, format!("{secret}\n").as_bytes(), 0o600)
                }
                None => {
                    println!("{secret}");
                    Ok(())
                }
            }
        }
    }
}

fn run_publish(command: PublishCommand) -> Result<(), String> {
    match command {
        PublishCommand::Oci {
            dest,
            source,
            reference,
        } => {
            let store = dest.open()?;
            let digest = publish::block_on(publish::oci::publish(
                &store, &dest.root, &source, &reference,
            ))?;
            println!("{digest}");
            Ok(())
        }
        PublishCommand::Npm {
            dest,
            tag,
            tarballs,
        } => {
            let store = dest.open()?;
            for tarball in &tarballs {
                let done =
                    publish::block_on(publish::npm::publish(&store, &dest.root, tarball, &tag))?;
                let note = match done.added {
                    cdn_registry::npm::Added::New => "published",
                    cdn_registry::npm::Added::Unchanged => "already published, unchanged",
                };
                println!("{}@{} ({tag}): {note}", done.name, done.version);
            }
            Ok(())
        }
    }
}

/// Writes a file that must not exist yet, with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Adds `entry` to the document at `path` (made if missing), checking the result reads back.
fn add_entry(path: &Path, entry: serde_json::Value) -> Result<(), String> {
    let fail = |e: String| format!("{}: {e}", path.display());
    let mut doc: serde_json::Value = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({ "keys": [] }),
        Err(e) => return Err(fail(e.to_string())),
    };
    doc["keys"]
        .as_array_mut()
        .ok_or_else(|| fail("has no `keys` list".into()))?
        .push(entry);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| fail(e.to_string()))? + "\n";
    cdn_auth::KeyTable::parse(text.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&temp, path).map_err(|e| fail(e.to_string()))
}
