//! `dlockd-ceiling`: dlockd's workers, listeners and HTTP/1.1 layer answering every request
//! `{"success":true}` with no routing, body decoding or lease work. It takes dlockd's flags.
//! What it serves per second (and the CPU and instructions it spends per request) is what
//! dlockd would reach if locking were free: the ceiling the benchmarks compare dlockd to.

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
        Ok(Command::Help | Command::Version) => {
            print!("dlockd-ceiling: dlockd answering {{\"success\":true}} to everything\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dlockd-ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    dlockd::server::run_until_signal(config, "dlockd-ceiling", Answering::FixedAnswer)
}
