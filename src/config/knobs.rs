//! The table of knobs: each one's flag, environment variable, kind of value, default and help.
//! The command line parser looks flags up here, the resolver takes defaults and bounds from
//! here, and `--help` is written from here.

use std::fmt;

/// Upper bound on `--workers`: each worker is a pinned thread with its own shard.
pub const MAX_WORKERS: usize = 1024;

const MIB: usize = 1024 * 1024;

/// One knob of the server.
#[derive(Debug)]
pub struct Knob {
    /// The flag, such as `--listen`.
    pub flag: &'static str,
    /// A one-letter spelling of the flag, such as `-u`; empty for most.
    pub short: &'static str,
    /// What `--help` calls the flag's value (`ADDR`); empty for a switch.
    pub arg: &'static str,
    /// The environment variable that stands in for the flag.
    pub env: &'static str,
    /// What `--help` adds after the variable's name, such as `, comma-separated`.
    pub env_note: &'static str,
    pub kind: Kind,
    /// The value when neither the flag nor the variable is given, written as a user writes it
    /// and parsed as theirs; `None`: unset, or a rule of the resolver decides.
    pub default: Option<&'static str>,
    /// What `--help` says of the default after its value: the rules that change it.
    pub default_note: &'static str,
    /// What the knob does, as `--help` says it before the variable.
    pub help: &'static str,
    /// What `--help` says after the default.
    pub help_end: &'static str,
}

/// What a knob's value is, with its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Addresses: `IP:PORT`, or `HOST:PORT` for every address the name resolves to.
    Addrs {
        /// `off` turns the listener off.
        off: bool,
        /// Without flag or variable: 127.0.0.1 at the port this variable says, when it is set.
        port_var: Option<&'static str>,
        /// Without flag or variable: 127.0.0.1:0 when `--listen` asks for port 0.
        follows_port_0: bool,
    },
    /// A size with an optional suffix (`8KiB`, `64k`), within `min..=max`.
    Size { min: usize, max: usize },
    /// A whole number within `min..=max`.
    Count { min: usize, max: usize },
    /// A time (`500ms`, `10s`, `2m`), more than zero and at most a week.
    Time,
    /// Any text.
    Text,
    /// A file mode in octal (`0660`), at most `0777`.
    Mode,
    /// A directory; `blank` is why a blank one is refused, or `None` to pass it on as it is.
    Dir { blank: Option<&'static str> },
    /// Names: the flag repeats, the variable is comma-separated.
    Names,
    /// A flag without a value; its variable turns it on with `1` or `true`.
    Switch,
    /// `auto`, `uring` or `legacy`.
    Driver,
    /// A log level; a variable that names none is passed over, as other programs share it.
    Level,
}

impl Kind {
    /// Whether `--help` shows the default bare, `(8KiB)`, rather than `(default 8KiB)`.
    fn terse_default(self) -> bool {
        matches!(self, Kind::Size { .. } | Kind::Count { .. } | Kind::Time)
    }
}

impl Knob {
    /// The fields most knobs leave empty.
    const BLANK: Knob = Knob {
        flag: "",
        short: "",
        arg: "",
        env: "",
        env_note: "",
        kind: Kind::Text,
        default: None,
        default_note: "",
        help: "",
        help_end: "",
    };

    /// The flag with its value's name, as `--help` shows it: `--listen ADDR`.
    pub fn usage(&self) -> String {
        let flag = if self.short.is_empty() {
            self.flag.to_string()
        } else {
            format!("{}, {}", self.short, self.flag)
        };
        if self.arg.is_empty() {
            flag
        } else {
            format!("{flag} {}", self.arg)
        }
    }

    /// What `--help` says of the knob, in one line: what it does, its variable, its default.
    pub fn describe(&self) -> String {
        let mut text = format!("{} [{}{}]", self.help, self.env, self.env_note);
        match self.default {
            Some(value) if self.default_note.is_empty() && self.kind.terse_default() => {
                text += &format!(" ({value})");
            }
            Some(value) => {
                let value = if value.is_empty() { "empty" } else { value };
                text += &format!(" (default {value}{})", self.default_note);
            }
            None if !self.default_note.is_empty() => {
                text += &format!(" (default{})", self.default_note);
            }
            None => {}
        }
        text + self.help_end
    }
}

