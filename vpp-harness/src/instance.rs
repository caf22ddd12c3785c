//! A running private VPP: [`VppInstance`].

use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::child::die_with_parent;
use crate::{AppNamespace, VclConf, VppInstall};

/// Environment variable naming the runtime directory of a VPP that is
/// already running (e.g. in another container, see `docker/`). When set,
/// [`VppInstance::start`] attaches to it instead of launching VPP: it expects
/// `<dir>/cli.sock` and `<dir>/app_ns_sockets/default`, and never stops that
/// VPP nor removes anything of it.
pub const EXTERNAL_VPP_ENV: &str = "VLS_VPP_EXTERNAL_DIR";

/// Environment variable: `1` lets the VPPs the harness starts dump core
/// when they crash (`coredump-size unlimited`, `full-coredump`; where the
/// core goes is the kernel's `core_pattern`). Unset: no core.
pub const VPP_COREDUMP_ENV: &str = "VLS_VPP_COREDUMP";

/// How long [`VppInstance::start`] waits for VPP to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long VPP gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long one `vppctl` command may take.
const VPPCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `show clock` may take in [`VppInstance::check_clock`].
const CLOCK_CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// How many VPPs [`VppInstance::start_with`] starts, at most, to get one
/// whose clock keeps time.
const CLOCK_TRIES: u32 = 5;
/// A VPP clock running faster or slower than real time by more than this
/// factor is wrong.
const CLOCK_MAX_SKEW: f64 = 2.0;
/// What VPP prints each time it refuses to correct its clock rate.
const CLOCK_REJECTS: &str = "Rejecting large frequency change";

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Tunables of a [`VppInstance`]; [`Default`] fits the test suite.
#[derive(Debug, Clone)]
pub struct VppOptions {
    /// Size of VPP's main heap (`memory { main-heap-size }`), e.g. `"1G"`.
    pub main_heap_size: String,
    /// Number of packet buffers (`buffers { buffers-per-numa }`).
    pub buffers: u32,
    /// Plugins to enable (all others stay disabled), e.g. `["hs_apps_plugin.so"]`.
    pub plugins: Vec<String>,
    /// How long VPP's main loop sleeps when it has nothing to do
    /// (`unix { poll-sleep-usec }`), in µs. The default, 100, leaves the
    /// core to the programs under test on small machines; VPP's own
    /// default, 0, polls without sleeping (a core at 100 %, as a
    /// production VPP runs), so no message to or from VPP waits for VPP
    /// to wake up.
    pub poll_sleep_usec: u32,
    /// Extra text appended verbatim to `startup.conf`.
    pub extra_startup: String,
}

impl Default for VppOptions {
    fn default() -> Self {
        VppOptions {
            main_heap_size: "1G".into(),
            buffers: 16384,
            plugins: Vec::new(),
            poll_sleep_usec: 100,
            extra_startup: String::new(),
        }
    }
}

/// A running private VPP; stopped and cleaned up on drop.
///
/// VPP is also sent SIGTERM by the kernel if the thread that started it
/// exits (or the process is killed) without dropping the instance, so keep
/// the instance on the thread that created it.
pub struct VppInstance {
    install: VppInstall,
    child: Option<Child>,
    dir: PathBuf,
    api_prefix: String,
    external: bool,
}

impl VppInstance {
    /// Starts VPP from [`VppInstall::discover`] with default options, or
    /// attaches to the VPP named by [`EXTERNAL_VPP_ENV`] when that is set.
    pub fn start() -> io::Result<Self> {
        Self::start_from(VppInstall::discover()?)
    }

    /// Starts the VPP installed at `prefix` with default options, or
    /// attaches to the VPP named by [`EXTERNAL_VPP_ENV`] when that is set.
    /// For a program linked with libvppcom, `prefix` is best the install
    /// it linked (`vpp_sys::VPP_PREFIX`).
    pub fn start_from_prefix(prefix: impl Into<PathBuf>) -> io::Result<Self> {
        Self::start_from(VppInstall::at(prefix)?)
    }

