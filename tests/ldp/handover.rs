//! A forking server whose connection handlers' VCL and VPP worker indices
//! differ, under the Rust layer.

use super::*;

/// `tests/programs/fork_handover.py`: the server forks two idle children
/// and lets the second exit first, so the first connection handler it
/// forks has VCL worker 2 and VPP worker 1 (later ones may too); the parent closes its copy of
/// each accepted connection, which hands the connection over to the
/// handler. VCL answers VPP's hand-over request with the handler's VCL
/// index, which VPP reads as its own: without the layer's correction
/// (`vppsys_vcl_send_session_worker_update`) VPP gave the connection to
/// another worker (a PostgreSQL backend stalled 5 s, then read freed
/// FIFOs), and with only the earlier guard the parent kept every such
/// connection (slower: its handler polls the FIFOs). Checked: the
/// first handler's indices differ (the layer's log), every echo comes back,
/// and no connection stays with the parent.
#[test]
fn ldp_connection_handed_to_a_child_whose_worker_indices_differ() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("forker", "client");
    let (addr, port, n) = (&st.server_addr, "7590", "3");
    let Served { client_ok: ok, client_out: out, client_err: err, status, server_out: text } =
        serve_then_connect(&st, "fork_handover.py", &["serve", addr, port, n], &["client", addr, port, n]);
    assert!(
        ok && out.lines().filter(|l| *l == "echoed").count() == 3,
        "every connection echoed:\n{out}{err}\nserver:\n{text}"
    );
    assert!(status.is_some_and(|s| s.success()), "server ({status:?}):\n{text}");
    assert_eq!(text.matches("handler exit status: 0").count(), 3, "every handler ended well:\n{text}");
    // "forked child has its own VCL worker ... worker=W vpp_worker=V".
    let indices: Vec<(u32, u32)> = text
        .lines()
        .filter(|l| l.contains("forked child has its own VCL worker"))
        .filter_map(|l| Some((field(l, "worker=")?, field(l, "vpp_worker=")?)))
        .collect();
    // The first handler's always do; later ones' depend on whether the
    // previous handler was cleaned up before the next fork.
    assert!(
        indices.iter().any(|(w, v)| w != v),
        "the scenario gives the handlers worker indices that differ (VCL, VPP): {indices:?}\n{text}"
    );
    assert!(!text.contains("stays this process's in VPP"), "no connection stayed with the parent:\n{text}");
}

/// What [`serve_then_connect`] saw.
pub(super) struct Served {
    pub(super) client_ok: bool,
    pub(super) client_out: String,
    pub(super) client_err: String,
    /// The server's exit status (`None`: still running after 30 s).
    pub(super) status: Option<std::process::ExitStatus>,
    /// The server's standard output and error (its log at `info`).
    pub(super) server_out: String,
}

/// `tests/programs/<script>` as a server in the server namespace
/// (`server_args`, `VLS_RS_LOG=info`, in a process group of its own) and,
/// once it printed "listening", as its client in the client namespace
/// (`client_args`, at most 60 s), both under the Rust layer; then waits for
/// the server to end (at most 30 s).
pub(super) fn serve_then_connect(
    st: &Stack,
    script: &str,
    server_args: &[&str],
    client_args: &[&str],
) -> Served {
    let log = st.vpp.dir().join(Path::new(script).with_extension("out"));
    let envs = [("VLS_RS_LOG", "info")];
    let mut server = spawn_python(script, server_args, &st.preloads.rust, &st.srv_conf, &envs, &log);
    let served = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_text("the server did not listen", "listening", served);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs").join(script);
    let (client_ok, client_out, client_err) = run_under_ldp(
        Command::new("/usr/bin/python3").arg(&script).args(client_args),
        &st.preloads.rust,
        &st.cli_conf,
        Duration::from_secs(60),
    );
    let status = server.wait_for(Duration::from_secs(30)).unwrap();
    Served { client_ok, client_out, client_err, status, server_out: served() }
}

