//! One process, one VPP release: `libvls.so` links the `libvppcom` of the
//! release it was built against (`libvppcom.so.<release>`, e.g.
//! `libvppcom.so.26.02`). Preloaded with a `libvcl_ldpreload.so` of another
//! release, the process would hold two VCLs, each with its own state, and
//! LDP would talk to one while `libvls.so` drives the other. That is
//! refused at `vls_app_create` with a message naming both.

use std::ffi::{c_int, c_void, CStr};

/// File names (as the dynamic linker loaded them) of every shared object
/// of this process.
fn loaded_objects() -> Vec<String> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `Vec` passed below, alive for the whole
        // iteration, and only this callback touches it meanwhile.
        let names = unsafe { &mut *(data as *mut Vec<String>) };
        // SAFETY: the loader passes a valid entry whose name is null or a
        // NUL-terminated string, valid during the callback.
        let name = unsafe { (*info).dlpi_name };
        if !name.is_null() {
            // SAFETY: as above.
            names.push(unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned());
        }
        0
    }
    let mut names: Vec<String> = Vec::new();
    // SAFETY: `each` matches the callback type and never unwinds (it only
    // pushes into a Vec); `names` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut names as *mut Vec<String> as *mut c_void) };
    names
}

/// Whether `path` names `release`'s libvppcom (`libvppcom.so.26.06`, or
/// with a point version, `libvppcom.so.26.06.0`).
fn is_release_vppcom(path: &str, release: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_prefix("libvppcom.so.")
        .and_then(|v| v.strip_prefix(release))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The loaded `libvppcom.so.*` that are not `release`'s.
fn foreign_vppcom<'a>(loaded: impl IntoIterator<Item = &'a str>, release: &str) -> Vec<&'a str> {
    loaded
        .into_iter()
        .filter(|path| {
            let file = path.rsplit('/').next().unwrap_or(path);
            file.starts_with("libvppcom.so.") && !is_release_vppcom(file, release)
        })
        .collect()
}

/// `Err(message)` if a `libvppcom` of another release than the one this
/// library was built against is loaded.
pub(super) fn check_one_release() -> Result<(), String> {
    let loaded = loaded_objects();
    let release = vpp_sys::VPP_RELEASE;
    let foreign = foreign_vppcom(loaded.iter().map(String::as_str), release);
    if foreign.is_empty() {
        return Ok(());
    }
    Err(format!(
        "vls-rs: libvls.so was built for VPP {release} (libvppcom.so.{release}), but this process also \
         loaded {}: use the libvcl_ldpreload.so of VPP {release}, or build libvls.so against the \
         release in use",
        foreign.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_releases_libvppcom_is_foreign() {
        let loaded = [
            "",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/opt/vpp-26.02/lib/x86_64-linux-gnu/libvppcom.so.26.02",
            "/opt/vpp/lib/x86_64-linux-gnu/libvppcom.so.26.06",
            "/usr/lib/libvppcom.so.26.02.1",
            "/opt/vpp/lib/x86_64-linux-gnu/libvcl_ldpreload.so.26.06",
            "libvppcom.so",
        ];
        assert_eq!(foreign_vppcom(loaded, "26.02"), ["/opt/vpp/lib/x86_64-linux-gnu/libvppcom.so.26.06"]);
        assert_eq!(
            foreign_vppcom(loaded, "26.06"),
            ["/opt/vpp-26.02/lib/x86_64-linux-gnu/libvppcom.so.26.02", "/usr/lib/libvppcom.so.26.02.1"]
        );
    }

    #[test]
    fn this_process_has_only_its_own_release() {
        // The test binary links the libvppcom the build found, nothing else
        // (`libvppcom.so.26.06`, or `.26.06.0` from a source tree whose
        // version file says `v26.06-release`).
        let loaded = loaded_objects();
        assert!(
            loaded.iter().any(|p| is_release_vppcom(p, vpp_sys::VPP_RELEASE)),
            "libvppcom.so.{} not among {loaded:?}",
            vpp_sys::VPP_RELEASE
        );
        assert_eq!(check_one_release(), Ok(()));
    }
}
