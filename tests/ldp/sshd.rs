//! OpenSSH's sshd under LDP: a forking server whose per-connection
//! pre-auth child runs in a seccomp sandbox (a handful of system calls
//! allowed; most others kill it with SIGSYS), and whose session child
//! forks again and runs a shell.

use super::*;

/// The user the test logs in as: root as root (sshd then runs its
/// privilege separation), else the calling user.
fn user_name() -> String {
    // SAFETY: getuid has no preconditions; getpwuid returns null or a
    // valid record, read before any other call could change it.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        assert!(!pw.is_null(), "no passwd entry for this user");
        std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
    }
}

/// Runs `ssh-keygen` for a key pair without passphrase at `path`.
fn key_pair(path: &Path) {
    let out = Command::new("/usr/bin/ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
}

/// sshd (`-r`: no re-exec per connection, which would need `dup2` of a VPP
/// session onto descriptors 0 and 1, which LDP does not have) in one
/// namespace, OpenSSH's client in the other, both under the Rust layer:
/// - a command, whose output comes back;
/// - 2 MB up (the client's input) and 2 MB down, checked byte for byte;
/// - a pseudo-terminal (`-tt`);
/// - 12 sessions, 4 at a time.
///
/// The pre-auth child reads and writes the connection inside OpenSSH's
/// seccomp sandbox. It was killed (SIGSYS) by the layer's `preadv2` on
/// its queue's eventfd before a wait, then at its exit by VCL's goodbye to
/// VPP (`sendmsg`) and by the layer's `membarrier`; the client saw
/// "Connection reset". Each session's worker must also be gone from VPP
/// afterwards, and no VCL error may reach a client's terminal.
#[test]
fn ldp_sshd_serves_commands_copies_and_a_pty() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"], "openssh-server openssh-client");
    let st = stack("sshd", "ssh");
    let (rust, vpp) = (&st.preloads.rust, &st.vpp);
    let dir = vpp.dir().join("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    key_pair(&dir.join("host"));
    key_pair(&dir.join("client"));
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Where sshd's pre-auth child is shut in (systemd makes it when
        // the service starts; a container may have none).
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
    }
    let port = "7622";
    let conf = dir.join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress {addr}\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin yes\n\
             StrictModes no\nPidFile {d}/sshd.pid\n",
            addr = st.server_addr,
            d = dir.display()
        ),
    )
    .unwrap();
    let err_log = dir.join("sshd.err");
    let mut cmd = Command::new("/usr/sbin/sshd");
    cmd.args(["-D", "-r", "-e", "-f"]).arg(&conf);
    let _server = ProcessGroup::spawn(
        under_ldp(&mut cmd, rust, &st.srv_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_log).unwrap()),
    )
    .expect("spawn sshd");
    let server_log = || std::fs::read_to_string(&err_log).unwrap_or_default();
    wait_for_text("sshd did not listen", "Server listening", server_log);

    let user_at = format!("{}@{}", user_name(), st.server_addr);
    let ssh = |extra: &[&str], remote: &str, input: Stdio| {
        let mut cmd = Command::new("/usr/bin/ssh");
        cmd.arg("-i").arg(dir.join("client"));
        cmd.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ]);
        cmd.args(["-o", "LogLevel=error", "-p", port]).args(extra).arg(&user_at).arg(remote);
        let child = under_ldp(&mut cmd, rust, &st.cli_conf)
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        let out = wait_output_with_timeout(child, Duration::from_secs(60)).unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), out.stdout, text(&out.stderr))
    };
    let said = |what: &str, ok: bool, err: &str| {
        assert!(ok, "{what} failed: {err}\nsshd:\n{}", server_log());
        // LDP's refusals of IP_TOS / IPV6_TCLASS are the client's own
        // warnings; anything from VCL is not.
        for bad in ["sendmsg", "vcl", "Bad file descriptor"] {
            assert!(!err.contains(bad), "{what}: {err}");
        }
    };

    let (ok, out, err) = ssh(&[], "echo through-vpp", Stdio::null());
    said("a command", ok, &err);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "through-vpp");

    let blob: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let blob_path = dir.join("blob");
    std::fs::write(&blob_path, &blob).unwrap();
    let (ok, out, err) = ssh(&[], "cat", Stdio::from(std::fs::File::open(&blob_path).unwrap()));
    said("2 MB through cat", ok, &err);
    assert!(out == blob, "2 MB up and back: {} bytes came back, {} whole", out.len(), out == blob);
    let (ok, out, err) = ssh(&[], &format!("cat {}", blob_path.display()), Stdio::null());
    said("2 MB down", ok, &err);
    assert!(out == blob, "2 MB down: {} bytes came", out.len());

    let (ok, out, err) = ssh(&["-tt"], "tty", Stdio::null());
    said("a pseudo-terminal", ok, &err);
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/"), "tty said: {out}");

    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|t| {
                let ssh = &ssh;
                s.spawn(move || {
                    (0..3)
                        .map(|i| {
                            let (ok, out, err) = ssh(&[], &format!("echo s{t}-{i}"), Stdio::null());
                            (ok && String::from_utf8_lossy(&out).trim() == format!("s{t}-{i}"), err)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for r in runs {
            for (ok, err) in r.join().unwrap() {
                said("one of 12 sessions, 4 at a time", ok, &err);
            }
        }
    });
    assert!(!server_log().contains("terminated by signal"), "sshd:\n{}", server_log());

    // Every connection's pre-auth and session workers left VPP: the
    // listener's worker is the app's only one (`show app` lists one line
    // per worker under the app).
    let app = vpp.vppctl("show app").unwrap();
    let index = app
        .lines()
        .find(|l| l.contains("sshd"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sshd app in: {app}"))
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let workers = vpp.vppctl(&format!("show app {index}")).unwrap();
        let n = workers.lines().filter(|l| l.contains("wrk-index")).count();
        if n == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "workers left in VPP:\n{workers}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
