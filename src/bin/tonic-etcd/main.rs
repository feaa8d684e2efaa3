//! `tonic-etcd`, the operator CLI: see a registry, drain an instance,
//! override a weight, hold a registration, find what is wrong.
//!
//! - `args`: the command line (clap) and the etcd connection it describes.
//! - `registry`: reading a service's keys (instances, overrides, leases).
//! - `ls`, `watch`, `overrides`, `register`, `doctor`: one command each.
//!
//! Exit status: 0 success, 1 failure or problem found, 2 usage error (clap's,
//! and ours: a flag that does not fit the command). Errors go to stderr.

mod args;
mod doctor;
mod ls;
mod overrides;
mod register;
mod registry;
mod watch;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;
use tonic_etcd::ErrorChain;

use args::{Cli, Command};

/// Why a command did not succeed.
#[derive(Debug)]
enum Failure {
    /// A usage error: exit 2.
    Usage(String),
    /// Something failed: exit 1.
    Failed(String),
    /// The command ran and found problems (it printed them): exit 1.
    Problems,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Failed(message) => f.write_str(message),
            Failure::Problems => f.write_str("problems found"),
        }
    }
}

impl From<tonic_etcd::Error> for Failure {
    fn from(error: tonic_etcd::Error) -> Self {
        Failure::Failed(ErrorChain(&error).to_string())
    }
}

impl From<tonic_etcd::etcd_client::Error> for Failure {
    fn from(error: tonic_etcd::etcd_client::Error) -> Self {
        Failure::from(tonic_etcd::Error::from(error))
    }
}

type Outcome = Result<(), Failure>;

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits 2 on a usage error, 0 for --help and --version.
    let cli = Cli::parse();
    let outcome = match cli.command.clone() {
        Command::Ls { service } => ls::run(&cli, service).await,
        Command::Watch { service } => watch::run(&cli, service).await,
        Command::Drain { service, id, force } => {
            overrides::run(&cli, service, id, force, overrides::Change::Drain).await
        }
        Command::Undrain { service, id, force } => {
            overrides::run(&cli, service, id, force, overrides::Change::Undrain).await
        }
        Command::Weight {
            service,
            id,
            weight,
            clear,
            force,
        } => {
            let change = match (weight, clear) {
                (Some(weight), false) => overrides::Change::Weight(weight),
                _ => overrides::Change::ClearWeight,
            };
            overrides::run(&cli, service, id, force, change).await
        }
        Command::Register(register) => register::run(&cli, register).await,
        Command::Doctor { service } => doctor::run(&cli, service).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Problems) => ExitCode::from(1),
        Err(Failure::Usage(message)) => {
            eprintln!("tonic-etcd: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("tonic-etcd: {message}");
            ExitCode::from(1)
        }
    }
}
