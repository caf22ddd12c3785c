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
use crate::core::Mode;

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

    /// Like [`init`](Self::init), configured by `config`. `VCL_CONFIG` is
    /// set for this process to the file used (call this before starting
    /// threads that read the environment).
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
    /// or `VCL_CONFIG`.
    pub fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// How VLS maps threads to VCL workers now (see the crate docs).
    pub fn mode(&self) -> Mode {
        crate::capi::vls().mode()
    }

    fn attach(name: &str, config: Option<&VclConfig>) -> io::Result<&'static App> {
        let mut app = APP.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = *app {
            return Ok(a);
        }
        let cname = CString::new(name).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "application name contains a NUL byte")
        })?;
        let config_file = match config {
            Some(c) => {
                let f = c.to_file()?;
                // Single call site under the APP lock, before VCL reads it.
                std::env::set_var("VCL_CONFIG", &f);
                Some(f)
            }
            None => std::env::var_os("VCL_CONFIG").map(PathBuf::from),
        };
        // SAFETY: `cname` is a valid C string for the duration of the call.
        let rv = unsafe { crate::capi::vls_app_create(cname.as_ptr() as *mut _) };
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
        let a: &'static App = Box::leak(Box::new(App { name: name.to_string(), config: config_file }));
        *app = Some(a);
        tracing::info!(name, "VCL application attached");
        Ok(a)
    }
}

/// Ok if the process is attached (through `App::init` or the C ABI), else
/// an error telling the caller to attach.
pub(crate) fn require() -> io::Result<()> {
    if crate::capi::vls().is_app_created() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::NotConnected, "no VCL application: call vls::App::init first"))
    }
}
