//! Generates `bindings.rs` (and the C wrappers of VCL's `static inline`
//! helpers) from the installed `vppcom.h` and the source tree's `vcl_private.h`.

use std::path::{Path, PathBuf};

use crate::find::Vpp;

/// The public API, the part of the internal VCL API the locking layer uses,
/// and the types and globals those need. Keeping this list short keeps the
/// generated code compilable (see the README of this crate).
const FUNCTIONS: &[&str] = &[
    "vppcom_.*",
    // worker registry
    "vcl_get_worker_index",
    "vcl_set_worker_index",
    "vcl_worker_get",
    "vcl_worker_get_if_valid",
    "vcl_worker_get_current",
    "vcl_n_workers",
    "vcl_worker_alloc_and_init",
    "vcl_worker_cleanup",
    "vcl_worker_register_with_vpp",
    "vcl_worker_detach_sessions",
    "vcl_worker_set_wait_mq_fns",
    // sessions
    "vcl_session_alloc",
    "vcl_session_free",
    "vcl_session_get",
    "vcl_session_get_w_handle",
    "vcl_session_handle",
    "vcl_session_handle_from_index",
    "vcl_session_handle_from_wrk_session_index",
    "vcl_session_handle_parse",
    "vcl_session_is_.*",
    "vcl_session_cleanup",
    "vcl_session_read_ready",
    "vcl_session_write_ready",
    "vcl_session_share_fifos",
    "vcl_session_has_attr",
    "vcl_session_set_attr",
    "vcl_session_clear_attr",
    "vcl_session_table_add_listener",
    "vcl_session_table_del_listener",
    "vcl_session_table_add_vpp_handle",
    "vcl_session_table_del_vpp_handle",
    "vcl_session_table_lookup_listener",
    // messages to VPP and to other workers
    "vcl_send_session_worker_update",
    "vcl_send_session_listen",
    "vcl_send_session_unlisten",
    "vcl_send_worker_rpc",
    "vcl_flush_mq_events",
];

const TYPES: &[&str] = &[
    "vppcom_.*",
    "vcl_worker_t",
    "vcl_session_t",
    "vppcom_main_t",
    "vcl_session_state_t",
    "vcl_session_flags_t",
    "vcl_session_attr_t",
    "vcl_rpc_fn_t",
    "vcl_worker_wait_mq_fn",
    "vcl_poll_t",
    "vcl_si_set",
];

/// Types bindgen lays out wrongly; `src/lib.rs` declares them by hand.
const BLOCKED: &[&str] = &["ip6_address_t", "session_event_t"];

pub fn run(vpp: &Vpp, out_dir: &Path) -> PathBuf {
    let wrappers = out_dir.join("vcl_static_wrappers");
    let mut builder = bindgen::Builder::default()
        .header(vpp.include.join("vcl/vppcom.h").to_string_lossy())
        .header(vpp.src.join("vcl/vcl_private.h").to_string_lossy())
        .clang_arg(format!("-I{}", vpp.include.display()))
        .clang_arg(format!("-I{}", vpp.src.display()))
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .allowlist_var("vcm")
        .allowlist_var("VPPCOM_.*")
        .allowlist_var("VCL_.*")
        .layout_tests(true)
        .derive_default(true)
        .prepend_enum_name(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for t in BLOCKED {
        builder = builder.blocklist_type(t);
    }
    let bindings = match builder.generate() {
        Ok(b) => b,
        Err(e) => crate::fail(&format!(
            "vpp-sys: bindgen could not parse vppcom.h/vcl_private.h ({e}).\n\
             include: {}\nsource: {}\n\
             bindgen needs libclang (Debian: libclang-dev). Check that VPP_SRC_DIR matches VPP_PREFIX.",
            vpp.include.display(),
            vpp.src.display()
        )),
    };
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("writing bindings.rs into OUT_DIR");
    wrappers.with_extension("c")
}