pub static LISTEN: Knob = Knob {
    flag: "--listen",
    arg: "ADDR",
    env: "DLOCKD_LISTEN",
    kind: Kind::Addrs {
        off: false,
        port_var: Some("DAPR_HTTP_PORT"),
        follows_port_0: false,
    },
    default: Some("127.0.0.1:3500"),
    default_note: "; 127.0.0.1:$DAPR_HTTP_PORT when DAPR_HTTP_PORT is set",
    help: "HTTP address, IP:PORT or HOST:PORT (a host name binds every address it resolves to)",
    ..Knob::BLANK
};

pub static STORE: Knob = Knob {
    flag: "--store",
    arg: "NAME",
    env: "DLOCKD_STORES",
    env_note: ", comma-separated",
    kind: Kind::Names,
    default: Some("lockstore"),
    default_note: "; none with --resources-path",
    help: "a lock store name; repeat for more",
    ..Knob::BLANK
};

pub static WORKERS: Knob = Knob {
    flag: "--workers",
    arg: "N",
    env: "DLOCKD_WORKERS",
    kind: Kind::Count {
        min: 1,
        max: MAX_WORKERS,
    },
    default_note: ": the available cores",
    help: "worker threads, one shard each, pinned to cores",
    ..Knob::BLANK
};

pub static APP_ID: Knob = Knob {
    flag: "--app-id",
    arg: "ID",
    env: "APP_ID",
    kind: Kind::Text,
    default: Some(""),
    help: "the app id reported by /v1.0/metadata",
    ..Knob::BLANK
};

pub static INSECURE_BIND: Knob = Knob {
    flag: "--insecure-bind",
    env: "DLOCKD_INSECURE_BIND",
    env_note: "=1",
    kind: Kind::Switch,
    help: "allow a non-loopback --listen without DAPR_API_TOKEN",
    ..Knob::BLANK
};

pub static IO_DRIVER: Knob = Knob {
    flag: "--io-driver",
    arg: "D",
    env: "DLOCKD_IO_DRIVER",
    kind: Kind::Driver,
    default: Some("auto"),
    default_note: ": io_uring when the kernel allows it, else epoll, said at start",
    help: "auto | uring | legacy",
    ..Knob::BLANK
};

pub static MAX_HEADER_BYTES: Knob = Knob {
    flag: "--max-header-bytes",
    arg: "N",
    env: "DLOCKD_MAX_HEADER_BYTES",
    kind: Kind::Size { min: 256, max: MIB },
    default: Some("8KiB"),
    help: "request line + headers limit",
    ..Knob::BLANK
};

pub static MAX_BODY_BYTES: Knob = Knob {
    flag: "--max-body-bytes",
    arg: "N",
    env: "DLOCKD_MAX_BODY_BYTES",
    kind: Kind::Size {
        min: 64,
        max: 64 * MIB,
    },
    default: Some("64KiB"),
    help: "request body limit",
    ..Knob::BLANK
};

pub static MAX_ID_BYTES: Knob = Knob {
    flag: "--max-id-bytes",
    arg: "N",
    env: "DLOCKD_MAX_ID_BYTES",
    kind: Kind::Size { min: 1, max: MIB },
    default: Some("1024"),
    help: "resourceId and lockOwner length limit",
    ..Knob::BLANK
};

pub static MAX_CONNECTIONS: Knob = Knob {
    flag: "--max-connections",
    arg: "N",
    env: "DLOCKD_MAX_CONNECTIONS",
    kind: Kind::Size {
        min: 1,
        max: 10_000_000,
    },
    default: Some("10000"),
    help: "open client connections, whole process",
    ..Knob::BLANK
};

pub static MAX_LEASES: Knob = Knob {
    flag: "--max-leases",
    arg: "N",
    env: "DLOCKD_MAX_LEASES",
    kind: Kind::Size {
        min: 1,
        max: 1 << 34,
    },
    default: Some("10000000"),
    help: "stored leases, whole process, split over the shards",
    ..Knob::BLANK
};

pub static HEADER_TIMEOUT: Knob = Knob {
    flag: "--header-timeout",
    arg: "T",
    env: "DLOCKD_HEADER_TIMEOUT",
    kind: Kind::Time,
    default: Some("10s"),
    help: "time to receive a request's head",
    ..Knob::BLANK
};

pub static BODY_TIMEOUT: Knob = Knob {
    flag: "--body-timeout",
    arg: "T",
    env: "DLOCKD_BODY_TIMEOUT",
    kind: Kind::Time,
    default: Some("10s"),
    help: "time to receive a request's body",
    ..Knob::BLANK
};

