//! The `exec` functions in front of libc's: the process leaves VPP first.
//!
//! A process that runs another program keeps none of its VCL state, and
//! VCL's exit handler never runs for it. Nothing in LDP or VCL notices, so
//! without these (and with the C layer):
//! - a forked child that execs (`socat`'s `EXEC:` and `SYSTEM:`, a CGI or
//!   inetd-style server) stays subscribed to every connection it inherited:
//!   when its relatives close one, the last close is not the last, the
//!   connection stays open in VPP and the peer waits for its end for ever;
//! - its VCL worker stays taken in VCL's heap, which relatives share, when
//!   its parent exits before it (nobody cleans up after it): enough such
//!   forks and VCL has no worker left for the next child.
//!
//! Here each `exec` first calls [`crate::engine::Vls::process_execs`]
//! (what exit does, plus freeing the worker), then libc's function. If the
//! `exec` fails the process goes on without VPP: its sessions give
//! `EBADFD`. A `vfork` child (which shares its parent's memory) is left
//! alone, and so is `posix_spawn` (glibc's does not go through these
//! names, and its child never had a worker).
//!
//! `libvls.so` exports them as `execve`, `execv`, `execvp`, `execvpe` and
//! `fexecve` (aliases the build script adds to the cdylib only, as for
//! `epoll_wait`); the variadic `execl`, `execlp` and `execle` are the C
//! shim's (`vppsys_execl` and so on), which build the argument vector and
//! call the vector forms above.

use std::ffi::{c_char, c_int, c_void};
use std::panic::catch_unwind;
use std::sync::atomic::AtomicPtr;

use super::ldp_wait::next_fn;
use crate::process::vls_if_made;

type Argv = *const *const c_char;

/// Leaves VPP before the program is replaced (see the module), and marks
/// what is left of VCL's and LDP's descriptors close-on-exec: of no use
/// to the next program, and VCL opens most without the flag (the queues'
/// eventfds and the segments' memfds it receives from VPP).
fn before_exec() {
    if let Some(v) = vls_if_made() {
        // Marked first, while the numbers are surely VCL's (leaving VPP
        // closes some; another thread could open a file under that number).
        for fd in super::ldp_close::worker_fds() {
            // The system call (LDP's `fcntl` would take a number from its
            // base up for a VPP session).
            // SAFETY: F_SETFD changes only the descriptor's flags.
            unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let _ = catch_unwind(|| v.process_execs());
    }
}

/// Defines `vls_preload_<name>`: leaves VPP, then calls libc's `<name>`
/// with the same arguments (`-1` and `ENOSYS` if libc has none).
macro_rules! exec_interposer {
    ($name:ident, $export:ident, $manual:literal, ($($arg:ident: $ty:ty),*)) => {
        #[doc = concat!("`", stringify!($name), "`, after leaving VPP.")]
        ///
        /// # Safety
        #[doc = concat!("As `", stringify!($name), "(", $manual, ")`.")]
        #[no_mangle]
        pub unsafe extern "C" fn $export($($arg: $ty),*) -> c_int {
            static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
            let name = concat!(stringify!($name), "\0").as_bytes();
            // SAFETY: the type is `$name`'s C signature.
            let Some(f) = (unsafe { next_fn::<unsafe extern "C" fn($($ty),*) -> c_int>(&NEXT, name) }) else {
                return -1;
            };
            before_exec();
            // SAFETY: forwarded contract.
            unsafe { f($($arg),*) }
        }
    };
}

exec_interposer!(execve, vls_preload_execve, "2", (path: *const c_char, argv: Argv, envp: Argv));
exec_interposer!(execv, vls_preload_execv, "3", (path: *const c_char, argv: Argv));
exec_interposer!(execvp, vls_preload_execvp, "3", (file: *const c_char, argv: Argv));
exec_interposer!(execvpe, vls_preload_execvpe, "3", (file: *const c_char, argv: Argv, envp: Argv));
exec_interposer!(fexecve, vls_preload_fexecve, "3", (fd: c_int, argv: Argv, envp: Argv));
