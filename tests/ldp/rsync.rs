//! Debian's rsync daemon under LDP, with rsync clients (under LDP too).

use super::*;

/// The daemon forks a child per connection, which takes the connection
/// over from it (the parent closes its copy at once) and sends a module of
/// 21 files (12 kB to 5 MB, 6 MB in all) while waiting in `select`; four
/// clients at a time, three rounds: every copy is identical. With the C
/// layer every transfer failed or hung in a manual run (printed with
/// `--nocapture`: one client).
#[test]
fn ldp_rsync_daemon_serves_identical_copies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rsync = "/usr/bin/rsync";
    need(&[rsync], "rsync");
    let st = stack("rsyncd", "rsync");
    let dir = st.vpp.dir().join("rsync");
    let src = dir.join("module");
    std::fs::create_dir_all(&src).unwrap();
    let mut files: Vec<(String, Vec<u8>)> =
        (0..20u64).map(|i| (format!("f{i}"), vpp_harness::pattern(12_000 + i as usize * 7_919, i))).collect();
    files.push(("big".to_string(), vpp_harness::pattern(5_000_000, 20)));
    for (name, data) in &files {
        std::fs::write(src.join(name), data).unwrap();
    }
    let conf = dir.join("rsyncd.conf");
    let log = dir.join("rsyncd.log");
    std::fs::write(
        &conf,
        format!(
            "port = 8730\naddress = {}\nuse chroot = no\nlog file = {}\n[mod]\npath = {}\nread only = yes\n",
            st.server_addr,
            log.display(),
            src.display()
        ),
    )
    .unwrap();
    let url = format!("rsync://{}:8730/mod/", st.server_addr);
    let daemon = |preload: &str| {
        ProcessGroup::spawn(
            under_ldp(&mut Command::new(rsync), preload, &st.srv_conf)
                .args(["--daemon", "--no-detach", "--config"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("spawn the rsync daemon")
    };
    let fetch = |dest: &Path, limit: Duration| {
        let _ = std::fs::remove_dir_all(dest);
        let mut cmd = Command::new(rsync);
        cmd.arg("-a").arg(&url).arg(dest);
        run_under_ldp(&mut cmd, &st.preloads.rust, &st.cli_conf, limit)
    };
    let wait_listening = || {
        // The daemon logs nothing before its first client: try until a
        // listing answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = Command::new(rsync);
            cmd.arg(&url);
            if run_under_ldp(&mut cmd, &st.preloads.rust, &st.cli_conf, Duration::from_secs(5)).0 {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    {
        let _c = daemon(&st.preloads.c);
        let listed = wait_listening();
        let (ok, out, err) = fetch(&dir.join("c-copy"), Duration::from_secs(20));
        eprintln!("rsync daemon under the C layer: listing {listed}, fetch ok {ok}: {out}{err}");
    }

    let _rust = daemon(&st.preloads.rust);
    assert!(wait_listening(), "the daemon under the Rust layer did not answer a listing");
    for round in 0..3 {
        let copies: Vec<_> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..4)
                .map(|c| {
                    let dest = dir.join(format!("copy-{round}-{c}"));
                    let fetch = &fetch;
                    s.spawn(move || {
                        let result = fetch(&dest, Duration::from_secs(60));
                        (dest, result)
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().expect("client thread")).collect()
        });
        for (dest, (ok, out, err)) in copies {
            assert!(
                ok,
                "round {round}, {}: {out}{err}\n{}",
                dest.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            for (name, data) in &files {
                let got = std::fs::read(dest.join(name)).unwrap_or_default();
                assert!(
                    got == *data,
                    "round {round}, {}: {name} differs ({} of {} bytes)",
                    dest.display(),
                    got.len(),
                    data.len()
                );
            }
        }
    }
}
