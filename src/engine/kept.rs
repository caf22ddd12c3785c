//! Connections a forking process keeps as VPP's owner for its relatives
//! ([`Kept`]): recording them when a hand-over is unsafe, noticing after
//! each wait when no relative holds one any more (closing it in VPP only if
//! the last relative could not), and handing the shared entries back at
//! exit. The rest of the fork support is in `fork_hooks` and `fork`.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::fork::{self, SharedTable};
use super::quiet::may_log;
use super::Vls;
use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::seam::{KeptEnd, KeptState, Vcl};

/// A connection this process closed while relatives still use it, whose
/// VPP owner this process's copy stays because VPP cannot hand it over
/// safely ([`crate::seam::UNSHARE_KEPT`]). The relatives holding it (the shared entry's
/// subscribers) are subscribers of its FIFOs, so VPP tells them of data,
/// space and the peer's close or reset as well as this copy. The copy goes
/// once VPP is done with it. This process registers as the entry's keeper:
/// the last relative to leave then does not free the entry but says on it
/// whether it closed the connection in VPP. If it did, the keeper only
/// waits for VPP's cleanup: a second close could reach another connection,
/// as VPP gives a freed session's handle to the next one (seen: it closed
/// a connection not accepted yet, which VCL maps to its listener, and VCL
/// then took the forking server's listener for gone). If the last relative
/// died without closing it, the keeper closes it in VPP.
pub(super) struct Kept {
    /// The copy, on this process's worker.
    sh: Sh,
    /// Its shared entry (valid while it names the same session index).
    entry: u32,
    /// This process is the entry's keeper: the entry stays until this
    /// process frees it, and says whether the last relative closed the
    /// connection in VPP. False if the relatives had all left before it
    /// could register (the last one closed it in VPP then).
    registered: bool,
}

impl<V: Vcl> Vls<V> {
    /// Records copy `sh` (shared entry `entry`) as kept: see [`Kept`].
    pub(super) fn keep_owner_copy(&self, sh: Sh, entry: u32) {
        if may_log() {
            tracing::info!(
                sh,
                "connection left to relatives stays this process's in VPP (its FIFOs cannot be handed over)"
            );
        }
        let (me, index) = sh_parts(sh);
        let registered = self.forks.shared.get().and_then(|t| t.lock(entry)).is_some_and(|g| {
            let ours = g.session_index() == index && g.n_subscribers() > 0;
            if ours {
                g.set_keeper(me);
            }
            ours
        });
        let mut kept = self.forks.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.push(Kept { sh, entry, registered });
        self.forks.keeping.store(true, Ordering::Release);
    }

    /// Runs [`Self::notice_kept_copies`] when dropped: after a wait, when
    /// VCL has handled what VPP told the kept copies.
    pub(super) fn after_wait(&'static self) -> AfterWait<V> {
        AfterWait(self)
    }

    /// Closes in VPP the connections this process keeps (see [`Kept`]) that
    /// no relative holds any more, and frees the copies VPP is done with.
    /// Cheap when nothing is kept.
    #[inline]
    pub(super) fn notice_kept_copies(&'static self) {
        if self.forks.keeping.load(Ordering::Acquire) {
            self.notice_kept_copies_now();
        }
    }

    #[cold]
    fn notice_kept_copies_now(&'static self) {
        let Some(table) = self.forks.shared.get() else { return };
        let _g = self.op_locks(super::OpKind::MessageQueue, None);
        let mut kept = self.forks.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|k| {
            let (me, index) = sh_parts(k.sh);
            let registered = k.registered;
            // This process's entry (registered as keeper: only it frees it).
            let entry = || table_entry_kept_by(Some(table), k.entry, index, me).filter(|_| registered);
            if self.vcl.kept_state(k.sh) == KeptState::Gone {
                // VPP is done with it: only the record is left.
                if let Some(g) = entry() {
                    if g.n_subscribers() == 0 {
                        g.free();
                    } else {
                        g.set_keeper(INVALID);
                    }
                }
                self.vcl.kept_end(k.sh, KeptEnd::RecordOnly);
                return false;
            }
            let (held, closed_by_relative) = match entry() {
                Some(g) => (g.n_subscribers() > 0, g.closed_in_vpp()),
                // Not (or no longer) registered: the relatives had left,
                // the last one closing it in VPP.
                None => (false, true),
            };
            if held {
                return true;
            }
            if let Some(g) = entry() {
                g.free();
            }
            if closed_by_relative {
                // The last relative closed it in VPP: only the record goes.
                // Closing it again could close another connection: VPP
                // gives a freed handle to the next.
                self.vcl.kept_end(k.sh, KeptEnd::ClosedByRelative);
                return false;
            }
            // The last relative died without closing it: close it in VPP;
            // VCL frees the copy when VPP confirms.
            if may_log() {
                tracing::debug!(sh = k.sh, "kept connection no longer held by a relative: closed");
            }
            self.vcl.kept_end(k.sh, KeptEnd::CloseInVpp);
            false
        });
        self.forks.keeping.store(!kept.is_empty(), Ordering::Release);
    }

    /// At exit: connections kept for relatives go with this worker in VPP,
    /// so their entries are the relatives' again (the last one frees it).
    pub(super) fn release_kept_at_exit(&'static self) {
        let me = self.vcl.worker_index();
        let kept = std::mem::take(&mut *self.forks.kept.lock().unwrap_or_else(PoisonError::into_inner));
        self.forks.keeping.store(false, Ordering::Release);
        for k in kept.iter().filter(|k| k.registered) {
            let index = sh_parts(k.sh).1;
            if let Some(g) = table_entry_kept_by(self.forks.shared.get(), k.entry, index, me) {
                if g.n_subscribers() == 0 {
                    g.free();
                } else {
                    g.set_keeper(INVALID);
                }
            }
        }
    }

    /// In a forked child on worker `me`: the parent's kept copies (their
    /// list came with the process's memory, VCL copied their records) are
    /// the parent's: the records go, memory only (the FIFOs' subscriber
    /// lists lose this worker again), and nothing is kept here.
    pub(super) fn drop_inherited_kept_copies(&self, me: u32) {
        let kept = std::mem::take(&mut *self.forks.kept.lock().unwrap_or_else(PoisonError::into_inner));
        self.forks.keeping.store(false, Ordering::Release);
        for k in kept {
            self.vcl.unshare(sh_from_parts(me, sh_parts(k.sh).1), INVALID, false);
        }
    }

    /// Per-process workers: connections this process keeps as VPP's owner
    /// for relatives (see [`Kept`]).
    pub fn kept_connections(&self) -> usize {
        self.forks.kept.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Entry `entry` of `table`, if it still names session `index` and worker
/// `me` keeps it (see [`Kept`]).
fn table_entry_kept_by(
    table: Option<&SharedTable>,
    entry: u32,
    index: u32,
    me: u32,
) -> Option<fork::EntryGuard<'static>> {
    table?.lock(entry).filter(|g| g.session_index() == index && g.keeper() == me)
}

/// See [`Vls::after_wait`].
pub(super) struct AfterWait<V: Vcl + 'static>(&'static Vls<V>);

impl<V: Vcl> Drop for AfterWait<V> {
    fn drop(&mut self) {
        self.0.notice_kept_copies();
    }
}
