//! `dlockd-loadgen`: the project's instrument for measuring dlockd side by side with Redis,
//! nginx and a fixed-response ceiling server, with the same client, the same workload and the
//! same connection count. See README.md and `--help`.
//!
//! The pure pieces (flags, wire formats, workloads, schedule, tallies) are plain code tested
//! on their own; [`client`] is the only module that does I/O.
#![deny(unsafe_code)]

mod cli;
mod client;
mod cpu;
mod etcd;
mod grpc;
mod handoff;
mod http;
mod pacer;
mod resp;
mod schedule;
mod tally;
mod wire;
mod workload;
mod zipf;

use std::process::ExitCode;
use std::sync::Arc;

use cli::Command;
use client::{Setup, StartError};
use tally::{Report, ReportBase};
use wire::Protocol;
use zipf::Zipf;

/// The run could not start (connect, pin, runtime).
const EXIT_START: u8 = 1;
const EXIT_USAGE: u8 = 2;
/// `--check` was given and some answer was wrong or missing.
const EXIT_CHECK: u8 = 3;

fn main() -> ExitCode {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let config = match cli::parse(args) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dlockd-loadgen: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dlockd-loadgen: {e}");
            ExitCode::from(EXIT_START)
        }
    }
}

fn run(config: cli::Config) -> Result<ExitCode, StartError> {
    let addr = client::resolve(&config.endpoint)?;
    let sha = match config.protocol {
        Protocol::Resp => client::load_script(&addr)?,
        Protocol::Http | Protocol::Grpc | Protocol::Etcd => String::new(),
    };
    let zipf = Arc::new(Zipf::new(config.hot, config.zipf));
    let base = ReportBase {
        target: config.target.clone(),
        protocol: config.protocol.name(),
        workload: config.workload.name(),
        connections: config.connections,
        depth: config.depth,
        threads: config.threads,
        rate: config.rate,
        warmup_s: config.warmup.as_secs_f64(),
    };
    let (check, json) = (config.check, config.json);
    let setup = Arc::new(Setup {
        config,
        addr,
        sha,
        zipf,
    });
    let result = client::run(setup)?;
    let cpu_ns = u64::try_from(result.cpu.as_nanos()).unwrap_or(u64::MAX);
    let report = Report::new(base, &result.tally, result.seconds, cpu_ns, result.driver);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(if check && report.errors > 0 {
        ExitCode::from(EXIT_CHECK)
    } else {
        ExitCode::SUCCESS
    })
}
