//! Debian's mini-httpd (a server that forks a child per connection and
//! closes its copy at once) under LDP.

use super::*;

/// mini_httpd in one namespace serves a 100 kB file to HTTP/1.0 clients in
/// the other (4 at a time, 800 in all), both under the Rust layer, with a
/// VCL heap of 16 MB. The parent's close hands each connection over to its
/// child, which VPP (v26.06) completes by copying the FIFOs, right only
/// while they are in their first chunk; the child answers at once. A child
/// that wrote its answer before VPP made the copy crashed VPP (SIGSEGV in
/// `session_tx_fifo_peek_and_snd`, on the first request, with either
/// layer), and one that wrote after the copy but before its VCL took the
/// new FIFOs wrote into freed ones. mini_httpd answers with `sendfile`,
/// whose buffer LDP keeps in VCL's heap, which forked processes share:
/// each child left 100 kB there, and children aborted ("Out-of-memory")
/// as they started. A child also copied the parent's closed records (a
/// connection the parent kept as VPP's owner, see `kept::Kept`, leaves one
/// until VPP's cleanup notice) and left the copies there: each child lost
/// more than the one before (544 of 800 answers with only `sendfile`
/// mended). Every body must arrive whole
/// (within 20 s: mini_httpd's lingering close waits up to 5 s for the
/// client's close), and VPP must still answer at the end.
#[test]
fn ldp_mini_httpd_children_answer_while_handed_their_connection() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = "/usr/sbin/mini_httpd";
    need(&[server, "/usr/bin/python3"], "mini-httpd python3");
    let st = stack("mini-httpd", "mini-client");
    let (rust, vpp) = (&st.preloads.rust, &st.vpp);
    let www = vpp.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(www.join("blob"), &blob).unwrap();
    // The default heap (256 MB) would need thousands of answers.
    let conf = vpp.dir().join("mini-httpd-16m.conf");
    let text = std::fs::read_to_string(&st.srv_conf).unwrap();
    assert!(text.contains("vcl {"), "{text}");
    std::fs::write(&conf, text.replacen("vcl {", "vcl {\n  heapsize 16M", 1)).unwrap();
    let log = vpp.dir().join("mini_httpd.out");
    let mut cmd = Command::new(server);
    // -D: in the foreground (its process group ends with the test). As
    // root it switches to another user unless told to stay: its children
    // then could not reach VPP's app socket (see the README).
    cmd.args(["-D", "-h", &st.server_addr, "-p", "7601", "-d"])
        .arg(&www)
        .arg("-l")
        .arg(vpp.dir().join("access.log"));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "root"]);
    }
    let _server = ProcessGroup::spawn(
        under_ldp(&mut cmd, rust, &conf)
            .env("VLS_RS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(vpp.dir().join("mini_httpd.err")).unwrap()),
    )
    .expect("spawn mini_httpd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/http_get.py");
    let get = |n: &str, c: &str| {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script).args([&st.server_addr, "7601", "/blob", n, c]).arg(www.join("blob"));
        run_under_ldp(&mut cmd, rust, &st.cli_conf, Duration::from_secs(120))
    };
    // mini_httpd prints nothing when it is up: the first request is
    // retried for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get("1", "1").1.trim() != "whole" {
        assert!(std::time::Instant::now() < deadline, "mini_httpd never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = get("800", "4");
    let whole = out.lines().filter(|l| *l == "whole").count();
    eprintln!("{whole} of 800 bodies arrived whole");
    let server_log = || {
        let text = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", text(log.clone()), text(vpp.dir().join("mini_httpd.err")))
    };
    assert!(vpp.vppctl("show version").is_ok(), "VPP still answers:\n{}", vpp.log());
    assert!(ok && whole == 800, "every body arrived whole:\n{out}{err}\nserver:\n{}", server_log());
}