/// The number after ` name` in a `tracing` line.
fn field(line: &str, name: &str) -> Option<u32> {
    let at = line.find(&format!(" {name}"))? + 1 + name.len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `tests/programs/fork_poll_echo.py`: a forked child echoes a connection
/// its parent handed over to it, waiting for each message in `poll`. VCL's
/// poll reads VPP's request to take the connection but does not answer it
/// (its select and epoll wait do), so the child stayed a FIFO subscriber,
/// VPP told the parent of the client's messages, and the child woke only
/// when its wait's slice ended: 50 echoes took 5 s, each about 100 ms.
/// The layer now answers after each poll (`vppsys_answer_worker_updates`).
/// At most 10 of the 50 echoes may take 50 ms or more.
#[test]
fn ldp_forked_child_waiting_in_poll_is_woken_for_each_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("poll-forker", "poll-client");
    let (addr, port) = (&st.server_addr, "7595");
    let Served { client_ok: ok, client_out: out, client_err: err, status, server_out: text } =
        serve_then_connect(&st, "fork_poll_echo.py", &["serve", addr, port], &["client", addr, port]);
    assert!(ok, "client:\n{out}{err}\nserver:\n{text}");
    assert!(status.is_some_and(|s| s.success()), "server ({status:?}):\n{text}");
    assert!(text.contains("child exit status: 0"), "{text}");
    let slow: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("slow ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in the client's output:\n{out}{err}"));
    eprintln!("forked child echoing in poll: {slow} of 50 echoes took 50 ms or more");
    assert!(slow <= 10, "{slow} of 50 echoes took 50 ms or more");
}

/// `tests/programs/fork_claim_race.py`: a forking server (one child per
/// connection, the parent closes its copy at once) whose children greet
/// the client, wait in epoll for its line, echo it and end with `_exit`
/// (Python's `os._exit`), the client sending each line right after the
/// greeting, while the child takes the connection over. A child that
/// ended with `_exit` right after it claimed the connection's events
/// (`fork_hooks::Watched`) left that claim (an accepted reply) in VPP's
/// queue, and VPP, which handles the app's socket closing first, crashed
/// on it (about once in a hundred children; `libvls.so`'s `_exit` now
/// lets VPP read the queues first). Every connection must be echoed, and
/// VPP must still answer at the end.
#[test]
fn ldp_forked_handlers_that_answer_and_exit_at_once_leave_vpp_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("claim-forker", "claim-client");
    let n: usize = std::env::var("VLS_CLAIM_RACE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let (addr, port, n_arg) = (&st.server_addr, "7597", n.to_string());
    let Served { client_ok: ok, client_out: out, client_err: err, status, server_out: text } =
        serve_then_connect(
            &st,
            "fork_claim_race.py",
            &["serve", addr, port, &n_arg],
            &["client", addr, port, &n_arg],
        );
    let stalled: Vec<&str> = out.lines().filter(|l| l.starts_with("stalled")).collect();
    let echoed = out.lines().filter(|l| *l == "echoed").count();
    eprintln!("{echoed} of {n} connections echoed; stalled: {stalled:?}");
    assert!(ok && echoed == n, "every connection echoed:\n{out}{err}\nserver:\n{text}");
    assert!(status.is_some_and(|s| s.success()), "server ({status:?}):\n{text}");
    assert!(st.vpp.vppctl("show version").is_ok(), "VPP still answers:\n{}", st.vpp.log());
}

/// `tests/programs/fork_exit_at_once.py`: a forking server's child ends at
/// once (as vsftpd's does when it cannot `dup2` the connection), with
/// `_exit` and with `exit`, 20 connections each; the parent closes its
/// copy. The parent's close hands the connection to the child, which VPP
/// completes only once the child answers VPP's request to take it: a
/// child ending with `_exit` never does, VPP kept the connection on the
/// parent's worker, which had left it, and the peer waited for ever (19
/// of 20 with this layer, 20 of 20 with the C layer). Every connection
/// must close within 2 s.
#[test]
fn ldp_a_child_that_ends_at_once_leaves_no_connection_open() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("exit-at-once", "exit-at-once-client");
    for (how, port) in [("_exit", "7624"), ("exit", "7625")] {
        let addr = &st.server_addr;
        let Served { client_ok: ok, client_out: out, client_err: err, status, server_out: text } =
            serve_then_connect(
                &st,
                "fork_exit_at_once.py",
                &["serve", addr, port, "20", how],
                &["client", addr, port, "20"],
            );
        assert!(ok, "client ({how}):\n{out}{err}\nserver:\n{text}");
        assert_eq!(out.trim(), "hung 0 of 20", "children ending with {how}:\n{err}\nserver:\n{text}");
        assert!(status.is_some_and(|s| s.success()), "server ({how}, {status:?}):\n{text}");
    }
}
