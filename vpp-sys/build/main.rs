//! Build script of `vpp-sys`: discover VPP, check that its install and
//! source tree are of one release, generate bindings, compile the shim, link
//! libvppcom, and export `prefix`/`include`/`libdir`/`src`/`version`/`release`
//! metadata (`DEP_VPPCOM_*`) for dependants' build scripts. The prefix is
//! also compiled in (`VPP_PREFIX` in the crate), and the release is a cfg
//! of this crate (`vpp_release = "26.06"`), a number for the shim
//! (`-DVPPSYS_RELEASE=2606`) and a set of cfgs
//! (`vpp_release_at_least_26_02`, …; see `release.rs`).

mod find;
mod release;
mod run_bindgen;

use std::env;
use std::path::PathBuf;

/// Ends the build with one readable message (no panic backtrace).
fn fail(msg: &str) -> ! {
    eprintln!("\n{msg}\n");
    std::process::exit(1);
}

fn main() {
    for var in ["VPP_PREFIX", "VPP_SRC_DIR", "PKG_CONFIG_PATH", ALLOW_MISMATCH_ENV] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/fifo_records.c");

    let vpp = find::find().unwrap_or_else(|msg| fail(&msg));
    let release = check_versions(&vpp).unwrap_or_else(|| {
        let text = std::fs::read_to_string(vpp.src.join("vcl/vcl_private.h")).unwrap_or_default();
        let guess = release::guess_from_header(&text);
        println!(
            "cargo:warning=vpp-sys: release unknown; {} looks like release {guess} or a later one with the same internal VCL headers",
            vpp.src.join("vcl/vcl_private.h").display()
        );
        guess.to_string()
    });
    let release_number = release::number(&release).unwrap_or_else(|| {
        fail(&format!("vpp-sys: cannot read the VPP release {release:?} (expected YY.MM, e.g. 26.06)"))
    });
    match release::check(&release, release_number) {
        Ok(None) => {}
        Ok(Some(warning)) => println!("cargo:warning={warning}"),
        Err(msg) => fail(&msg),
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let wrappers_c = run_bindgen::run(&vpp, &out_dir);

    cc::Build::new()
        .file("src/shim.c")
        .file("src/fifo_records.c")
        .file(&wrappers_c)
        .include(&vpp.include)
        .include(&vpp.src)
        // The wrappers file includes the headers by absolute path.
        .include(env::var("CARGO_MANIFEST_DIR").unwrap())
        .define("VPPSYS_RELEASE", release_number.to_string().as_str())
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
    println!("cargo:rustc-env=VPPSYS_SRC={}", vpp.src.display());
    println!("cargo:rustc-env=VPPSYS_RELEASE={release}");
    println!("cargo::rustc-check-cfg=cfg(vpp_release, values(any()))");
    println!("cargo:rustc-cfg=vpp_release=\"{release}\"");
    println!("cargo:release={release}");
    println!("cargo:release_number={release_number}");
    for cfg in release::all_cfgs() {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let cfgs = release::cfgs_for(release_number);
    for cfg in &cfgs {
        println!("cargo:rustc-cfg={cfg}");
    }
    // Dependants set the same cfgs (DEP_VPPCOM_CFGS) and declare every
    // possible one (DEP_VPPCOM_ALL_CFGS).
    println!("cargo:cfgs={}", cfgs.join(","));
    println!("cargo:all_cfgs={}", release::all_cfgs().join(","));

    println!("cargo:prefix={}", vpp.prefix.display());
    println!("cargo:include={}", vpp.include.display());
    println!("cargo:libdir={}", vpp.libdir.display());
    println!("cargo:src={}", vpp.src.display());
    println!("cargo:version={}", vpp.version);
}

/// Set to `1` to build with an installed VPP and a source tree of
/// different releases (a warning instead of an error).
const ALLOW_MISMATCH_ENV: &str = "VPP_ALLOW_VERSION_MISMATCH";

/// The internal headers must come from the same release as the library:
/// the layout of `vcl_worker_t`/`vcl_session_t` changes between releases.
/// A mismatch ends the build unless [`ALLOW_MISMATCH_ENV`] is `1`. Returns
/// the installed release (e.g. `26.06`) when its version is known.
fn check_versions(vpp: &find::Vpp) -> Option<String> {
    let installed = (vpp.version != "unknown").then(|| find::release_of(&vpp.version));
    let Some(installed) = installed else {
        println!(
            "cargo:warning=vpp-sys: cannot tell the version of the installed VPP at {} (no VPP_BUILD_VER in {}); make sure VPP_SRC_DIR {} is of the same release",
            vpp.prefix.display(),
            vpp.include.join("vpp/app/version.h").display(),
            vpp.src.display()
        );
        return None;
    };
    let Some(src_version) = find::source_version(&vpp.src) else {
        println!(
            "cargo:warning=vpp-sys: cannot tell the version of the VPP source tree {} (no scripts/.version, not a git checkout); make sure it matches the installed VPP {}",
            vpp.src.display(),
            vpp.version
        );
        return Some(installed);
    };
    let source = find::release_of(&src_version);
    if installed == source {
        return Some(installed);
    }
    if std::env::var(ALLOW_MISMATCH_ENV).as_deref() == Ok("1") {
        for line in [
            "=====================================================================".to_string(),
            format!(
                "vpp-sys: VERSION MISMATCH: installed VPP is {} but VPP_SRC_DIR is {}",
                vpp.version, src_version
            ),
            "vpp-sys: internal VCL structures may differ; the bindings can be WRONG.".to_string(),
            format!("vpp-sys: building anyway because {ALLOW_MISMATCH_ENV}=1."),
            "=====================================================================".to_string(),
        ] {
            println!("cargo:warning={line}");
        }
        return Some(installed);
    }
    fail(&format!(
        "vpp-sys: VPP version mismatch: the installed VPP and the VPP source tree are of different releases.\n\
         \x20 installed VPP (headers and libvppcom): {version} (release {installed}), at {prefix}\n\
         \x20   (from {version_h})\n\
         \x20 VPP source tree (VPP_SRC_DIR): {src_version} (release {source}), at {src}\n\
         The bindings use VCL's internal structures (vcl/vcl_private.h from the source tree),\n\
         whose layout changes between releases: built from one release and linked against\n\
         another's libvppcom, they would be wrong.\n\
         Fix: set VPP_SRC_DIR to a source tree of release {installed} (e.g. a checkout of tag\n\
         v{installed}), or VPP_PREFIX to an install of release {source}.\n\
         To build anyway, knowing the bindings may be wrong: {ALLOW_MISMATCH_ENV}=1.",
        version = vpp.version,
        prefix = vpp.prefix.display(),
        version_h = vpp.include.join("vpp/app/version.h").display(),
        src = vpp.src.display(),
    ))
}
