//! Unmodified programs under LDP: the `LD_PRELOAD` values ([`Preloads`]),
//! a process group that never outlives its owner ([`ProcessGroup`]), nginx
//! serving a static file ([`Nginx`]) and wrk measuring it ([`Wrk`]).
//!
//! VPP's `libvcl_ldpreload.so` takes the place of libc's socket, epoll and
//! poll calls in a program that knows nothing of VPP. It goes through VCL's
//! locked-sessions layer (the `vls_*` functions of `vcl_locked.h`), which
//! libvppcom has built in (the C layer); a library exporting those functions
//! preloaded before it — vls-rs' `libvls.so` — takes that layer's place.

use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::child::die_with_parent;
use crate::{wait_output_with_timeout, VclConf, VppInstall, VppInstance};

/// The file name of VPP's LDP library, in its install's library directory.
pub const VCL_LDPRELOAD: &str = "libvcl_ldpreload.so";

/// The two `LD_PRELOAD` values that run a program under LDP, one per
/// locked-sessions layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preloads {
    /// `<libdir>/libvcl_ldpreload.so` alone: LDP over libvppcom's own (C)
    /// layer.
    pub c: String,
    /// `<layer>:<libdir>/libvcl_ldpreload.so`: LDP over the layer preloaded
    /// first (vls-rs' `libvls.so`), in place of the C one.
    pub rust: String,
}

impl Preloads {
    /// The values for `install`'s LDP library and the layer library
    /// `layer`; an error unless both files exist.
    pub fn new(install: &VppInstall, layer: &Path) -> io::Result<Self> {
        let ldp = vcl_ldpreload(install)?;
        if !layer.is_file() {
            return Err(not_found(format!("{} does not exist", layer.display())));
        }
        Ok(Preloads { c: ldp.display().to_string(), rust: format!("{}:{}", layer.display(), ldp.display()) })
    }
}

/// `<libdir>/libvcl_ldpreload.so` of `install`; an error unless it exists.
pub fn vcl_ldpreload(install: &VppInstall) -> io::Result<PathBuf> {
    let libdir = install
        .libdir()
        .ok_or_else(|| not_found(format!("no libvppcom.so under {}", install.prefix().display())))?;
    let ldp = libdir.join(VCL_LDPRELOAD);
    if !ldp.is_file() {
        return Err(not_found(format!("{} does not exist", ldp.display())));
    }
    Ok(ldp)
}

/// Sets `LD_PRELOAD=preload` and `VCL_CONFIG=vcl_config` on `cmd`.
pub fn under_ldp<'a>(cmd: &'a mut Command, preload: &str, vcl_config: &Path) -> &'a mut Command {
    cmd.env("LD_PRELOAD", preload).env("VCL_CONFIG", vcl_config)
}

/// Where the program `name` is: the first directory of `PATH` holding it,
/// else `/usr/local/sbin`, `/usr/sbin` or `/sbin` (daemons such as nginx are
/// installed there, often off a user's `PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn not_found(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, msg)
}

