//! Build script of `vpp-sys`: discover VPP, generate bindings, compile the
//! shim, link libvppcom, and export `prefix`/`include`/`libdir`/`src`/`version`
//! metadata (`DEP_VPPCOM_*`) for dependants' build scripts. The prefix is
//! also compiled in (`VPP_PREFIX` in the crate).

mod find;
mod run_bindgen;

use std::env;
use std::path::PathBuf;

/// Ends the build with one readable message (no panic backtrace).
fn fail(msg: &str) -> ! {
    eprintln!("\n{msg}\n");
    std::process::exit(1);
}

fn main() {
    for var in ["VPP_PREFIX", "VPP_SRC_DIR", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=src/shim.c");

    let vpp = find::find().unwrap_or_else(|msg| fail(&msg));
    check_versions(&vpp);

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let wrappers_c = run_bindgen::run(&vpp, &out_dir);

    cc::Build::new()
        .file("src/shim.c")
        .file(&wrappers_c)
        .include(&vpp.include)
        .include(&vpp.src)
        // The wrappers file includes the headers by absolute path.
        .include(env::var("CARGO_MANIFEST_DIR").unwrap())
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unused-function")
        .warnings(false)
        .compile("vppsys_shim");

    println!("cargo:rustc-link-search=native={}", vpp.libdir.display());
    println!("cargo:rustc-link-lib=dylib=vppcom");
    println!("cargo:rustc-link-lib=dylib=vppinfra");
    println!("cargo:rustc-link-lib=dylib=svm");
    // Only this package's own targets see this rpath; dependants read
    // DEP_VPPCOM_LIBDIR and add their own (see the root build.rs).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", vpp.libdir.display());

    println!("cargo:rustc-env=VPPSYS_PREFIX={}", vpp.prefix.display());

    println!("cargo:prefix={}", vpp.prefix.display());
    println!("cargo:include={}", vpp.include.display());
    println!("cargo:libdir={}", vpp.libdir.display());
    println!("cargo:src={}", vpp.src.display());
    println!("cargo:version={}", vpp.version);
}

/// The internal headers must come from the same release as the library:
/// the layout of `vcl_worker_t`/`vcl_session_t` changes between releases.
fn check_versions(vpp: &find::Vpp) {
    let Some(src_version) = find::source_version(&vpp.src) else {
        println!(
            "cargo:warning=vpp-sys: cannot tell the version of the VPP source tree {} (no scripts/.version, not a git checkout); make sure it matches the installed VPP {}",
            vpp.src.display(),
            vpp.version
        );
        return;
    };
    let (installed, source) = (find::release_of(&vpp.version), find::release_of(&src_version));
    if installed != source {
        for line in [
            "=====================================================================".to_string(),
            format!(
                "vpp-sys: VERSION MISMATCH: installed VPP is {} but VPP_SRC_DIR is {}",
                vpp.version, src_version
            ),
            "vpp-sys: internal VCL structures may differ; the bindings can be WRONG.".to_string(),
            "=====================================================================".to_string(),
        ] {
            println!("cargo:warning={line}");
        }
    }
}
