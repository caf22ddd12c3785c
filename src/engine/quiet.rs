//! Whether the fork and exit paths may still log.
//!
//! Once the process is exiting, thread-local state (the log subscriber's
//! buffers) may be gone: from then on those paths log nothing.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the process is exiting: thread-local state (the log
/// subscriber's buffers) may be gone, so nothing is logged by the fork and
/// exit paths.
static QUIET: AtomicBool = AtomicBool::new(false);

/// No logging from here on (see `QUIET`).
pub(crate) fn quiet_from_now_on() {
    QUIET.store(true, Ordering::Release);
}

/// Whether the fork and exit paths may still log (see `QUIET`).
pub(crate) fn may_log() -> bool {
    !QUIET.load(Ordering::Acquire)
}
