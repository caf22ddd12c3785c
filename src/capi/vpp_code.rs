//! Whose code an address is in: VPP's client libraries' (VCL, its
//! infrastructure and LDP) and this library's, or the program's.
//!
//! `libvls.so`'s `close` keeps VCL's own descriptors open when the program
//! closes them, but VCL closes them itself too, through the same `close`:
//! only the caller's return address tells the two apart. The executable
//! segments of the libraries loaded when the layer starts are listed once
//! (`dl_iterate_phdr`); a look is a few comparisons.

use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

/// The libraries whose code counts as VPP's (file names, without the
/// release suffix).
const VPP_LIBRARIES: [&str; 6] = [
    "libvppcom.so",
    "libvppinfra.so",
    "libsvm.so",
    "libvlibmemoryclient.so",
    "libvcl_ldpreload.so",
    "libvls.so",
];

/// Start and end of each executable segment of [`VPP_LIBRARIES`].
static RANGES: OnceLock<Vec<(usize, usize)>> = OnceLock::new();

/// Lists the ranges now (at start-up, before any `close` needs them).
pub(super) fn init() {
    RANGES.get_or_init(executable_ranges);
}

/// Is `addr` in the code of VPP's client libraries or of this library?
pub(super) fn is_vpp_code(addr: *const c_void) -> bool {
    let a = addr as usize;
    RANGES.get_or_init(executable_ranges).iter().any(|&(start, end)| (start..end).contains(&a))
}

fn executable_ranges() -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback gets `out` back as `data`, only for the
    // duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(add_library), (&mut out as *mut Vec<(usize, usize)>).cast()) };
    out
}

/// `dl_iterate_phdr`'s callback: adds the executable segments of `info`'s
/// object to the vector at `data` if it is one of [`VPP_LIBRARIES`].
unsafe extern "C" fn add_library(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: the loader passes a valid record for the call's duration,
    // and `data` is the vector `executable_ranges` passed.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    if info.dlpi_name.is_null() {
        return 0;
    }
    // SAFETY: a NUL-terminated name owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
    let file = name.rsplit('/').next().unwrap_or_default();
    if !VPP_LIBRARIES.iter().any(|l| file.starts_with(l)) {
        return 0;
    }
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: `dlpi_phdr` has `dlpi_phnum` entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            out.push((start, start + ph.p_memsz as usize));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcl_code_is_vpps_and_the_tests_own_code_and_stack_are_not() {
        // The test binary links libvppcom dynamically (and this crate
        // statically, so its code is the program's here).
        let vcl = vpp_sys::vppcom_session_create as *const c_void;
        assert!(is_vpp_code(vcl), "libvppcom's vppcom_session_create");
        assert!(!is_vpp_code(is_vpp_code as *const c_void));
        let x = 0u8;
        assert!(!is_vpp_code((&x as *const u8).cast()));
    }
}