pub static IDLE_TIMEOUT: Knob = Knob {
    flag: "--idle-timeout",
    arg: "T",
    env: "DLOCKD_IDLE_TIMEOUT",
    kind: Kind::Time,
    default: Some("120s"),
    help: "keep-alive idle time before closing",
    ..Knob::BLANK
};

pub static SHUTDOWN_TIMEOUT: Knob = Knob {
    flag: "--shutdown-timeout",
    arg: "T",
    env: "DLOCKD_SHUTDOWN_TIMEOUT",
    kind: Kind::Time,
    default: Some("10s"),
    help: "time SIGTERM/SIGINT allow in-flight work to finish",
    ..Knob::BLANK
};

pub static GRPC_LISTEN: Knob = Knob {
    flag: "--grpc-listen",
    arg: "ADDR",
    env: "DLOCKD_GRPC_LISTEN",
    kind: Kind::Addrs {
        off: true,
        port_var: Some("DAPR_GRPC_PORT"),
        follows_port_0: true,
    },
    default: Some("127.0.0.1:50001"),
    default_note: "; 127.0.0.1:$DAPR_GRPC_PORT when it is set; 127.0.0.1:0 when --listen asks \
                   for port 0",
    help: "the gRPC API (dapr.proto.runtime.v1.Dapr TryLockAlpha1, UnlockAlpha1, GetMetadata; \
           dlockd.v1.LockExtensions) at IP:PORT or HOST:PORT, or off",
    ..Knob::BLANK
};

pub static UNIX_DOMAIN_SOCKET: Knob = Knob {
    flag: "--unix-domain-socket",
    short: "-u",
    arg: "DIR",
    env: "DLOCKD_UNIX_DOMAIN_SOCKET",
    kind: Kind::Dir {
        blank: Some("a directory for the sockets cannot be empty"),
    },
    help: "serve the HTTP API on the Unix domain socket DIR/dapr-<app-id>-http.socket and the \
           gRPC API on DIR/dapr-<app-id>-grpc.socket instead of --listen and --grpc-listen, as \
           daprd does; needs --app-id",
    help_end: "; /metrics stays on --metrics-listen",
    ..Knob::BLANK
};

pub static UNIX_SOCKET_MODE: Knob = Knob {
    flag: "--unix-socket-mode",
    arg: "MODE",
    env: "DLOCKD_UNIX_SOCKET_MODE",
    kind: Kind::Mode,
    default: Some("0660"),
    help: "the file mode of the --unix-domain-socket sockets, in octal: who may connect",
    ..Knob::BLANK
};

pub static METRICS_LISTEN: Knob = Knob {
    flag: "--metrics-listen",
    arg: "ADDR",
    env: "DLOCKD_METRICS_LISTEN",
    kind: Kind::Addrs {
        off: true,
        port_var: None,
        follows_port_0: true,
    },
    default: Some("127.0.0.1:9090"),
    default_note: "; 127.0.0.1:0 when --listen asks for port 0",
    help: "admin address (IP:PORT or HOST:PORT) serving /metrics (Prometheus), /debug/lease and \
           /debug/shards, or off",
    ..Knob::BLANK
};

pub static RESOURCES_PATH: Knob = Knob {
    flag: "--resources-path",
    arg: "DIR",
    env: "DLOCKD_RESOURCES_PATH",
    kind: Kind::Dir { blank: None },
    help: "read lock stores from the Dapr component files (*.yaml) in DIR: lock.redis, \
           lock.etcd and lock.in-memory",
    help_end: "; --store adds in-memory stores beside them",
    ..Knob::BLANK
};

pub static DATA_DIR: Knob = Knob {
    flag: "--data-dir",
    arg: "DIR",
    env: "DLOCKD_DATA_DIR",
    kind: Kind::Dir {
        blank: Some("a data dir cannot be empty"),
    },
    default_note: " none: restart safety off, no tokens",
    help: "keep leases and fencing tokens across restarts and crashes in DIR",
    ..Knob::BLANK
};

pub static MAX_EXPIRY: Knob = Knob {
    flag: "--max-expiry",
    arg: "S",
    env: "DLOCKD_MAX_EXPIRY",
    // At most i32::MAX: it fits a u32.
    kind: Kind::Count {
        min: 1,
        max: i32::MAX as usize,
    },
    default: Some("3600"),
    default_note: " with --data-dir, else no limit",
    help: "the longest expiryInSeconds a try-lock may ask for",
    help_end: "; after a crash, grants wait at most this plus 1s",
    ..Knob::BLANK
};

