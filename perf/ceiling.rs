//! `dlockd-ceiling`: dlockd's workers, listeners and HTTP/1.1 layer answering every request
//! `{"success":true}` with no routing, body decoding or lease work. It takes dlockd's flags.
//! What it serves per second (and the CPU and instructions it spends per request) is what
//! dlockd would reach if locking were free: the ceiling the benchmarks compare dlockd to.

use std::io::Write;
use std::process::ExitCode;

use dlockd::config::{Command, Config, HELP};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let mut config = match Config::parse(args, |name| std::env::var(name).ok()) {
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
    config.fixed_answer = true;
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dlockd-ceiling: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown_timeout = config.shutdown_timeout;
    let server = match dlockd::server::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("dlockd-ceiling: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "dlockd-ceiling {} listening on http://{} with {} worker(s), {} driver",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        server.workers(),
        server.driver(),
    );
    let _ = std::io::stdout().flush();
    let _ = signals.forever().next();
    server.shutdown(shutdown_timeout);
    ExitCode::SUCCESS
}
