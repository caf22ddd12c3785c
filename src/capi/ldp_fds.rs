//! LDP's descriptor split, watched from `vls_close` (and from reads and
//! writes that found no session).
//!
//! LDP gives the application descriptor number `2^LDP_SID_BIT + vlsh` for a
//! VPP session and takes every descriptor at or above `2^LDP_SID_BIT` for
//! one, but the kernel knows nothing of that range: once a program has
//! enough kernel descriptors, the kernel hands out a number LDP also means,
//! and the program's `close` of its kernel descriptor becomes a
//! `vls_close` of a VPP session (often its listener; the kernel descriptor
//! stays open). The layer cannot tell which of the two the program meant,
//! so it does what it is asked; but when a `vls_close` arrives while the
//! kernel descriptor of the same number is open, it says so once (a
//! warning), which names the cause and the cure (a larger `LDP_SID_BIT`).
//! Looking at the descriptor is an `fcntl(F_GETFD)` system call (not
//! LDP's `fcntl`): nothing is changed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::handle::Vlsh;

/// `2^LDP_SID_BIT` as LDP computes it, or `None` when LDP is not preloaded.
pub(super) fn ldp_base() -> Option<i64> {
    static BASE: OnceLock<Option<i64>> = OnceLock::new();
    *BASE.get_or_init(|| {
        let preload = std::env::var_os("LD_PRELOAD")?;
        if !preload.to_string_lossy().contains("vcl_ldpreload") {
            return None;
        }
        Some(base_for(std::env::var("LDP_SID_BIT").ok().as_deref()))
    })
}

/// LDP's reading of `LDP_SID_BIT` (an unsigned number; unset or invalid:
/// 5; clamped to 5..=30): the first descriptor number it uses.
fn base_for(sid_bit: Option<&str>) -> i64 {
    const MIN: u32 = 5;
    const MAX: u32 = 30;
    let bit = sid_bit.and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(MIN).clamp(MIN, MAX);
    1i64 << bit
}

/// The kernel descriptor LDP would have mapped to `vlsh`, if LDP is
/// preloaded and a descriptor of that number is open.
fn open_kernel_fd_of(vlsh: Vlsh) -> Option<i32> {
    if vlsh < 0 {
        return None;
    }
    let fd = i32::try_from(ldp_base()? + i64::from(vlsh)).ok()?;
    // The system call itself: LDP interposes `fcntl` and would take the
    // number for a VPP session.
    // SAFETY: F_GETFD only reads the descriptor's flags (no effect on it).
    (unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFD) } != -1).then_some(fd)
}

/// Runs `warn` with the kernel descriptor LDP maps to `vlsh`, if that is
/// open, once per `said` flag (once per process and kind of warning).
fn once_if_kernel_fd_open(said: &AtomicBool, vlsh: Vlsh, warn: impl FnOnce(i32)) {
    if said.load(Ordering::Relaxed) {
        return;
    }
    let Some(fd) = open_kernel_fd_of(vlsh) else { return };
    if !said.swap(true, Ordering::Relaxed) {
        warn(fd);
    }
}

/// Called by `vls_close(vlsh)`: warns (once per process) if the kernel
/// descriptor LDP would have mapped to `vlsh` is open.
pub(super) fn check_close(vlsh: Vlsh) {
    static SAID: AtomicBool = AtomicBool::new(false);
    once_if_kernel_fd_open(&SAID, vlsh, |fd| {
        tracing::warn!(
            vlsh,
            fd,
            "vls_close of VPP session {vlsh} while kernel descriptor {fd}, the number LDP maps to it, is \
             open: the program probably closed its kernel descriptor {fd}, and closes a VPP session \
             instead (LDP's descriptor split); run it with a larger LDP_SID_BIT (said once)"
        )
    });
}

/// Called when `call` (`vls_read`, `vls_write`) of `vlsh` found no session:
/// warns (once per process) if the kernel descriptor LDP mapped to `vlsh`
/// is open. The program used its kernel descriptor and got `EBADFD` (bash
/// reads its script from descriptor 255, for instance).
pub(super) fn check_no_session(vlsh: Vlsh, call: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    once_if_kernel_fd_open(&SAID, vlsh, |fd| {
        tracing::warn!(
            vlsh,
            fd,
            "{call} of handle {vlsh}, which is no VPP session, for the program's kernel descriptor {fd}: \
             LDP takes every descriptor from 2^LDP_SID_BIT up for a VPP session, and the call failed \
             with EBADFD (LDP's descriptor split); run it with a larger LDP_SID_BIT (said once)"
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_bit_is_read_as_ldp_reads_it() {
        assert_eq!(base_for(None), 32);
        assert_eq!(base_for(Some("junk")), 32);
        assert_eq!(base_for(Some("2")), 32, "below the minimum");
        assert_eq!(base_for(Some("10")), 1024);
        assert_eq!(base_for(Some("31")), 1 << 30, "above the maximum");
    }
}
