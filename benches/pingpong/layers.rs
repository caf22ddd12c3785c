//! The layers the ping-pong benchmark compares, as one table of C
//! functions each ([`Api`]): raw VCL, the `floor` calibration (a handle
//! table and the VCL call, no checks), the C layer (libvppcom's own
//! `vls_*`, found with `dlsym`) and this crate's C ABI.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use vls::ffi;

/// The calls a client makes, for one layer. Handles are `i64` so VCL
/// session handles (`u32`) and VLS handles (`i32`) both fit.
#[derive(Copy, Clone)]
pub struct Api {
    pub app_create: unsafe extern "C" fn(*mut c_char) -> c_int,
    pub create: unsafe extern "C" fn(u8, u8) -> c_int,
    pub connect: unsafe extern "C" fn(i32, *mut c_void) -> c_int,
    pub attr: unsafe extern "C" fn(i32, u32, *mut c_void, *mut u32) -> c_int,
    pub write: unsafe extern "C" fn(i32, *mut c_void, usize) -> c_int,
    pub read: unsafe extern "C" fn(i32, *mut c_void, usize) -> isize,
    pub epoll_create: unsafe extern "C" fn() -> c_int,
    pub epoll_ctl: unsafe extern "C" fn(i32, c_int, i32, *mut libc::epoll_event) -> c_int,
    pub epoll_wait: unsafe extern "C" fn(i32, *mut libc::epoll_event, c_int, f64) -> c_int,
    pub set_libc_epfd: unsafe extern "C" fn(i32, c_int) -> c_int,
}

// Raw vppcom, adapted to the same shapes.
unsafe extern "C" fn raw_app_create(name: *mut c_char) -> c_int {
    // SAFETY: valid C string from the caller.
    unsafe { ffi::vppcom_app_create(name) }
}
unsafe extern "C" fn raw_create(p: u8, nb: u8) -> c_int {
    // SAFETY: plain values.
    unsafe { ffi::vppcom_session_create(p, nb) }
}
unsafe extern "C" fn raw_connect(h: i32, ep: *mut c_void) -> c_int {
    // SAFETY: valid endpoint from the caller.
    unsafe { ffi::vppcom_session_connect(h as u32, ep.cast()) }
}
unsafe extern "C" fn raw_attr(h: i32, op: u32, b: *mut c_void, l: *mut u32) -> c_int {
    // SAFETY: valid buffers from the caller.
    unsafe { ffi::vppcom_session_attr(h as u32, op, b, l) }
}
unsafe extern "C" fn raw_write(h: i32, b: *mut c_void, n: usize) -> c_int {
    // SAFETY: valid buffer from the caller.
    unsafe { ffi::vppcom_session_write(h as u32, b, n) }
}
unsafe extern "C" fn raw_read(h: i32, b: *mut c_void, n: usize) -> isize {
    // SAFETY: valid buffer from the caller.
    unsafe { ffi::vppcom_session_read(h as u32, b, n) as isize }
}

/// The handles of the `floor` calibration: index = the handle the
/// application holds, value = VCL's session handle.
static FLOOR_HANDLES: [AtomicU32; 16] = [const { AtomicU32::new(u32::MAX) }; 16];
static FLOOR_NEXT: AtomicUsize = AtomicUsize::new(0);

/// VCL's session handle behind a `floor` handle (`u32::MAX`, which VCL
/// refuses, for one it never gave).
fn floor_sh(h: i32) -> u32 {
    usize::try_from(h)
        .ok()
        .and_then(|i| FLOOR_HANDLES.get(i))
        .map_or(u32::MAX, |sh| sh.load(Ordering::Relaxed))
}

// `floor`: the least any layer between LDP and VCL does per call, a lookup
// of VCL's handle in a table and the call. No thread check, no session
// state, no lock: not a usable layer (nothing stops a second thread or a
// closed session), only the bound under which no layer can go.
unsafe extern "C" fn floor_create(p: u8, nb: u8) -> c_int {
    // SAFETY: plain values.
    let sh = unsafe { ffi::vppcom_session_create(p, nb) };
    if sh < 0 {
        return sh;
    }
    let h = FLOOR_NEXT.fetch_add(1, Ordering::Relaxed);
    let Some(slot) = FLOOR_HANDLES.get(h) else { return -libc::EMFILE };
    slot.store(sh as u32, Ordering::Relaxed);
    h as c_int
}
unsafe extern "C" fn floor_connect(h: i32, ep: *mut c_void) -> c_int {
    // SAFETY: valid endpoint from the caller.
    unsafe { ffi::vppcom_session_connect(floor_sh(h), ep.cast()) }
}
unsafe extern "C" fn floor_attr(h: i32, op: u32, b: *mut c_void, l: *mut u32) -> c_int {
    // SAFETY: valid buffers from the caller.
    unsafe { ffi::vppcom_session_attr(floor_sh(h), op, b, l) }
}
unsafe extern "C" fn floor_write(h: i32, b: *mut c_void, n: usize) -> c_int {
    // SAFETY: valid buffer from the caller.
    unsafe { ffi::vppcom_session_write(floor_sh(h), b, n) }
}
unsafe extern "C" fn floor_read(h: i32, b: *mut c_void, n: usize) -> isize {
    // SAFETY: valid buffer from the caller.
    unsafe { ffi::vppcom_session_read(floor_sh(h), b, n) as isize }
}

