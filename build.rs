//! Root build script: makes every target of this package (tests, examples,
//! the `libvls.so` cdylib) find the libvppcom that `vpp-sys` linked against,
//! by adding its directory as an rpath, and sets the cfg `vpp_release`
//! (e.g. `vpp_release = "26.06"`) to the release of that VPP, for code that
//! has to differ between releases. `vpp-sys` exports both through its
//! `links = "vppcom"` metadata, as `DEP_VPPCOM_LIBDIR` and
//! `DEP_VPPCOM_RELEASE`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_VPPCOM_LIBDIR");
    println!("cargo:rerun-if-env-changed=DEP_VPPCOM_RELEASE");
    println!("cargo::rustc-check-cfg=cfg(vpp_release, values(any()))");
    println!("cargo::rustc-check-cfg=cfg(loom)");
    if let Ok(libdir) = std::env::var("DEP_VPPCOM_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
        println!("cargo:rustc-env=VLS_VPP_LIBDIR={libdir}");
    }
    if let Ok(release) = std::env::var("DEP_VPPCOM_RELEASE") {
        println!("cargo:rustc-cfg=vpp_release=\"{release}\"");
    }
}
