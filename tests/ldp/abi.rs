//! The exported ABI: every function of `vcl_locked.h` is in `libvls.so`,
//! and only the preloaded library answers `epoll_wait`.

use super::*;
/// The prototypes of `vcl_locked.h` that `src/capi/mod.rs` implements
/// (parameter names dropped, spacing normalised as [`prototypes`] does).
/// The same in every supported release (25.10 to 26.10).
const IMPLEMENTED: &[&str] = &[
    "vls_handle_t vls_create(uint8_t,uint8_t)",
    "int vls_shutdown(vls_handle_t,int)",
    "int vls_close(vls_handle_t)",
    "int vls_bind(vls_handle_t,vppcom_endpt_t *)",
    "int vls_listen(vls_handle_t,int)",
    "int vls_connect(vls_handle_t,vppcom_endpt_t *)",
    "vls_handle_t vls_accept(vls_handle_t,vppcom_endpt_t *,int)",
    "ssize_t vls_read(vls_handle_t,void *,size_t)",
    "ssize_t vls_recvfrom(vls_handle_t,void *,uint32_t,int,vppcom_endpt_t *)",
    "int vls_write(vls_handle_t,void *,size_t)",
    "int vls_write_msg(vls_handle_t,void *,size_t)",
    "int vls_sendto(vls_handle_t,void *,int,int,vppcom_endpt_t *)",
    "int vls_attr(vls_handle_t,uint32_t,void *,uint32_t *)",
    "vls_handle_t vls_epoll_create(void)",
    "int vls_epoll_ctl(vls_handle_t,int,vls_handle_t,struct epoll_event *)",
    "int vls_epoll_wait(vls_handle_t,struct epoll_event *,int,double)",
    "int vls_select(int,vcl_si_set *,vcl_si_set *,vcl_si_set *,double)",
    "int vls_poll(vcl_poll_t *,uint32_t,double)",
    "vcl_session_handle_t vlsh_to_sh(vls_handle_t)",
    "void vlsh_to_session_and_worker_index(vls_handle_t,uint32_t *,uint32_t *)",
    "vls_handle_t vls_session_index_to_vlsh(uint32_t)",
    "int vls_app_create(char *)",
    "unsigned char vls_use_eventfd(void)",
    "unsigned char vls_mt_wrk_supported(void)",
    "int vls_set_libc_epfd(vls_handle_t,int)",
    "int vls_get_libc_epfd(vls_handle_t)",
    "void vls_set_epoll_fns(vls_epoll_fns_t)",
    "void vls_register_vcl_worker(void)",
];

/// C tokens of `s`: identifiers/numbers, and single punctuation characters.
fn c_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Joins C type tokens: one space between words, `*` after a space.
fn join_type(tokens: &[String]) -> String {
    tokens.join(" ").replace("* *", "**")
}

/// The `vls_*`/`vlsh_*` function declarations of a C header, as
/// (name, normalised prototype without parameter names).
fn prototypes(header: &str) -> Vec<(String, String)> {
    // Comments and preprocessor lines go first.
    let mut text = String::new();
    let mut rest = header;
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    text.push_str(rest);
    let text: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");

    let mut out = Vec::new();
    for stmt in text.split([';', '{', '}']) {
        let t = c_tokens(stmt);
        // `ret name ( params )` with a vls_/vlsh_ name right before the '('.
        let Some(open) = t.iter().position(|x| x == "(") else { continue };
        if open == 0 || t.last().map(String::as_str) != Some(")") || t.iter().any(|x| x == "typedef") {
            continue;
        }
        let name = &t[open - 1];
        if !(name.starts_with("vls_") || name.starts_with("vlsh_")) {
            continue;
        }
        let params: Vec<String> = t[open + 1..t.len() - 1]
            .split(|x| x == ",")
            .map(|p| {
                // Drop a trailing parameter name (a word after a type).
                let keep = match p {
                    [.., prev, last]
                        if last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && prev != "struct" =>
                    {
                        &p[..p.len() - 1]
                    }
                    _ => p,
                };
                join_type(keep)
            })
            .collect();
        out.push((name.clone(), format!("{} {}({})", join_type(&t[..open - 1]), name, params.join(","))));
    }
    out
}

#[test]
fn prototypes_of_a_header_are_read_without_parameter_names() {
    let h = "/* c */\n#include <x.h>\nint vls_a (vls_handle_t vlsh, struct epoll_event *ev);\n\
             typedef int (*vls_f) (int);\nvoid vlsh_b (uint32_t *a,\n uint32_t * b);\nint other (void);\n";
    assert_eq!(
        prototypes(h),
        vec![
            ("vls_a".to_string(), "int vls_a(vls_handle_t,struct epoll_event *)".to_string()),
            ("vlsh_b".to_string(), "void vlsh_b(uint32_t *,uint32_t *)".to_string()),
        ]
    );
}