pub static MAX_WAIT: Knob = Knob {
    flag: "--max-wait",
    arg: "T",
    env: "DLOCKD_MAX_WAIT",
    kind: Kind::Time,
    default: Some("60s"),
    help: "the longest waitTimeoutMs an acquire may ask for",
    ..Knob::BLANK
};

pub static MAX_WAITERS: Knob = Knob {
    flag: "--max-waiters",
    arg: "N",
    env: "DLOCKD_MAX_WAITERS",
    kind: Kind::Size {
        min: 1,
        max: 1 << 30,
    },
    default: Some("100000"),
    help: "acquires waiting for a lock, whole process",
    help_end: "; over it an acquire fails at once",
    ..Knob::BLANK
};

pub static LOG_LEVEL: Knob = Knob {
    flag: "--log-level",
    arg: "L",
    env: "RUST_LOG",
    env_note: ", which may also say dlockd=L",
    kind: Kind::Level,
    default: Some("info"),
    help: "off | error | warn | info | debug | trace",
    help_end: "; the API token and lock owners are never logged",
    ..Knob::BLANK
};

/// Every knob, in the order `--help` lists them.
pub static KNOBS: &[&Knob] = &[
    &LISTEN,
    &STORE,
    &WORKERS,
    &APP_ID,
    &INSECURE_BIND,
    &IO_DRIVER,
    &MAX_HEADER_BYTES,
    &MAX_BODY_BYTES,
    &MAX_ID_BYTES,
    &MAX_CONNECTIONS,
    &MAX_LEASES,
    &HEADER_TIMEOUT,
    &BODY_TIMEOUT,
    &IDLE_TIMEOUT,
    &SHUTDOWN_TIMEOUT,
    &GRPC_LISTEN,
    &UNIX_DOMAIN_SOCKET,
    &UNIX_SOCKET_MODE,
    &METRICS_LISTEN,
    &RESOURCES_PATH,
    &DATA_DIR,
    &MAX_EXPIRY,
    &MAX_WAIT,
    &MAX_WAITERS,
    &LOG_LEVEL,
];

/// The knob a flag names.
pub fn find(flag: &str) -> Option<&'static Knob> {
    KNOBS
        .iter()
        .copied()
        .find(|knob| knob.flag == flag || (!knob.short.is_empty() && knob.short == flag))
}

/// The `--help` text, written from [`KNOBS`]: every knob, its environment variable and its
/// default.
#[derive(Clone, Copy, Debug)]
pub struct Help;

const HEAD: &str = "\
dlockd: a drop-in server for the Dapr Distributed Lock API (v1.0-alpha1)

USAGE: dlockd [FLAGS]

Each flag can also be set by the environment variable in brackets; a flag wins.

";

/// The flags that are commands rather than knobs.
const COMMANDS: [(&str, &str); 2] = [
    ("-h, --help", "this text"),
    ("-V, --version", "the version"),
];

const TAIL: &str = "
Sizes take a suffix: 8KiB, 64k, 1MiB, or plain bytes. Times: 500ms, 10s, 2m, or plain seconds.
A host name binds every address it resolves to. An address or a Unix socket another process
listens on stops the start (exit 1): no address is ever served by two processes. A socket file
that nothing listens on any more (left by a process that ended) is replaced.
DAPR_API_TOKEN, when set, is required in the dapr-api-token header of every request except
GET /v1.0/healthz and GET /v1.0/healthz/outbound.
";

/// Where a flag's description starts.
const COLUMN: usize = 27;
/// The longest line an entry wraps to.
const WIDTH: usize = 93;

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HEAD)?;
        for knob in KNOBS {
            entry(f, &knob.usage(), &knob.describe())?;
        }
        for (usage, text) in COMMANDS {
            entry(f, usage, text)?;
        }
        f.write_str(TAIL)
    }
}

/// One flag of `--help`: its usage, then its description from [`COLUMN`], wrapped at
/// [`WIDTH`].
fn entry(f: &mut fmt::Formatter<'_>, usage: &str, text: &str) -> fmt::Result {
    let mut line = format!("  {usage:<width$} ", width = COLUMN - 3);
    let mut blank = true;
    for word in text.split(' ') {
        if !blank && line.len() + 1 + word.len() > WIDTH {
            writeln!(f, "{line}")?;
            line = " ".repeat(COLUMN);
            blank = true;
        }
        if !blank {
            line.push(' ');
        }
        line.push_str(word);
        blank = false;
    }
    writeln!(f, "{line}")
}
