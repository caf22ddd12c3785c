//! What a C program gets for diagnostics: call counts (`VLS_RS_STATS`) and
//! a stderr log (`VLS_RS_LOG`). The safe API has neither: a Rust program
//! installs its own `tracing` subscriber and keeps its own statistics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Defines [`Call`], one variant per counted C function, with its name.
macro_rules! calls {
    ($($variant:ident => $name:literal,)*) => {
        /// A function of the C ABI, as counted by `VLS_RS_STATS` and named
        /// in the log.
        #[derive(Copy, Clone, Debug, PartialEq, Eq)]
        pub(crate) enum Call {
            $($variant,)*
        }

        impl Call {
            /// Every call, in the order of the statistics line.
            const ALL: &'static [Call] = &[$(Call::$variant,)*];

            /// The C function's name without its `vls_` prefix.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Call::$variant => $name,)*
                }
            }
        }
    };
}

calls! {
    Create => "create",
    Shutdown => "shutdown",
    Close => "close",
    Bind => "bind",
    Listen => "listen",
    Connect => "connect",
    Accept => "accept",
    Read => "read",
    Recvfrom => "recvfrom",
    Write => "write",
    WriteMsg => "write_msg",
    Sendto => "sendto",
    Attr => "attr",
    EpollCreate => "epoll_create",
    EpollCtl => "epoll_ctl",
    EpollWait => "epoll_wait",
    Select => "select",
    Poll => "poll",
    VlshToSh => "vlsh_to_sh",
    VlshToSessionAndWorkerIndex => "vlsh_to_session_and_worker_index",
    SessionIndexToVlsh => "session_index_to_vlsh",
    AppCreate => "app_create",
    UseEventfd => "use_eventfd",
    MtWrkSupported => "mt_wrk_supported",
    SetLibcEpfd => "set_libc_epfd",
    GetLibcEpfd => "get_libc_epfd",
    SetEpollFns => "set_epoll_fns",
    RegisterVclWorker => "register_vcl_worker",
}

/// Calls per C function; counted only when `VLS_RS_STATS` is set.
struct Stats {
    enabled: AtomicBool,
    counts: [AtomicU64; Call::ALL.len()],
}

static STATS: Stats =
    Stats { enabled: AtomicBool::new(false), counts: [const { AtomicU64::new(0) }; Call::ALL.len()] };

/// Sleeps of `poll` or `select` on VCL's message-queue eventfd that lasted
/// their whole slice although a session became ready meanwhile: VPP's
/// message for it never came (see `ldp_poll`). Counted only when
/// `VLS_RS_STATS` is set; printed as `late_wakeups` on a line of its own.
static LATE_WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// Counts one late wake-up (see [`LATE_WAKEUPS`]).
pub(crate) fn count_late_wakeup() {
    if STATS.enabled.load(Ordering::Relaxed) {
        LATE_WAKEUPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one call of `call` (one relaxed load when statistics are off).
#[inline]
pub(crate) fn count(call: Call) {
    if STATS.enabled.load(Ordering::Relaxed) {
        STATS.counts[call as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads `VLS_RS_STATS` and `VLS_RS_LOG` once: turns counting on, installs
/// a stderr `tracing` subscriber (only if the program has none), and
/// prints the counts at exit.
pub(crate) fn init_c_program_diagnostics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("VLS_RS_STATS").is_some_and(|v| !v.is_empty() && v != "0") {
            STATS.enabled.store(true, Ordering::Relaxed);
        }
        if let Ok(filter) = std::env::var("VLS_RS_LOG") {
            let fmt = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(super::log::PidLines)
                .finish();
            let _ = tracing::subscriber::set_global_default(super::log::ExitSafe(fmt));
        }
        // SAFETY: registers a plain `extern "C" fn()`.
        unsafe { libc::atexit(at_exit) };
    });
}

extern "C" fn at_exit() {
    // Nothing may unwind out of an atexit handler.
    let _ = std::panic::catch_unwind(print_stats_at_exit);
}

/// At exit VCL detaches from VPP by itself; this touches nothing of VCL
/// (other threads may still run) and does no tracing (thread-local state
/// may already be gone). It only prints the call counts if asked.
fn print_stats_at_exit() {
    if STATS.enabled.load(Ordering::Relaxed) {
        let mut line = String::from("vls-rs: calls:");
        for (call, c) in Call::ALL.iter().zip(&STATS.counts) {
            let c = c.load(Ordering::Relaxed);
            if c > 0 {
                line.push_str(&format!(" {}={c}", call.name()));
            }
        }
        eprintln!("{line}");
        eprintln!("vls-rs: waits: late_wakeups={}", LATE_WAKEUPS.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_has_its_own_slot_and_name() {
        for (i, call) in Call::ALL.iter().enumerate() {
            assert_eq!(*call as usize, i, "{call:?} indexes its own slot");
        }
        let mut names: Vec<_> = Call::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Call::ALL.len(), "names are distinct");
        assert_eq!(Call::RegisterVclWorker.name(), "register_vcl_worker");
    }
}