    /// Starts VPP from `install` with default options, or attaches to the
    /// VPP named by [`EXTERNAL_VPP_ENV`] when that is set (using `install`'s
    /// `vppctl`).
    pub fn start_from(install: VppInstall) -> io::Result<Self> {
        if let Some(dir) = std::env::var_os(EXTERNAL_VPP_ENV) {
            return Self::attach_external(install, PathBuf::from(dir));
        }
        Self::start_with(install, VppOptions::default())
    }

    /// Uses a VPP that runs elsewhere, whose runtime directory is `dir`,
    /// through `install`'s `vppctl`.
    pub fn attach_external(install: VppInstall, dir: PathBuf) -> io::Result<Self> {
        let mut instance =
            VppInstance { install, child: None, dir, api_prefix: String::new(), external: true };
        instance.wait_ready()?;
        Ok(instance)
    }

    /// True when this instance is a VPP the harness did not start.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Starts VPP from `install` with `options` and waits until it answers.
    ///
    /// A VPP whose clock does not keep time ([`check_clock`](Self::check_clock))
    /// is stopped and started again (up to 5 VPPs in all). Where VPP has
    /// to estimate the CPU's TSC rate (x86 without a TSC rate in CPUID,
    /// e.g. AMD or virtual machines), it times one 1 ms sample at start;
    /// preempted during it, on a busy machine, it can take a rate that is
    /// off by any factor, keeps it for good (it rejects every later
    /// correction of more than 1%), and a clock a thousand times fast
    /// leaves it expiring timer-wheel slots instead of serving its
    /// applications: their calls hang.
    pub fn start_with(install: VppInstall, options: VppOptions) -> io::Result<Self> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::start_once(install.clone(), &options)? {
                Ok(instance) => return Ok(instance),
                Err(why) if tries < CLOCK_TRIES => {
                    tracing::warn!("{why}; starting another VPP");
                    eprintln!("vpp-harness: {why}; starting another VPP");
                }
                Err(why) => return Err(io::Error::other(format!("{why} ({tries} VPPs started)"))),
            }
        }
    }

    /// Starts one VPP; `Ok(Err(why))` if its clock does not keep time.
    fn start_once(install: VppInstall, options: &VppOptions) -> io::Result<Result<Self, String>> {
        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let tag = format!("{}-{}-{:x}", std::process::id(), n, nanos);
        let dir = std::env::temp_dir().join(format!("vls-vpp-{tag}"));
        std::fs::create_dir_all(dir.join("run"))?;
        let api_prefix = format!("vlsrs-{tag}");
        let mut instance = VppInstance { install, child: None, dir, api_prefix, external: false };

        let conf = instance.dir.join("startup.conf");
        std::fs::write(&conf, instance.render_startup(options))?;
        let out = std::fs::File::create(instance.dir.join("vpp.stdout"))?;
        let mut cmd = Command::new(instance.install.vpp_bin());
        // VPP gets SIGTERM if the thread that started it dies without
        // dropping the instance (e.g. the test process is killed).
        die_with_parent(&mut cmd);
        let child = cmd
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("starting {}: {e}", instance.install.vpp_bin().display()))
            })?;
        tracing::debug!(pid = child.id(), dir = %instance.dir.display(), "vpp started");
        instance.child = Some(child);
        if let Err(e) = instance.wait_ready() {
            if instance.log().contains(CLOCK_REJECTS) {
                return Ok(Err(e.to_string()));
            }
            return Err(e);
        }
        match instance.check_clock() {
            Ok(()) => Ok(Ok(instance)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Fails unless VPP's clock keeps time: its rate ([`clock_rate`](Self::clock_rate))
    /// within a factor of 2 of real time, and `show clock` answered within
    /// 10 s (a VPP whose clock runs far too fast is busy with its timers).
    pub fn check_clock(&self) -> io::Result<()> {
        match self.clock_rate_within(Duration::from_millis(100), CLOCK_CLI_TIMEOUT) {
            Ok((low, high)) if low > CLOCK_MAX_SKEW || high < 1.0 / CLOCK_MAX_SKEW => {
                Err(io::Error::other(format!("VPP's clock runs at {low:.3}..{high:.3} times real time")))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(io::Error::other(format!("VPP does not tell its time ({e})"))),
        }
    }

    /// How fast VPP's clock runs against real time: bounds `(low, high)`
    /// of the ratio, from two readings of `show clock` `gap` apart (each
    /// taken at an unknown moment of its `vppctl` call, hence bounds; a
    /// clock that keeps time gives `low <= 1 <= high`).
    pub fn clock_rate(&self, gap: Duration) -> io::Result<(f64, f64)> {
        self.clock_rate_within(gap, VPPCTL_TIMEOUT)
    }

    fn clock_rate_within(&self, gap: Duration, cli_timeout: Duration) -> io::Result<(f64, f64)> {
        let read = || -> io::Result<(Instant, f64, Instant)> {
            let before = Instant::now();
            let out = self.vppctl_within("show clock", cli_timeout)?;
            let after = Instant::now();
            Ok((before, parse_time_now(&out)?, after))
        };
        let (before1, t1, after1) = read()?;
        std::thread::sleep(gap);
        let (before2, t2, after2) = read()?;
        let vpp = t2 - t1;
        Ok((vpp / (after2 - before1).as_secs_f64(), vpp / (before2 - after1).as_secs_f64()))
    }

    fn render_startup(&self, o: &VppOptions) -> String {
        let d = self.dir.display();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "unix {{\n  nodaemon\n  nosyslog\n  nocolor\n  cli-no-pager\n  {}\n  \
             runtime-dir {d}/run\n  cli-listen {d}/cli.sock\n  log {d}/vpp.log\n  poll-sleep-usec {}\n}}",
            if std::env::var_os(VPP_COREDUMP_ENV).is_some_and(|v| v == "1") {
                "coredump-size unlimited\n  full-coredump"
            } else {
                "coredump-size 0"
            },
            o.poll_sleep_usec
        );
        let _ = writeln!(s, "api-segment {{ prefix {} }}", self.api_prefix);
        let _ = writeln!(s, "socksvr {{ socket-name {d}/api.sock }}");
        let _ = writeln!(s, "memory {{ main-heap-size {} main-heap-page-size 4k }}", o.main_heap_size);
        let _ = writeln!(s, "buffers {{ buffers-per-numa {} page-size 4k }}", o.buffers);
        let _ = writeln!(s, "statseg {{ socket-name {d}/stats.sock size 32M page-size 4k }}");
        s.push_str("plugins {\n  plugin default { disable }\n");
        for p in &o.plugins {
            let _ = writeln!(s, "  plugin {p} {{ enable }}");
        }
        s.push_str("}\n");
        // The app socket (app_ns_sockets/, what VCL's `app-socket-api`
        // attaches through) is on by default from VPP 26.02 on, which
        // still accepts the option; 25.10 needs it.
        s.push_str("session { enable use-app-socket-api }\n");
        s.push_str(&o.extra_startup);
        s
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(io::Error::other(format!(
                    "vpp exited during start-up ({status})\n{}",
                    self.log()
                )));
            }
            if self.app_socket().exists() && self.vppctl("show version").is_ok() {
                return Ok(());
            }
            if self.log().contains(CLOCK_REJECTS) {
                return Err(io::Error::other(format!(
                    "VPP's clock does not keep time (it logs {CLOCK_REJECTS:?})"
                )));
            }
            if Instant::now() > deadline {
                let stacks = self.pid().map(crate::thread_stacks).unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("vpp did not answer within {START_TIMEOUT:?}\n{}{stacks}", self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The VPP install this instance runs.
    pub fn install(&self) -> &VppInstall {
        &self.install
    }

    /// VPP's process id; `None` for a VPP the harness did not start
    /// ([`EXTERNAL_VPP_ENV`]), which tests must not signal.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// How VPP ended, if it did (crashed or was killed); `None` while it
    /// runs, and for a VPP the harness did not start.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The instance's private directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shared-memory API prefix (`/dev/shm/<prefix>-*`).
    pub fn api_prefix(&self) -> &str {
        &self.api_prefix
    }

    /// The socket VCL applications attach through.
    pub fn app_socket(&self) -> PathBuf {
        self.runtime_dir().join("app_ns_sockets/default")
    }

    fn runtime_dir(&self) -> PathBuf {
        if self.external {
            self.dir.clone()
        } else {
            self.dir.join("run")
        }
    }

    fn cli_socket(&self) -> PathBuf {
        self.dir.join("cli.sock")
    }

    /// Runs one CLI command with `vppctl` and returns its output. A command
    /// VPP rejects (its output starts with a known error word), or one that
    /// takes more than 30 s, is an error.
    pub fn vppctl(&self, cmd: &str) -> io::Result<String> {
        self.vppctl_within(cmd, VPPCTL_TIMEOUT)
    }

    pub(crate) fn vppctl_within(&self, cmd: &str, timeout: Duration) -> io::Result<String> {
        let child = Command::new(self.install.vppctl_bin())
            .arg("-s")
            .arg(self.cli_socket())
            .args(cmd.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = crate::child::wait_output(child, timeout, false)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let failed = !out.status.success()
            || text.trim_start().starts_with("unknown input")
            || text.contains("\nunknown input")
            || text.trim_start().to_lowercase().starts_with("error");
        if failed {
            return Err(io::Error::other(format!(
                "vppctl {cmd:?} failed: {}{}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(text)
    }

    /// Creates a loopback interface with `addr/len`, brought up, so that
    /// sessions to `addr` go through VPP's IP and TCP/UDP stack (use a
    /// [`VclConf::through_stack`] client). Returns the interface name.
    /// On an external VPP that already has `addr`, nothing is created.
    pub fn setup_loopback(&self, addr: Ipv4Addr, len: u8) -> io::Result<String> {
        if self.external && self.vppctl("show interface addr")?.contains(&format!(" {addr}/{len}")) {
            return Ok(String::from("(existing)"));
        }
        let name = self.vppctl("create loopback interface")?.trim().to_string();
        if name.is_empty() {
            return Err(io::Error::other("create loopback interface printed no name"));
        }
        self.vppctl(&format!("set interface state {name} up"))?;
        self.vppctl(&format!("set interface ip address {name} {addr}/{len}"))?;
        Ok(name)
    }

    /// Two app namespaces on two loopback interfaces in two FIB tables, with
    /// routes between them, so that an app in one connects to an app in the
    /// other through VPP's IP and TCP/UDP stack (an app can't reach its own
    /// interface address: VPP drops locally sourced packets to itself).
    /// Returns (server side, client side).
    ///
    /// On an external VPP that already has both namespaces (an earlier test
    /// set them up), nothing is created.
    pub fn setup_stack_namespaces(&self) -> io::Result<(AppNamespace, AppNamespace)> {
        let sides = [("1", 1234u64, Ipv4Addr::new(172, 16, 1, 1)), ("2", 5678, Ipv4Addr::new(172, 16, 2, 1))];
        let as_ns = |(id, secret, addr): (&str, u64, Ipv4Addr)| AppNamespace { id: id.into(), secret, addr };
        if self.external && self.vppctl("show interface addr")?.contains(" 172.16.2.1/24") {
            return Ok((as_ns(sides[0]), as_ns(sides[1])));
        }
        let mut names = Vec::new();
        for (i, (_, _, addr)) in sides.iter().enumerate() {
            let table = i + 1;
            let name = self.vppctl("create loopback interface")?.trim().to_string();
            self.vppctl(&format!("ip table add {table}"))?;
            self.vppctl(&format!("set interface ip table {name} {table}"))?;
            self.vppctl(&format!("set interface state {name} up"))?;
            self.vppctl(&format!("set interface ip address {name} {addr}/24"))?;
            names.push(name);
        }
        // Each table reaches the other side's address through that side's
        // interface: packets leave through the loopback interface and come
        // back in on it, in the other table. (A route that merely looks up
        // in the other table has an empty uRPF list, and VPP's local-input
        // source check drops such packets.) Loopback interfaces do not
        // answer ARP for their own address, so the neighbours are static.
        for (i, (_, _, addr)) in sides.iter().enumerate() {
            let (name, other_table) = (&names[i], 2 - i);
            let hw = self.vppctl(&format!("show hardware-interfaces {name}"))?;
            let mac = hw
                .split("Ethernet address ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .ok_or_else(|| io::Error::other(format!("no MAC in `show hardware {name}`: {hw}")))?
                .to_string();
            self.vppctl(&format!("ip route add {addr}/32 table {other_table} via {addr} {name}"))?;
            self.vppctl(&format!("set ip neighbor {name} {addr} {mac}"))?;
        }
        let mut out = Vec::new();
        for ((id, secret, addr), name) in sides.iter().zip(&names) {
            self.vppctl(&format!("app ns add id {id} secret {secret} if {name}"))?;
            out.push(AppNamespace { id: id.to_string(), secret: *secret, addr: *addr });
        }
        let client = out.pop().expect("two namespaces");
        let server = out.pop().expect("two namespaces");
        Ok((server, client))
    }

    /// Writes `<name>.vcl.conf` for a client of this instance (in the
    /// instance's directory, or a fresh temp directory for an external VPP).
    pub fn write_vcl_conf(&self, name: &str, conf: &VclConf) -> io::Result<PathBuf> {
        let dir = if self.external {
            let d = std::env::temp_dir().join(format!("vls-vcl-{}", std::process::id()));
            std::fs::create_dir_all(&d)?;
            d
        } else {
            self.dir.clone()
        };
        let path = dir.join(format!("{name}.vcl.conf"));
        std::fs::write(&path, conf.render(&self.app_socket()))?;
        Ok(path)
    }

    /// VPP's log and console output so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        for f in ["vpp.stdout", "vpp.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                let _ = write!(s, "----- {f} -----\n{t}");
            }
        }
        s
    }

    /// `/dev/shm` entries that belong to this instance.
    pub fn shm_files(&self) -> Vec<PathBuf> {
        if self.external || self.api_prefix.is_empty() {
            return Vec::new();
        }
        shm_files_with_prefix(&self.api_prefix)
    }

    /// Stops VPP: SIGTERM, then SIGKILL after a grace period.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: plain syscall on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for VppInstance {
    fn drop(&mut self) {
        if self.external {
            return;
        }
        let status = self.stop();
        if std::thread::panicking() {
            eprintln!("VPP instance {} (exit: {status:?}) log:\n{}", self.dir.display(), self.log());
        }
        for f in self.shm_files() {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The seconds of `Time now <seconds>` in the output of `show clock`.
fn parse_time_now(out: &str) -> io::Result<f64> {
    out.split("Time now")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.trim_end_matches(',').parse().ok())
        .ok_or_else(|| io::Error::other(format!("no time in `show clock` output {out:?}")))
}

fn shm_files_with_prefix(prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_conf_uses_private_paths_and_no_hugepages() {
        let i = VppInstance {
            install: VppInstall { prefix: "/p".into() },
            child: None,
            dir: "/tmp/vls-vpp-x".into(),
            api_prefix: "vlsrs-x".into(),
            external: false,
        };
        let s = i.render_startup(&VppOptions { plugins: vec!["a.so".into()], ..Default::default() });
        for want in [
            "runtime-dir /tmp/vls-vpp-x/run",
            "cli-listen /tmp/vls-vpp-x/cli.sock",
            "prefix vlsrs-x",
            "main-heap-page-size 4k",
            "buffers-per-numa 16384 page-size 4k",
            "plugin default { disable }",
            "plugin a.so { enable }",
            "session { enable use-app-socket-api }",
            "poll-sleep-usec 100\n",
        ] {
            assert!(s.contains(want), "{want:?} missing from\n{s}");
        }
        let polling = i.render_startup(&VppOptions { poll_sleep_usec: 0, ..Default::default() });
        assert!(polling.contains("poll-sleep-usec 0\n"), "no poll-sleep-usec 0 in\n{polling}");
        // Dropping an instance that never started is harmless.
        drop(i);
    }

    #[test]
    fn show_clock_time_is_parsed() {
        assert_eq!(parse_time_now("Time now 3.659532, Wed, 02 Dec 2026 00:08:44 GMT\n").unwrap(), 3.659532);
        assert_eq!(parse_time_now("Time now 12.5\n  cpu time 12.5 now 1").unwrap(), 12.5);
        assert!(parse_time_now("unknown input").is_err());
    }
}