/// A program started in a process group of its own, with everything it
/// forks: the whole group is killed with SIGKILL (and the leader reaped)
/// on drop, also when a test panics, so no process it forked outlives its
/// owner.
///
/// The group does not get the terminal's signals (Ctrl-C), so the leader
/// also gets SIGTERM if the thread that spawned it ends first
/// ([`die_with_parent`]): keep the group on that thread.
#[derive(Debug)]
pub struct ProcessGroup(Child);

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        die_with_parent(cmd.process_group(0));
        Ok(ProcessGroup(cmd.spawn()?))
    }

    /// The leader's pid (also the group's id).
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The leader's exit status if it has exited (it is reaped then).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.0.try_wait()
    }

    /// Waits at most `timeout` for the leader to exit by itself: its exit
    /// status, `None` if it is still running (the rest of the group is left
    /// as it is).
    pub fn wait_for(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the leader has a file whose name ends in `name` mapped
    /// (`/proc/<pid>/maps`), e.g. a preloaded library; false once it has
    /// exited.
    pub fn has_mapped(&self, name: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{}/maps", self.id()))
            .is_ok_and(|maps| maps.lines().any(|l| l.trim_end().ends_with(name)))
    }

    /// Sends `signal` to the leader (e.g. SIGTERM, for a clean exit that
    /// runs its exit handlers) and waits for it at most `timeout`; then
    /// kills what is left of the group. Returns the leader's exit status,
    /// `None` if it had to be killed.
    pub fn stop(mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.0.try_wait() {
            return Some(status);
        }
        // SAFETY: signals the leader this value owns; it is not reaped yet,
        // so its pid has not been reused.
        unsafe { libc::kill(self.id() as i32, signal) };
        let deadline = Instant::now() + timeout;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: signals the group this value started (its pgid is the
        // leader's pid, which stays reserved while the group has members
        // or the leader is not reaped).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// nginx serving one static file (`index.html`) over HTTP, started in a
/// process group of its own ([`Nginx::start`]).
#[derive(Debug, Clone)]
pub struct Nginx {
    /// The nginx binary ([`find_program`]`("nginx")`, else
    /// `/usr/sbin/nginx`).
    pub program: PathBuf,
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// nginx's process directives ([`Nginx::ONE_PROCESS`] by default).
    pub processes: String,
    /// The `http` block's logging directives (`access_log off;` by default).
    pub logging: String,
    /// The size of `index.html` in bytes (4096 by default).
    pub file_size: usize,
    /// What every request is answered with instead of the file: `Some(body)`
    /// answers `200` with `body` (nginx's `return`, no file read); `None`
    /// (the default) serves `www/`.
    pub answer: Option<String>,
}

impl Nginx {
    /// One process serving everything: no master, one worker.
    pub const ONE_PROCESS: &'static str = "master_process off;\nworker_processes 1;";

    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Nginx {
            program: find_program("nginx").unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx")),
            listen,
            processes: Self::ONE_PROCESS.into(),
            logging: "access_log off;".into(),
            file_size: 4096,
            answer: None,
        }
    }

    /// The URL of the file it serves (any path has the `answer`, if set).
    pub fn url(&self) -> String {
        format!("http://{}/index.html", self.listen)
    }

    /// `nginx.conf` for a server whose files (pid, logs, temp paths, `www/`)
    /// are in `dir`: in the foreground, epoll, keep-alive without limit.
    pub fn config(&self, dir: &Path) -> String {
        let (d, processes, logging) = (dir.display(), &self.processes, &self.logging);
        let location = match &self.answer {
            Some(body) => format!("return 200 \"{}\";", body.replace('\\', "\\\\").replace('"', "\\\"")),
            None => format!("root {d}/www;"),
        };
        format!(
            "daemon off;\n{processes}\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ use epoll; worker_connections 1024; }}\n\
             http {{\n  {logging}\n  keepalive_requests 1000000;\n  client_body_temp_path {d}/cbt;\n  \
             proxy_temp_path {d}/pt;\n  fastcgi_temp_path {d}/ft;\n  uwsgi_temp_path {d}/ut;\n  scgi_temp_path {d}/st;\n  \
             server {{ listen {}; location / {{ {location} }} }}\n}}\n",
            self.listen
        )
    }

    /// Starts nginx under LDP with `preload`, attached to `vpp` with `vcl`
    /// (written as `nginx.vcl.conf`), with `envs` added to its environment,
    /// and gives it a second to listen.
    ///
    /// Its files are in `<vpp dir>/nginx/`: `nginx.conf`, `www/index.html`
    /// (`file_size` bytes of `x`), `error.log` and `stderr.log` (what it
    /// writes to stderr before it switches that to its error log).
    pub fn start(
        &self,
        vpp: &VppInstance,
        vcl: &VclConf,
        preload: &str,
        envs: &[(&str, &str)],
    ) -> io::Result<ProcessGroup> {
        if !self.program.is_file() {
            return Err(not_found(format!(
                "nginx not found at {} (Debian: apt-get install nginx-light)",
                self.program.display()
            )));
        }
        let vcl_config = vpp.write_vcl_conf("nginx", vcl)?;
        let dir = vpp.dir().join("nginx");
        std::fs::create_dir_all(dir.join("www"))?;
        std::fs::write(dir.join("www/index.html"), "x".repeat(self.file_size))?;
        std::fs::write(dir.join("nginx.conf"), self.config(&dir))?;
        let d = dir.display();
        let mut cmd = Command::new(&self.program);
        cmd.args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?);
        let nginx = ProcessGroup::spawn(under_ldp(&mut cmd, preload, &vcl_config))?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(nginx)
    }
}

/// A wrk run: `wrk -t<threads> -c<connections> -d<duration> <url>` under
/// LDP, killed after `time_limit` ([`Wrk::run`]).
#[derive(Debug, Clone)]
pub struct Wrk {
    /// The wrk binary ([`find_program`]`("wrk")`, else `/usr/bin/wrk`).
    pub program: PathBuf,
    /// `-t`: threads.
    pub threads: u32,
    /// `-c`: connections, spread over the threads.
    pub connections: u32,
    /// `-d`: how long it sends requests (whole seconds, at least 1).
    pub duration: Duration,
    /// What it requests.
    pub url: String,
    /// Its `LD_PRELOAD`; empty: not under LDP (the kernel's sockets, see
    /// [`Wrk::kernel`]).
    pub preload: String,
    /// Its `VCL_CONFIG` (unused when `preload` is empty).
    pub vcl_config: PathBuf,
    /// `--latency`: print the latency distribution (read into
    /// [`WrkResult::p99_ms`]).
    pub latency: bool,
    /// When it is killed (the run then counts as serving nothing).
    pub time_limit: Duration,
    /// Added to its environment.
    pub envs: Vec<(String, String)>,
    /// `-H`: request headers (e.g. `Connection: close`).
    pub headers: Vec<String>,
}

/// What a wrk run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    /// Responses received.
    pub requests: u64,
    /// Requests per second (0 for a run that crashed or was killed).
    pub rps: f64,
    /// Socket errors plus responses that were not 2xx or 3xx.
    pub errors: u64,
    /// The 99th percentile of the latency in milliseconds (only with
    /// `--latency`, [`Wrk::latency`]).
    pub p99_ms: Option<f64>,
}

