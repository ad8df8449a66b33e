//! The `dlockd` binary: parse flags and environment, start the workers, print one start-up
//! line, and on SIGINT or SIGTERM stop accepting, finish what is in flight, and exit 0.

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

    // Registered before the workers start, so a signal during start-up is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dlockd: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };

    let shutdown_timeout = config.shutdown_timeout;
    let stores = config.stores.join(", ");
    let token = if config.api_token.is_some() {
        "required"
    } else {
        "off"
    };
    let server = match dlockd::server::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("dlockd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let driver = match server.driver_fallback() {
        Some(why) => format!("{} driver (io_uring unavailable: {why})", server.driver()),
        None => format!("{} driver", server.driver()),
    };
    println!(
        "dlockd {} listening on http://{} with {} worker{}, {}, stores: {}, api token {}",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        server.workers(),
        if server.workers() == 1 { "" } else { "s" },
        driver,
        stores,
        token,
    );
    let _ = std::io::stdout().flush();

    if let Some(signal) = signals.forever().next() {
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        eprintln!("dlockd: {name}: draining (up to {shutdown_timeout:?})");
    }
    if !server.shutdown(shutdown_timeout) {
        eprintln!("dlockd: shutdown timeout passed with work still in flight; exiting");
    }
    ExitCode::SUCCESS
}