unsafe extern "C" fn raw_epoll_create() -> c_int {
    // SAFETY: no arguments.
    unsafe { ffi::vppcom_epoll_create() }
}
unsafe extern "C" fn raw_epoll_ctl(ep: i32, op: c_int, h: i32, ev: *mut libc::epoll_event) -> c_int {
    // SAFETY: valid event from the caller (same layout as VCL's).
    unsafe { ffi::vppcom_epoll_ctl(ep as u32, op, h as u32, ev.cast()) }
}
unsafe extern "C" fn raw_epoll_wait(ep: i32, evs: *mut libc::epoll_event, max: c_int, wait: f64) -> c_int {
    // SAFETY: valid events array from the caller (same layout as VCL's).
    unsafe { ffi::vppcom_epoll_wait(ep as u32, evs.cast(), max, wait) }
}
/// Raw VCL has no place for LDP's libc epoll fd (the caller keeps it).
unsafe extern "C" fn raw_set_libc_epfd(_ep: i32, _libc_epfd: c_int) -> c_int {
    0
}
unsafe extern "C" fn vls_epoll_create_adapter() -> c_int {
    vls::capi::vls_epoll_create()
}
unsafe extern "C" fn vls_set_libc_epfd_adapter(ep: i32, libc_epfd: c_int) -> c_int {
    vls::capi::vls_set_libc_epfd(ep, libc_epfd)
}

pub fn api(layer: &str) -> Api {
    match layer {
        "raw" => Api {
            app_create: raw_app_create,
            create: raw_create,
            connect: raw_connect,
            attr: raw_attr,
            write: raw_write,
            read: raw_read,
            epoll_create: raw_epoll_create,
            epoll_ctl: raw_epoll_ctl,
            epoll_wait: raw_epoll_wait,
            set_libc_epfd: raw_set_libc_epfd,
        },
        // Only the 1-thread variant uses it (its epoll calls are raw VCL's).
        "floor" => Api {
            create: floor_create,
            connect: floor_connect,
            attr: floor_attr,
            write: floor_write,
            read: floor_read,
            ..api("raw")
        },
        "rust" => Api {
            app_create: vls::capi::vls_app_create,
            create: vls_create_adapter,
            connect: vls::capi::vls_connect,
            attr: vls::capi::vls_attr,
            write: vls::capi::vls_write,
            read: vls::capi::vls_read,
            epoll_create: vls_epoll_create_adapter,
            epoll_ctl: vls::capi::vls_epoll_ctl,
            epoll_wait: vls::capi::vls_epoll_wait,
            set_libc_epfd: vls_set_libc_epfd_adapter,
        },
        "c" => c_api(),
        other => panic!("unknown layer {other}"),
    }
}

unsafe extern "C" fn vls_create_adapter(p: u8, nb: u8) -> c_int {
    vls::capi::vls_create(p, nb)
}

/// libvppcom's own `vls_*`, found in libvppcom itself.
fn c_api() -> Api {
    let lib = CString::new("libvppcom.so").unwrap();
    // SAFETY: libvppcom is already loaded (linked); RTLD_NOLOAD only returns
    // its handle.
    let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    assert!(!h.is_null(), "libvppcom.so not loaded");
    let sym = |name: &str| {
        let n = CString::new(name).unwrap();
        // SAFETY: valid handle and name.
        let p = unsafe { libc::dlsym(h, n.as_ptr()) };
        assert!(!p.is_null(), "{name} not in libvppcom");
        p
    };
    // SAFETY: each symbol has the C signature of vcl_locked.h, which these
    // function-pointer types spell out.
    unsafe {
        Api {
            app_create: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_char) -> c_int>(sym(
                "vls_app_create",
            )),
            create: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(u8, u8) -> c_int>(sym(
                "vls_create",
            )),
            connect: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i32, *mut c_void) -> c_int>(
                sym("vls_connect"),
            ),
            attr: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(i32, u32, *mut c_void, *mut u32) -> c_int,
            >(sym("vls_attr")),
            write: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i32, *mut c_void, usize) -> c_int>(
                sym("vls_write"),
            ),
            read: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i32, *mut c_void, usize) -> isize>(
                sym("vls_read"),
            ),
            epoll_create: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(sym(
                "vls_epoll_create",
            )),
            epoll_ctl: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(i32, c_int, i32, *mut libc::epoll_event) -> c_int,
            >(sym("vls_epoll_ctl")),
            epoll_wait: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(i32, *mut libc::epoll_event, c_int, f64) -> c_int,
            >(sym("vls_epoll_wait")),
            set_libc_epfd: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i32, c_int) -> c_int>(
                sym("vls_set_libc_epfd"),
            ),
        }
    }
}