/// A finished wrk run: its result, exit status and output.
#[derive(Debug, Clone)]
pub struct WrkRun {
    /// What it reported ([`parse_wrk`] of its stdout).
    pub result: WrkResult,
    /// Its exit status (SIGKILL if it was killed at the time limit).
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Wrk {
    /// `-t1 -c64 -d5s` against `url`, under LDP with `preload` and
    /// `vcl_config`, killed after 60 s.
    pub fn new(url: &str, preload: &str, vcl_config: &Path) -> Self {
        Wrk {
            program: find_program("wrk").unwrap_or_else(|| PathBuf::from("/usr/bin/wrk")),
            threads: 1,
            connections: 64,
            duration: Duration::from_secs(5),
            url: url.into(),
            preload: preload.into(),
            vcl_config: vcl_config.into(),
            time_limit: Duration::from_secs(60),
            envs: Vec::new(),
            latency: false,
            headers: Vec::new(),
        }
    }

    /// Like [`Wrk::new`], over the kernel's sockets: not under LDP (no
    /// `LD_PRELOAD`, no `VCL_CONFIG`, also if this process has them).
    pub fn kernel(url: &str) -> Self {
        Wrk::new(url, "", Path::new(""))
    }

    /// Its command-line arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs().max(1)),
        ];
        if self.latency {
            args.push("--latency".into());
        }
        for h in &self.headers {
            args.push("-H".into());
            args.push(h.clone());
        }
        args.push(self.url.clone());
        args
    }

    /// Runs it to the end or to the time limit. A run that did not exit
    /// with success counts as serving nothing (`rps` 0). An error only if
    /// it cannot be started.
    pub fn run(&self) -> io::Result<WrkRun> {
        let mut cmd = Command::new(&self.program);
        cmd.args(self.args())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.preload.is_empty() {
            cmd.env_remove("LD_PRELOAD").env_remove("VCL_CONFIG");
        } else {
            under_ldp(&mut cmd, &self.preload, &self.vcl_config);
        }
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run {}: {e} (Debian: apt-get install wrk)", self.program.display()),
            )
        })?;
        let out = wait_output_with_timeout(child, self.time_limit)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut result = parse_wrk(&stdout);
        if !out.status.success() {
            result.rps = 0.0;
        }
        Ok(WrkRun {
            result,
            status: out.status,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Reads wrk's summary: the request count (`N requests in …`),
/// `Requests/sec:`, and the errors (`Socket errors: connect …, read …,
/// write …, timeout …` plus `Non-2xx or 3xx responses:`), and with
/// `--latency` the `99%` line of the distribution. What is missing counts
/// as 0 (`None` for the percentile).
pub fn parse_wrk(out: &str) -> WrkResult {
    let num_after = |key: &str| -> Option<f64> {
        out.lines().find(|l| l.contains(key)).and_then(|l| {
            let rest = &l[l.find(key)? + key.len()..];
            rest.split(|c: char| c == ',' || c.is_whitespace()).find(|w| !w.is_empty())?.parse().ok()
        })
    };
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let rps = num_after("Requests/sec:").unwrap_or(0.0);
    let bad_responses: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = ["connect ", "read ", "write ", "timeout "]
        .iter()
        .map(|k| {
            out.lines()
                .find(|l| l.contains("Socket errors:"))
                .and_then(|l| {
                    let rest = &l[l.find(k)? + k.len()..];
                    rest.split(|c: char| c == ',' || c.is_whitespace()).next()?.parse::<u64>().ok()
                })
                .unwrap_or(0)
        })
        .sum();
    let p99_ms =
        out.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| wrk_duration_ms(v.trim()));
    WrkResult { requests, rps, errors: socket_errors + bad_responses, p99_ms }
}

/// A duration as wrk prints it (`635.91us`, `1.00ms`, `2.10s`, `1.50m`)
/// in milliseconds.
fn wrk_duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_is_parsed_with_every_kind_of_error() {
        let out = "Running 5s test @ http://172.16.1.1:8080/index.html\n\
                   \x20 1 threads and 16 connections\n\
                   \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
                   \x20   Latency   210.12us   80.10us   3.10ms   91.00%\n\
                   \x20   Req/Sec    45.10k     1.20k   47.00k    80.00%\n\
                   \x20 224466 requests in 5.00s, 955.30MB read\n\
                   \x20 Socket errors: connect 1, read 2, write 3, timeout 4\n\
                   \x20 Non-2xx or 3xx responses: 5\n\
                   Requests/sec:  44889.91\n\
                   Transfer/sec:    191.05MB\n";
        assert_eq!(parse_wrk(out), WrkResult { requests: 224466, rps: 44889.91, errors: 15, p99_ms: None });
        // A clean run has neither error line; a killed one has no summary.
        let clean: Vec<&str> =
            out.lines().filter(|l| !l.contains("errors") && !l.contains("Non-2xx")).collect();
        assert_eq!(
            parse_wrk(&clean.join("\n")),
            WrkResult { requests: 224466, rps: 44889.91, errors: 0, p99_ms: None }
        );
        assert_eq!(
            parse_wrk("Running 5s test @ x\n"),
            WrkResult { requests: 0, rps: 0.0, errors: 0, p99_ms: None }
        );
    }

    #[test]
    fn wrk_latency_distribution_gives_the_99th_percentile_in_ms() {
        let with = |p99: &str| {
            format!(
                "  Latency Distribution\n     50%  635.91us\n     75%    1.00ms\n     90%    1.42ms\n     \
                 99%  {p99}\n  224466 requests in 10.00s, 20.30MB read\nRequests/sec:  22446.60\n"
            )
        };
        let p99 = |p99: &str| parse_wrk(&with(p99)).p99_ms;
        assert_eq!(p99("3.25ms"), Some(3.25));
        assert_eq!(p99("812.00us"), Some(0.812));
        assert_eq!(p99("1.50s"), Some(1500.0));
        assert_eq!(p99("2.00m"), Some(120_000.0));
        assert_eq!(p99("3.25xs"), None);
        assert_eq!(parse_wrk(&with("3.25ms")).requests, 224466);
    }

    #[test]
    fn wrk_arguments_and_nginx_config_follow_their_parameters() {
        let wrk = Wrk { threads: 2, connections: 16, ..Wrk::new("http://a/", "x.so", Path::new("v.conf")) };
        assert_eq!(wrk.args(), ["-t2", "-c16", "-d5s", "http://a/"]);
        let wrk = Wrk { latency: true, ..Wrk::kernel("http://a/") };
        assert_eq!(wrk.args(), ["-t1", "-c64", "-d5s", "--latency", "http://a/"]);
        assert!(wrk.preload.is_empty());
        let close = Wrk {
            threads: 2,
            connections: 16,
            headers: vec!["Connection: close".into()],
            ..Wrk::new("http://a/", "x.so", Path::new("v.conf"))
        };
        assert_eq!(close.args(), ["-t2", "-c16", "-d5s", "-H", "Connection: close", "http://a/"]);

        let nginx = Nginx {
            processes: "master_process on;\nworker_processes 2;".into(),
            logging: "access_log /d/a.log;".into(),
            ..Nginx::new("10.0.0.1:8080".parse().unwrap())
        };
        assert_eq!(nginx.url(), "http://10.0.0.1:8080/index.html");
        let conf = nginx.config(Path::new("/d"));
        for line in [
            "daemon off;",
            "master_process on;",
            "worker_processes 2;",
            "pid /d/nginx.pid;",
            "  access_log /d/a.log;",
            "  server { listen 10.0.0.1:8080; location / { root /d/www; } }",
        ] {
            assert!(conf.lines().any(|l| l == line), "no {line:?} in\n{conf}");
        }
        assert!(Nginx::new("127.0.0.1:80".parse().unwrap())
            .config(Path::new("/d"))
            .contains(Nginx::ONE_PROCESS));
        let hello = Nginx { answer: Some("hel\"lo".into()), ..Nginx::new("127.0.0.1:80".parse().unwrap()) };
        let conf = hello.config(Path::new("/d"));
        let server = "  server { listen 127.0.0.1:80; location / { return 200 \"hel\\\"lo\"; } }";
        assert!(conf.lines().any(|l| l == server), "no {server:?} in\n{conf}");
    }

    #[test]
    fn preloads_name_the_ldp_library_alone_and_after_the_layer() {
        let root = std::env::temp_dir().join(format!("vpp-harness-programs-{}", std::process::id()));
        let lib = root.join("lib");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        for f in ["bin/vpp", "lib/libvppcom.so", "layer.so"] {
            std::fs::write(root.join(f), "").unwrap();
        }
        let install = VppInstall::at(&root).unwrap();
        let e = vcl_ldpreload(&install).unwrap_err();
        assert!(e.to_string().contains("libvcl_ldpreload.so does not exist"), "{e}");
        std::fs::write(lib.join(VCL_LDPRELOAD), "").unwrap();
        let ldp = lib.join(VCL_LDPRELOAD).display().to_string();
        let p = Preloads::new(&install, &root.join("layer.so")).unwrap();
        assert_eq!(p.c, ldp);
        assert_eq!(p.rust, format!("{}:{ldp}", root.join("layer.so").display()));
        assert!(Preloads::new(&install, &root.join("none.so")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_process_group_is_killed_whole_on_drop_and_stops_on_a_signal() {
        // A leader that forks a child and prints its pid.
        let out = std::env::temp_dir().join(format!("vpp-harness-pg-{}", std::process::id()));
        let group = ProcessGroup::spawn(
            Command::new("sh")
                .args(["-c", "sleep 30 & echo $! ; wait"])
                .stdout(std::fs::File::create(&out).unwrap()),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let forked: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&out).ok().and_then(|s| s.trim().parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the leader printed no pid");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::fs::remove_file(&out).unwrap();
        assert!(group.has_mapped("libc.so.6"), "the leader maps libc");
        assert!(!group.has_mapped("libvcl_ldpreload.so"));
        drop(group);
        // The forked process is killed with its leader: gone, or a zombie
        // until init reaps it.
        let gone = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(forked) {
            assert!(Instant::now() < deadline, "the group's other process survived");
            std::thread::sleep(Duration::from_millis(20));
        }

        let sleeper = ProcessGroup::spawn(Command::new("sleep").arg("30")).unwrap();
        let status = sleeper.stop(libc::SIGTERM, Duration::from_secs(10)).expect("exits on SIGTERM");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
    }
}