/// Drop-in check: every function the linked release's `vcl_locked.h`
/// declares is exported by `libvls.so`, with the prototype the C ABI
/// implements.
#[test]
fn libvls_exports_every_function_of_vcl_locked_h() {
    let header_path = Path::new(vls::ffi::VPP_SRC_DIR).join("vcl/vcl_locked.h");
    let header = std::fs::read_to_string(&header_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", header_path.display()));
    let declared = prototypes(&header);
    assert!(
        declared.len() >= 20,
        "only {} vls_ functions found in {}",
        declared.len(),
        header_path.display()
    );

    let so = libvls();
    let nm = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().expect("run nm (binutils)");
    assert!(nm.status.success(), "nm -D {}: {}", so.display(), String::from_utf8_lossy(&nm.stderr));
    let nm = String::from_utf8_lossy(&nm.stdout);
    let exported: std::collections::HashSet<&str> = nm
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("T"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();

    let missing: Vec<&str> =
        declared.iter().map(|(n, _)| n.as_str()).filter(|n| !exported.contains(n)).collect();
    let changed: Vec<&str> =
        declared.iter().map(|(_, p)| p.as_str()).filter(|p| !IMPLEMENTED.contains(p)).collect();
    assert!(
        missing.is_empty() && changed.is_empty(),
        "VPP {} ({}):\n  declared but not exported by {}: {missing:?}\n  \
         prototypes the C ABI does not implement (new or changed): {changed:?}",
        vls::ffi::VPP_RELEASE,
        header_path.display(),
        so.display()
    );
}

/// The wait corrections answer to `epoll_wait`/`epoll_pwait` in the
/// preloaded `libvls.so` only. A Rust program that links the crate (this
/// test, which also links libvppcom) keeps libc's: VCL's own
/// `vcl_epoll_wait` and tokio's reactor bind to whatever `epoll_wait` the
/// program exports, and must get the kernel's.
#[test]
fn only_the_preloaded_library_answers_to_epoll_wait() {
    for name in ["epoll_wait", "epoll_pwait"] {
        let c_name = std::ffi::CString::new(name).unwrap();
        // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the program.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c_name.as_ptr()) };
        assert!(!sym.is_null(), "{name} not found");
        // SAFETY: `info` is written by dladdr for an address it knows.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: `sym` is a symbol address, `info` a valid out-pointer.
        assert_ne!(unsafe { libc::dladdr(sym, &mut info) }, 0, "{name}: dladdr");
        // SAFETY: dladdr set `dli_fname` to a NUL-terminated path.
        let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
        assert!(file.contains("libc.so"), "this program resolves {name} to {file}, not to libc");
    }
    let so = libvls();
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().expect("run nm (binutils)");
    assert!(out.status.success(), "nm -D {}", so.display());
    let table = String::from_utf8_lossy(&out.stdout);
    for name in ["epoll_wait", "epoll_pwait", "vls_epoll_wait"] {
        assert!(
            table.lines().any(|l| l.split_whitespace().last() == Some(name)),
            "{} does not export {name}",
            so.display()
        );
    }
}

/// The preloaded `libvls.so` answers, under libsvm's names, to the calls
/// VCL makes to allocate, copy and free FIFO records and to change FIFOs'
/// subscriber lists, which forked processes share (vpp-sys'
/// `fifo_records.c`): each name it exports is its wrapper's address.
#[test]
fn libvls_answers_for_the_fifo_record_calls_of_related_processes() {
    let so = libvls();
    let out = Command::new("nm").arg(&so).output().expect("run nm (binutils)");
    assert!(out.status.success(), "nm {}: {}", so.display(), String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let address = |name: &str| {
        table.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            let (addr, kind, sym) = (it.next()?, it.next()?, it.next()?);
            (sym == name && kind.eq_ignore_ascii_case("t")).then(|| addr.to_string())
        })
    };
    for name in [
        "fifo_segment_alloc_fifo_w_offset",
        "fifo_segment_duplicate_fifo",
        "fifo_segment_free_client_fifo",
        "svm_fifo_add_subscriber",
        "svm_fifo_del_subscriber",
    ] {
        let exported = address(name).unwrap_or_else(|| panic!("{} does not define {name}", so.display()));
        let wrapper = address(&format!("vppsys_{name}")).unwrap_or_else(|| panic!("no vppsys_{name}"));
        assert_eq!(exported, wrapper, "{name} is not the wrapper's address");
    }
}
