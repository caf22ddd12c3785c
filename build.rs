//! Root build script: makes every target of this package (tests, examples,
//! the `libvls.so` cdylib) find the libvppcom that `vpp-sys` linked against,
//! by adding its directory as an rpath. `vpp-sys` exports it through its
//! `links = "vppcom"` metadata as `DEP_VPPCOM_LIBDIR`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_VPPCOM_LIBDIR");
    println!("cargo::rustc-check-cfg=cfg(vpp_version, values(any()))");
    println!("cargo::rustc-check-cfg=cfg(loom)");
    if let Ok(libdir) = std::env::var("DEP_VPPCOM_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
        println!("cargo:rustc-env=VLS_VPP_LIBDIR={libdir}");
    }
    if let Ok(version) = std::env::var("DEP_VPPCOM_VERSION") {
        println!("cargo:rustc-env=VLS_VPP_VERSION={version}");
    }
}
