//! The `dlockd` binary: parse flags and environment, start the workers, print one start-up
//! line, and on SIGINT or SIGTERM stop accepting, finish what is in flight, and exit 0.

use std::process::ExitCode;

use dlockd::config::{Command, Config, HELP};
use dlockd::server::Answering;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let config = match Config::parse(args, |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("dlockd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dlockd: {e}");
            return ExitCode::from(2);
        }
    };

    dlockd::server::run_until_signal(config, "dlockd", Answering::Locks)
}
