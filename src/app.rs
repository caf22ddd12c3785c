//! The process's VCL application: attach to VPP once, before any socket.
//!
//! VCL allows one application per process. [`App::init`] attaches with the
//! configuration named by `VCL_CONFIG` (VCL's default is
//! `/etc/vpp/vcl.conf`); [`App::init_with`] takes a [`VclConfig`] instead,
//! built from a file path or from key/value pairs. Both are idempotent: the
//! first successful call attaches, later calls return the same [`App`].
//! [`VclConfig`] lives in its own module so it is usable without VPP.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::VclConfig;
use crate::engine::Mode;

/// This process's VCL application. Obtained from [`App::init`] or
/// [`App::init_with`]; sockets need it to exist first.
#[derive(Debug)]
pub struct App {
    name: String,
    config: Option<PathBuf>,
}

static APP: Mutex<Option<&'static App>> = Mutex::new(None);

impl App {
    /// Attaches this process to VPP as application `name`, configured by
    /// the file `VCL_CONFIG` names. Returns the existing application if one
    /// is attached already (its name and configuration stay).
    ///
    /// ```no_run
    /// let app = vls::App::init("my-app")?;
    /// println!("attached as {}", app.name());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn init(name: &str) -> io::Result<&'static App> {
        Self::attach(name, None)
    }

    /// Like [`init`](Self::init), configured by `config`.
    ///
    /// VCL reads its configuration from the file `VCL_CONFIG` names, so this
    /// sets `VCL_CONFIG` for the process (to the given file, or to a private
    /// temporary file holding the entries, removed once attached). Changing
    /// the environment while other threads may read it is undefined
    /// behaviour in C, so this fails with `ErrorKind::Unsupported` when the
    /// process already runs several threads and `VCL_CONFIG` would change:
    /// call it first thing in `main`, or set `VCL_CONFIG` before starting
    /// the program and use [`init`](Self::init).
    pub fn init_with(name: &str, config: &VclConfig) -> io::Result<&'static App> {
        Self::attach(name, Some(config))
    }

    /// The application, if attached.
    pub fn get() -> Option<&'static App> {
        *APP.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name given at attach time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration file used, when set through [`init_with`](Self::init_with)
    /// with a file or by `VCL_CONFIG` (not the temporary file of entries).
    pub fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// How VLS maps threads to VCL workers now (see the crate docs).
    pub fn mode(&self) -> Mode {
        crate::process::vls().mode()
    }

    fn attach(name: &str, config: Option<&VclConfig>) -> io::Result<&'static App> {
        let mut app = APP.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = *app {
            return Ok(a);
        }
        let cname = CString::new(name).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "application name contains a NUL byte")
        })?;
        // Kept until VCL has read it (a generated file is removed on drop).
        let generated;
        let config_file = match config {
            Some(c) => {
                let f = c.to_file()?;
                if std::env::var_os("VCL_CONFIG").as_deref() != Some(f.path().as_os_str()) {
                    if threads_in_process() != Some(1) {
                        return Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "App::init_with must set VCL_CONFIG, which is unsafe once the process runs \
                             several threads: call it before starting threads, or set VCL_CONFIG and \
                             call App::init",
                        ));
                    }
                    // One thread (this one), under the APP lock.
                    std::env::set_var("VCL_CONFIG", f.path());
                }
                let path = (!f.is_generated()).then(|| f.path().to_path_buf());
                generated = Some(f);
                path
            }
            None => {
                generated = None;
                std::env::var_os("VCL_CONFIG").map(PathBuf::from)
            }
        };
        // SAFETY: `cname` is a valid C string for the duration of the call.
        let rv = unsafe { crate::process::attach(cname.as_ptr() as *mut _) };
        if rv != 0 {
            let e = crate::VppcomError::from_raw(rv);
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot attach to VPP as {name:?} with {}: {e} (is VPP running and app-socket-api right?)",
                    config_file.as_deref().map_or("VCL's default vcl.conf".into(), |p| p.display().to_string())
                ),
            ));
        }
        drop(generated);
        let a: &'static App = Box::leak(Box::new(App { name: name.to_string(), config: config_file }));
        *app = Some(a);
        tracing::info!(name, "VCL application attached");
        Ok(a)
    }
}

/// The number of threads of this process, from `/proc/self/status`.
fn threads_in_process() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

/// Ok if the process is attached (through `App::init` or the C ABI), else
/// an error telling the caller to attach.
pub(crate) fn require() -> io::Result<()> {
    if crate::process::vls().is_app_created() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::NotConnected, "no VCL application: call vls::App::init first"))
    }
}
