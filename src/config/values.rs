//! How each kind of value is written: addresses, sizes, counts, times, the io driver
//! ([`DriverChoice`]). Every refusal names the flag it concerns.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::{bad, ConfigError};

/// `IP:PORT`, `[IPv6]:PORT`, or `HOST:PORT`: a host name stands for every address it resolves
/// to at start (`localhost:3500` is 127.0.0.1:3500 and [::1]:3500 where both exist), in the
/// resolver's order, each once.
pub fn parse_addrs(flag: &'static str, value: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let text = value.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let shape = "expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:3500 or localhost:3500";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad(flag, value, shape));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad(flag, value, shape));
    }
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|_| bad(flag, value, "the host name does not resolve"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(bad(flag, value, "the host name resolves to no address"));
    }
    Ok(addrs)
}

/// A file mode in octal, `0660` or `660`, at most `0777`.
pub fn parse_mode(flag: &'static str, value: &str) -> Result<u32, ConfigError> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad(flag, value, "expected an octal file mode, e.g. 0660"));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(bad(flag, value, "out of range: at most 0777")),
    }
}

/// A port number `var` gives, on 127.0.0.1; a refusal names the variable.
pub fn loopback_port(var: &'static str, value: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let port: u16 = value
        .trim()
        .parse()
        .map_err(|_| bad(var, value, "not a port number"))?;
    Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
}

pub fn parse_count(
    flag: &'static str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(bad(flag, value, "out of range")),
        Err(_) => Err(bad(flag, value, "not a whole number")),
    }
}

/// Parses `8192`, `8k`, `8KiB`, `1m`, `1MiB` (binary multiples).
pub fn parse_size(
    flag: &'static str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let v = value.trim();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(digits_end);
    let multiplier: usize = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => {
            return Err(bad(
                flag,
                value,
                "expected a size such as 8192, 8KiB or 1MiB",
            ))
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| bad(flag, value, "expected a size such as 8192, 8KiB or 1MiB"))?;
    let n = n
        .checked_mul(multiplier)
        .ok_or_else(|| bad(flag, value, "too large"))?;
    if !(min..=max).contains(&n) {
        return Err(bad(flag, value, "out of range"));
    }
    Ok(n)
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or plain seconds. Zero is refused: a zero timeout would
/// close every connection at once.
pub fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let v = value.trim();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(digits_end);
    let n: u64 = digits
        .parse()
        .map_err(|_| bad(flag, value, "expected a time such as 500ms, 10s or 2m"))?;
    let d = match suffix {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad(flag, value, "expected a time such as 500ms, 10s or 2m")),
    };
    if d.is_zero() {
        return Err(bad(flag, value, "must be more than zero"));
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err(bad(flag, value, "more than a week"));
    }
    Ok(d)
}

/// Which io driver the workers run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel offers it, else the legacy (epoll) driver, said at start.
    Auto,
    /// io_uring or fail.
    Uring,
    /// The legacy (epoll) driver.
    Legacy,
}

/// `auto`, `uring` (or `io_uring`), `legacy` (or `epoll`).
pub fn parse_driver(flag: &'static str, value: &str) -> Result<DriverChoice, ConfigError> {
    match value {
        "auto" => Ok(DriverChoice::Auto),
        "uring" | "io_uring" => Ok(DriverChoice::Uring),
        "legacy" | "epoll" => Ok(DriverChoice::Legacy),
        other => Err(bad(flag, other, "expected auto, uring or legacy")),
    }
}
