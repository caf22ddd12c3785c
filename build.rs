//! Root build script: makes every target of this package (tests, examples,
//! the `libvls.so` cdylib) find the libvppcom that `vpp-sys` linked against,
//! by adding its directory as an rpath, and sets the cfgs of the release of
//! that VPP, for code that has to differ between releases: `vpp_release`
//! (e.g. `vpp_release = "26.06"`) and one `vpp_release_at_least_YY_MM` per
//! known release it is or follows (`vpp-sys/build/release.rs`). `vpp-sys`
//! exports them through its `links = "vppcom"` metadata, as
//! `DEP_VPPCOM_LIBDIR`, `DEP_VPPCOM_RELEASE` and `DEP_VPPCOM_CFGS`.
//!
//! It also gives the `libvls.so` cdylib, and only it, the libc names of the
//! LDP corrections (`src/capi/ldp_wait.rs`, `ldp_poll.rs`, `ldp_select.rs`,
//! `ldp_close.rs`, `ldp_exec.rs`, `ldp_exit.rs`, `ldp_mmsg.rs`, `ldp_sendfile.rs`, `ldp_sockopt.rs`): `epoll_wait`, `epoll_pwait`, `poll`, `ppoll`, `select`,
//! `pselect`, `close`, `close_range`, `closefrom`, `sendmmsg`, `sendfile`, `sendfile64`, `setsockopt`, the `exec` functions, `_exit` and `_Exit` as
//! aliases of `vls_preload_epoll_wait` and the like, exported by a version
//! script of their own. The variadic `exec` functions are C
//! (`src/capi/exec_variadic.c`, compiled here with the `vpp` feature).
//! Tests, examples and Rust programs that link the crate never define them.
//! One alias is VCL's name, not libc's: `vcl_send_session_worker_update`,
//! for vpp-sys' correction of the worker index VCL sends VPP when it takes
//! a connection (`vppsys_vcl_send_session_worker_update` in its shim).

// The list of known releases and the cfg names are vpp-sys' (one list for
// both crates); only some of its functions are needed here.
#[allow(dead_code)]
#[path = "vpp-sys/build/release.rs"]
mod release;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_VPPCOM_LIBDIR");
    println!("cargo:rerun-if-env-changed=DEP_VPPCOM_RELEASE");
    println!("cargo:rerun-if-env-changed=DEP_VPPCOM_CFGS");
    println!("cargo::rustc-check-cfg=cfg(vpp_release, values(any()))");
    println!("cargo::rustc-check-cfg=cfg(loom)");
    for cfg in release::all_cfgs() {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    preload_aliases();
    if let Ok(libdir) = std::env::var("DEP_VPPCOM_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
        println!("cargo:rustc-env=VLS_VPP_LIBDIR={libdir}");
    }
    if let Ok(release) = std::env::var("DEP_VPPCOM_RELEASE") {
        println!("cargo:rustc-cfg=vpp_release=\"{release}\"");
    }
    if let Ok(cfgs) = std::env::var("DEP_VPPCOM_CFGS") {
        for cfg in cfgs.split(',').filter(|c| !c.is_empty()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}

/// The libc names `libvls.so` answers to in front of LDP, as aliases that
/// only the cdylib's link gets.
fn preload_aliases() {
    // The functions are part of the C ABI, built with the `vpp` feature.
    if std::env::var_os("CARGO_FEATURE_VPP").is_none() {
        return;
    }
    const ALIASES: [(&str, &str); 29] = [
        ("epoll_wait", "vls_preload_epoll_wait"),
        ("epoll_pwait", "vls_preload_epoll_pwait"),
        ("poll", "vls_preload_poll"),
        ("ppoll", "vls_preload_ppoll"),
        ("select", "vls_preload_select"),
        ("pselect", "vls_preload_pselect"),
        ("close", "vls_preload_close"),
        ("close_range", "vls_preload_close_range"),
        ("closefrom", "vls_preload_closefrom"),
        ("sendmmsg", "vls_preload_sendmmsg"),
        ("sendfile", "vls_preload_sendfile"),
        ("sendfile64", "vls_preload_sendfile"),
        ("setsockopt", "vls_preload_setsockopt"),
        ("execve", "vls_preload_execve"),
        ("execv", "vls_preload_execv"),
        ("execvp", "vls_preload_execvp"),
        ("execvpe", "vls_preload_execvpe"),
        ("fexecve", "vls_preload_fexecve"),
        ("execl", "vls_preload_execl"),
        ("execlp", "vls_preload_execlp"),
        ("execle", "vls_preload_execle"),
        ("_exit", "vls_preload__exit"),
        ("_Exit", "vls_preload__Exit"),
        // Not libc's: VCL's, called through VCL's PLT (vpp-sys' shim.c).
        ("vcl_send_session_worker_update", "vppsys_vcl_send_session_worker_update"),
        // libsvm's, called through VCL's PLT (vpp-sys' fifo_records.c).
        ("fifo_segment_alloc_fifo_w_offset", "vppsys_fifo_segment_alloc_fifo_w_offset"),
        ("fifo_segment_duplicate_fifo", "vppsys_fifo_segment_duplicate_fifo"),
        ("fifo_segment_free_client_fifo", "vppsys_fifo_segment_free_client_fifo"),
        ("svm_fifo_add_subscriber", "vppsys_svm_fifo_add_subscriber"),
        ("svm_fifo_del_subscriber", "vppsys_svm_fifo_del_subscriber"),
    ];
    // The variadic exec functions are C (Rust cannot define one).
    println!("cargo:rerun-if-changed=src/capi/exec_variadic.c");
    println!("cargo:rerun-if-changed=src/capi/close_caller.c");
    cc::Build::new()
        .file("src/capi/exec_variadic.c")
        .file("src/capi/close_caller.c")
        .warnings(true)
        .compile("vls_exec_variadic");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let map = out.join("preload-aliases.map");
    let names: String = ALIASES.iter().map(|(alias, _)| format!("{alias}; ")).collect();
    std::fs::write(&map, format!("{{ global: {names}}};\n")).expect("write the alias version script");
    for (alias, target) in ALIASES {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--defsym={alias}={target}");
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
}
