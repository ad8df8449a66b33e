//! The client's own CPU time, so a run can report what each request cost the client (which
//! matters when client and server share cores).

use std::time::Duration;

/// User plus system CPU time of the whole process so far, or `None` if the kernel refuses.
#[allow(unsafe_code)]
pub fn process_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid, writable memory for one `rusage`, which getrusage fills on
    // success; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct (and zeroed memory is a valid
    // `rusage` anyway: it is plain integers).
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    // CPU time is readable and never goes backwards while the process works.
    #[test]
    fn cpu_time_advances() {
        let before = process_time().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        let after = process_time().unwrap();
        assert!(after >= before);
    }
}
