//! `sendfile` in front of LDP's, which loses bytes and, in forked
//! children, memory.
//!
//! LDP (v26.06) sends a file to a VPP session through a buffer of its own,
//! and gets several things wrong:
//!
//! - with an offset, it moves the file's position (sendfile(2) leaves it
//!   alone) and then advances the offset one byte too far, so a program
//!   that sends a file in several calls (Python's `socket.sendfile`,
//!   servers that send large files in slices) skips a byte per call;
//! - a write that takes only part of what was read counts all of it as
//!   sent, and what was read but not sent (a full FIFO on a non-blocking
//!   socket) is dropped from the file's position: bytes lost either way;
//! - a blocking socket whose FIFO is full is polled without sleeping;
//! - the buffer is kept from call to call in VCL's heap, which forked
//!   processes share: each child of a forking server (mini_httpd sends
//!   every file with `sendfile`) left a buffer the size of its file there
//!   when it ended, until the heap ran out (after about 1500 answers of
//!   100 kB, a child aborted with "Out-of-memory" as soon as it started).
//!
//! Here, for a descriptor LDP gives a VPP session, the file is read with
//! `pread` at the offset (or the file's position) into a buffer of this
//! thread (the process's own memory, freed with it), and written with
//! `write` (LDP's, as the program would), until `count` bytes are sent, the
//! file ends, or a write takes less or fails; then the offset (or the
//! file's position, not both) moves by exactly what was sent. A failure
//! before anything was sent is the call's (-1 with its `errno`: `EAGAIN`
//! for a non-blocking socket that has no room, `EINTR` for a signal);
//! after, the call returns the count sent, as sendfile(2) does. Other
//! descriptors go to the next `sendfile` (LDP's, which passes them to
//! libc).
//!
//! `libvls.so` exports it as `sendfile` and `sendfile64` (aliases the
//! build script adds to the cdylib only, as for `epoll_wait`).

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::AtomicPtr;

use super::ldp_mmsg::is_vpp_session;
use super::ldp_wait::next_fn;
use crate::errno::{errno, set_errno};

type SendfileFn = unsafe extern "C" fn(c_int, c_int, *mut libc::off_t, usize) -> isize;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, usize) -> isize;

/// The most one read from the file takes.
const SLICE: usize = 64 * 1024;

/// The most one call sends, as Linux.
const MAX_COUNT: usize = 0x7fff_f000;

thread_local! {
    /// The calling thread's buffer, kept between calls.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `sendfile(out_fd, in_fd, offset, count)` (see the module's
/// documentation).
///
/// # Safety
/// As `sendfile`: `offset` is null or valid for reads and writes.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off_t,
    count: usize,
) -> isize {
    static NEXT_SENDFILE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static NEXT_WRITE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    if !is_vpp_session(out_fd) {
        // SAFETY: `SendfileFn` is `sendfile`'s C signature.
        let Some(next) = (unsafe { next_fn::<SendfileFn>(&NEXT_SENDFILE, b"sendfile\0") }) else { return -1 };
        // SAFETY: the next `sendfile` (LDP's or libc's), with the caller's
        // arguments (their contract).
        return unsafe { next(out_fd, in_fd, offset, count) };
    }
    // SAFETY: `WriteFn` is `write`'s C signature.
    let Some(write) = (unsafe { next_fn::<WriteFn>(&NEXT_WRITE, b"write\0") }) else { return -1 };
    let start = if offset.is_null() {
        // SAFETY: lseek has no memory preconditions.
        unsafe { libc::lseek(in_fd, 0, libc::SEEK_CUR) }
    } else {
        // SAFETY: `offset` is valid (caller's contract).
        unsafe { *offset }
    };
    if start < 0 {
        // A negative offset, or a pipe or socket as the source (no
        // position): sendfile(2) says EINVAL; a bad descriptor stays EBADF.
        if !offset.is_null() || errno() == libc::ESPIPE {
            set_errno(libc::EINVAL);
        }
        return -1;
    }
    let send = |buf: &mut Vec<u8>| {
        // SAFETY: `write` is LDP's, called on a buffer of ours.
        send_from(in_fd, start, count.min(MAX_COUNT), buf, |b| unsafe {
            write(out_fd, b.as_ptr().cast(), b.len())
        })
    };
    // A signal handler that sends a file while this thread is inside
    // (re-entered), or a thread's last call after its buffer is gone, gets
    // a buffer of its own.
    let (sent, failure) = BUFFER
        .try_with(|b| b.try_borrow_mut().ok().map(|mut buf| send(&mut buf)))
        .ok()
        .flatten()
        .unwrap_or_else(|| send(&mut Vec::new()));
    if sent > 0 {
        let end = start + sent as libc::off_t;
        if offset.is_null() {
            // SAFETY: lseek has no memory preconditions.
            unsafe { libc::lseek(in_fd, end, libc::SEEK_SET) };
        } else {
            // SAFETY: `offset` is valid (caller's contract).
            unsafe { *offset = end };
        }
        return sent as isize;
    }
    match failure {
        Some(e) => {
            set_errno(e);
            -1
        }
        None => 0,
    }
}

