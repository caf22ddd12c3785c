//! Running a test body or a program in a child process, and waiting for a
//! child with a deadline.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Has the kernel send SIGTERM to the process `cmd` starts when the thread
/// that spawns it exits first (also when its whole process is killed), so
/// that a VPP or a child role never outlives a killed test or example.
/// Keep such a child's owner on the thread that spawned it.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec; it makes one
    // async-signal-safe syscall and touches no memory of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        })
    }
}

/// Environment variable set in a child started by [`run_test_in_child`].
pub const CHILD_ENV: &str = "VLS_HARNESS_CHILD";

/// True inside a process started by [`run_test_in_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs the test `name` of the current test binary in a fresh process, with
/// `envs` added to its environment, and returns its output.
///
/// VCL allows one application per process, so each test that attaches to
/// VPP runs in a process of its own: the test function calls this when
/// [`in_child`] is false (the parent: it starts VPP and checks the result)
/// and runs its body when true.
pub fn run_test_in_child(name: &str, envs: &[(&str, OsString)], timeout: Duration) -> io::Result<Output> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    wait_output_with_timeout(child, timeout)
}

/// Waits for `child` (stdout/stderr piped) at most `timeout`, killing it
/// after that; the output gathered so far is returned either way. Before
/// killing it, the stacks of all its threads ([`thread_stacks`]) are added
/// to its stderr, to show where it hung.
pub fn wait_output_with_timeout(child: Child, timeout: Duration) -> io::Result<Output> {
    wait_output(child, timeout, true)
}

/// [`wait_output_with_timeout`], printing the stacks of a child it kills
/// only if `stacks`.
pub(crate) fn wait_output(mut child: Child, timeout: Duration, stacks: bool) -> io::Result<Output> {
    let out = OutputReader::spawn(child.stdout.take());
    let err = OutputReader::spawn(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let stacks = if stacks { thread_stacks(child.id()) } else { String::new() };
            let _ = child.kill();
            let _ = child.wait();
            // Descendants of the child may still hold the pipes: wait a
            // little for the end of the output, not for them.
            let until = Instant::now() + Duration::from_secs(2);
            let mut stderr = err.collect(until);
            stderr.extend_from_slice(format!("\n{KILLED_MARK} {timeout:?}]\n").as_bytes());
            stderr.extend_from_slice(stacks.as_bytes());
            return Ok(Output { status: timed_out_status(), stdout: out.collect(until), stderr });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The output ends when the child's descendants are gone too; give them
    // until the deadline (plus a moment), then take what came.
    let until = deadline.max(Instant::now()) + Duration::from_secs(2);
    Ok(Output { status, stdout: out.collect(until), stderr: err.collect(until) })
}

/// How [`wait_output_with_timeout`] says in a child's stderr that it
/// killed the child at its time limit.
const KILLED_MARK: &str = "[harness: killed after";

/// True if `out` is of a child [`wait_output_with_timeout`] killed at its
/// time limit.
pub(crate) fn was_killed(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains(KILLED_MARK)
}

/// The debugger [`wait_output_with_timeout`] prints a hung child's stacks with.
const GDB: &str = "/usr/bin/gdb";

/// How long gdb may take to print a hung child's stacks.
const GDB_TIMEOUT: Duration = Duration::from_secs(20);

/// The stacks of all threads of process `pid`, as text for a test's output:
/// `gdb -batch -ex 'thread apply all bt'` (killed after 20 s),
/// or, when gdb is missing or fails, each thread's name, state and kernel
/// wait channel from `/proc/<pid>/task`.
pub fn thread_stacks(pid: u32) -> String {
    thread_stacks_with(pid, Path::new(GDB))
}

fn thread_stacks_with(pid: u32, gdb: &Path) -> String {
    let mut report = format!("[harness: stacks of process {pid}]\n");
    match gdb_backtraces(pid, gdb) {
        Ok(bt) => report += &bt,
        Err(e) => {
            report += &format!("(gdb: {e}; threads from /proc instead)\n");
            report += &proc_threads(pid);
        }
    }
    report
}

fn gdb_backtraces(pid: u32, gdb: &Path) -> io::Result<String> {
    let gdb = Command::new(gdb)
        .args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // (A killed gdb leaves the process: the kernel detaches a dead
    // tracer's tracees.)
    let out = wait_output(gdb, GDB_TIMEOUT, false)?;
    if was_killed(&out) {
        return Err(io::Error::other(format!("no answer within {GDB_TIMEOUT:?}")));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Without a "Thread 1 ..." header gdb did not get at the process.
    if !out.status.success() || !stdout.contains("Thread ") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("{}: {}", out.status, stderr.trim())));
    }
    Ok(stdout)
}

