//! The log of a C program (`VLS_RS_LOG`): a `tracing` subscriber that
//! stays quiet once the calling thread's thread-local state is gone.
//!
//! `tracing_subscriber`'s formatter keeps a buffer per thread. At `exit()`
//! glibc destroys the exiting thread's thread-locals before it runs the
//! `atexit` handlers, and programs call the layer from those handlers
//! (socat shuts its sockets down in one). An event logged there made the
//! formatter panic ("cannot access a Thread Local Storage value during or
//! after destruction"): caught, but with the panic's message and backtrace
//! on the program's stderr. [`ExitSafe`] tells the formatter nothing once
//! the thread's thread-local destructors have run. [`PidLines`] writes
//! each event in one call, after the id of the process that logged it.

use std::any::TypeId;
use std::cell::Cell;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

thread_local! {
    /// This thread's thread-local destructors have run (set by [`ARMED`]'s).
    /// No destructor of its own, so it can always be read.
    static GONE: Cell<bool> = const { Cell::new(false) };
    /// Registered once the formatter has run on this thread, so its
    /// destructor runs with the formatter's.
    static ARMED: Armed = const { Armed };
}

struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        let _ = GONE.try_with(|g| g.set(true));
    }
}

/// May this thread still log?
fn thread_can_log() -> bool {
    !GONE.try_with(Cell::get).unwrap_or(true)
}

/// A subscriber that forwards to `S` only while the calling thread's
/// thread-local state is there (see the module).
pub(crate) struct ExitSafe<S>(pub S);

impl<S: Subscriber> Subscriber for ExitSafe<S> {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // "Sometimes" rather than "always", so `enabled` is asked each time.
        let interest = self.0.register_callsite(metadata);
        if interest.is_never() {
            interest
        } else {
            Interest::sometimes()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        thread_can_log() && self.0.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        thread_can_log() && self.0.event_enabled(event)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows)
    }

    fn event(&self, event: &Event<'_>) {
        if !thread_can_log() {
            return;
        }
        self.0.event(event);
        // After the formatter's first use: its state is registered first,
        // so this one's destructor marks the thread before or with it.
        let _ = ARMED.try_with(|_| ());
    }

    fn enter(&self, span: &Id) {
        self.0.enter(span)
    }

    fn exit(&self, span: &Id) {
        self.0.exit(span)
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.0.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.0.try_close(id)
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded contract (the pointer is `S`'s answer for `id`).
        unsafe { self.0.downcast_raw(id) }
    }
}

/// The writer of a C program's log: each event is written to stderr in one
/// `write` (lines of related processes do not interleave), preceded by the
/// id of the process that logged it (forked children log the same
/// messages as their parents).
pub(crate) struct PidLines;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for PidLines {
    type Writer = PidLine;

    fn make_writer(&'a self) -> PidLine {
        PidLine(format!("[{}] ", std::process::id()).into_bytes())
    }
}

/// One event's line, written when dropped (see [`PidLines`]).
pub(crate) struct PidLine(Vec<u8>);

impl std::io::Write for PidLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PidLine {
    fn drop(&mut self) {
        // A log line that cannot be written is dropped.
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_stops_logging_once_its_thread_locals_are_destroyed() {
        std::thread::spawn(|| {
            assert!(thread_can_log());
            let _ = ARMED.try_with(|_| ());
            assert!(thread_can_log(), "armed, still alive");
        })
        .join()
        .unwrap();
        // A thread-local destructor registered before ARMED's runs after
        // it (glibc runs them last-registered first): it must see the
        // thread as gone.
        struct Probe(std::sync::mpsc::Sender<bool>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let _ = self.0.send(thread_can_log());
            }
        }
        thread_local! {
            static PROBE: std::cell::RefCell<Option<Probe>> = const { std::cell::RefCell::new(None) };
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            PROBE.with(|p| *p.borrow_mut() = Some(Probe(tx)));
            let _ = ARMED.try_with(|_| ());
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().ok(), Some(false), "logging in a later destructor must be off");
    }
}