/// Sends at most `count` bytes of file `in_fd` from `start` with `write`,
/// through `buf`: the count sent, and the `errno` of the read or write
/// that stopped it early, if one failed.
fn send_from(
    in_fd: c_int,
    start: libc::off_t,
    count: usize,
    buf: &mut Vec<u8>,
    mut write: impl FnMut(&[u8]) -> isize,
) -> (usize, Option<c_int>) {
    let mut sent = 0usize;
    while sent < count {
        let want = (count - sent).min(SLICE);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        // SAFETY: `buf` holds at least `want` bytes.
        let got = unsafe { libc::pread(in_fd, buf.as_mut_ptr().cast(), want, start + sent as libc::off_t) };
        if got < 0 {
            let e = errno();
            return (sent, Some(if e == libc::ESPIPE { libc::EINVAL } else { e }));
        }
        if got == 0 {
            // The file ended.
            return (sent, None);
        }
        let got = got as usize;
        let mut done = 0usize;
        while done < got {
            let w = write(&buf[done..got]);
            if w < 0 {
                return (sent + done, Some(errno()));
            }
            if w == 0 {
                return (sent + done, None);
            }
            done += w as usize;
        }
        sent += got;
    }
    (sent, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn file_of(len: usize) -> (std::fs::File, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile();
        f.write_all(&data).unwrap();
        (f, data)
    }

    fn tempfile() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "vls-sendfile-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn every_byte_once_across_partial_writes_and_slices() {
        let (f, data) = file_of(3 * SLICE + 123);
        let mut out = Vec::new();
        // Writes that take at most 1000 bytes.
        let (sent, failure) = send_from(f.as_raw_fd(), 0, usize::MAX, &mut Vec::new(), |b| {
            let n = b.len().min(1000);
            out.extend_from_slice(&b[..n]);
            n as isize
        });
        assert_eq!((sent, failure), (data.len(), None));
        assert!(out == data, "the bytes, in order, each once");
    }

    #[test]
    fn from_an_offset_and_at_most_count() {
        let (f, data) = file_of(10_000);
        let mut out = Vec::new();
        let (sent, _) = send_from(f.as_raw_fd(), 777, 5000, &mut Vec::new(), |b| {
            out.extend_from_slice(b);
            b.len() as isize
        });
        assert_eq!(sent, 5000);
        assert!(out[..] == data[777..5777]);
    }

    #[test]
    fn a_full_socket_stops_the_count_where_the_bytes_stopped() {
        let (f, data) = file_of(3 * SLICE);
        let mut out = Vec::new();
        let mut room = 70_000usize;
        let (sent, failure) = send_from(f.as_raw_fd(), 0, usize::MAX, &mut Vec::new(), |b| {
            if room == 0 {
                set_errno(libc::EAGAIN);
                return -1;
            }
            let n = b.len().min(room);
            room -= n;
            out.extend_from_slice(&b[..n]);
            n as isize
        });
        assert_eq!((sent, failure), (70_000, Some(libc::EAGAIN)));
        assert!(out[..] == data[..sent]);
    }

    #[test]
    fn a_source_that_is_no_file_is_einval() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (sent, failure) = send_from(fds[0], 0, 10, &mut Vec::new(), |b| b.len() as isize);
        assert_eq!((sent, failure), (0, Some(libc::EINVAL)));
        // SAFETY: the pipe's own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
