//! Hidden entry point of the fuzz target (`fuzz/`, feature `fuzzing`; not
//! an API): the operation language of the random-operations test over the
//! in-memory VCL double, its choices read from the fuzzer's bytes.
//!
//! One input: its first byte picks how many threads (1 to 4) make the
//! operations; then, until the input is used up, a byte picks the thread
//! that makes the next operation and the following bytes its kind and
//! arguments. The operations run one at a time in that order (the threads
//! take turns; a blocking read racing a close has a thread of its own), so
//! an input replays the same way, and VLS sees every thread it would see in
//! a program: registration, the switch to the worker locks when a second
//! thread arrives, thread exit. Afterwards every handle is closed and the
//! session pool and the handle table must be empty.
//!
//! One VLS serves the whole fuzzing process (each is leaked: it must live
//! as long as the threads that used it); every input starts with it empty.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;

use crate::engine::ops::{Bytes, Choices, World};

/// Runs the operations `data` encodes; panics at the first broken rule.
pub fn run(data: &[u8]) {
    static WORLD: OnceLock<World> = OnceLock::new();
    let world = WORLD.get_or_init(|| World::fresh(false));
    let Some((&first, rest)) = data.split_first() else { return };
    let threads = u64::from(first % 4) + 1;
    let input = Mutex::new(Bytes(rest));
    let choices = || input.lock().unwrap_or_else(PoisonError::into_inner);
    thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (turns, handles): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<()>();
                let done_tx = done_tx.clone();
                let choices = &choices;
                let h = s.spawn(move || {
                    // One operation per turn, until the sender is dropped.
                    while rx.recv().is_ok() {
                        world.step(&mut *choices());
                        if done_tx.send(()).is_err() {
                            return;
                        }
                    }
                });
                (tx, h)
            })
            .unzip();
        drop(done_tx);
        loop {
            let t = {
                let mut c = choices();
                if c.is_empty() {
                    break;
                }
                c.below(threads) as usize
            };
            if turns[t].send(()).is_err() {
                break; // it panicked: joined below
            }
            // Its operation is done, or it panicked (joined below).
            while done_rx.recv_timeout(std::time::Duration::from_millis(100)).is_err() {
                if handles[t].is_finished() {
                    break;
                }
            }
            if handles[t].is_finished() {
                break;
            }
        }
        drop(turns);
        // Joined one by one (not only at the end of the scope): that also
        // waits for their thread-exit hooks, which VLS runs from a pthread
        // key destructor after the thread's closure (a leak checker would
        // see their memory otherwise).
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
    world.close_all();
    if let Err(e) = world.check_empty() {
        panic!("{e}");
    }
}