/// One line per thread of `pid`: id, name, state and wait channel.
fn proc_threads(pid: u32) -> String {
    let task = format!("/proc/{pid}/task");
    let Ok(dir) = std::fs::read_dir(&task) else {
        return format!("({task} unreadable)\n");
    };
    let mut tids: Vec<String> = dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    tids.sort_by_key(|t| t.parse::<u32>().unwrap_or(0));
    let mut lines = String::new();
    for tid in tids {
        let read = |f: &str| std::fs::read_to_string(format!("{task}/{tid}/{f}")).unwrap_or_default();
        // stat is "tid (comm) state ...": the state follows the last ')'.
        let stat = read("stat");
        let (comm, state) = match (stat.find('('), stat.rfind(')')) {
            (Some(a), Some(b)) if a < b => {
                (&stat[a + 1..b], stat[b + 1..].split_whitespace().next().unwrap_or("?"))
            }
            _ => ("?", "?"),
        };
        lines += &format!("thread {tid} ({comm}): state {state}, wchan {}\n", read("wchan"));
    }
    lines
}

/// Reads a child's pipe on a thread of its own, keeping what came so far.
struct OutputReader {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl OutputReader {
    fn spawn(src: Option<impl std::io::Read + Send + 'static>) -> Self {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, done) = std::sync::mpsc::channel();
        let sink = buf.clone();
        std::thread::spawn(move || {
            if let Some(mut src) = src {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = src.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&chunk[..n]);
                }
            }
            let _ = tx.send(());
        });
        OutputReader { buf, done }
    }

    /// The output: all of it if the pipe closes by `until`, else what came
    /// so far (a process that inherited the pipe still holds it; the
    /// reading thread is left behind).
    fn collect(self, until: Instant) -> Vec<u8> {
        let complete = self.done.recv_timeout(until.saturating_duration_since(Instant::now())).is_ok();
        let mut out = self.buf.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if !complete {
            out.extend_from_slice(b"\n[harness: output cut: the pipe is still held by a descendant]\n");
        }
        out
    }
}

fn timed_out_status() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(libc::SIGKILL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_timeout_kills_and_reports() {
        let child =
            Command::new("sleep").arg("10").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let t = Instant::now();
        let out = wait_output_with_timeout(child, Duration::from_millis(200)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("killed after"));
        assert!(stderr.contains("[harness: stacks of process"), "{stderr}");
    }

    #[test]
    fn thread_stacks_names_every_thread() {
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let pid = child.id();
        // Until it sleeps (it may still be starting).
        let asleep = Instant::now() + Duration::from_secs(10);
        while !proc_threads(pid).contains("state S") && Instant::now() < asleep {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Without gdb: one line per thread from /proc.
        let report = thread_stacks_with(pid, Path::new("/nonexistent/gdb"));
        assert!(report.contains("threads from /proc instead"), "{report}");
        assert!(report.contains(&format!("thread {pid} (sleep): state S")), "{report}");
        // With gdb, where there is one: its backtrace of the thread.
        if Path::new(GDB).exists() {
            let report = thread_stacks(pid);
            assert!(report.contains("Thread 1") && report.contains("#0 "), "{report}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
