//! [`VclConfig`]: the configuration an application attaches to VPP with,
//! a `vcl.conf` file or the entries of its `vcl { }` section.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Configuration for `App::init_with`: either a `vcl.conf` file or the
/// entries of the `vcl { ... }` section.
///
/// ```
/// use vls::VclConfig;
///
/// let cfg = VclConfig::new()
///     .set("app-socket-api", "/run/vpp/app_ns_sockets/default")
///     .set("segment-size", "64M");
/// assert!(cfg.render().unwrap().contains("  segment-size 64M\n"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct VclConfig {
    file: Option<PathBuf>,
    entries: Vec<(String, String)>,
}

impl VclConfig {
    /// An empty configuration (VCL's defaults), to extend with [`set`](Self::set).
    pub fn new() -> Self {
        Self::default()
    }

    /// Use the `vcl.conf` at `path` as is.
    pub fn from_file(path: impl AsRef<Path>) -> Self {
        VclConfig { file: Some(path.as_ref().to_path_buf()), entries: Vec::new() }
    }

    /// Adds `key value` to the `vcl { }` section (e.g. `app-socket-api`,
    /// `multi-thread-workers`, `use-mq-eventfd`, `namespace-id`). A key
    /// without a value is written as a bare flag when `value` is empty.
    /// Ignored when the configuration is a file.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.entries.push((key.into(), value.into()));
        self
    }

    /// The `vcl.conf` text of the key/value entries; `InvalidInput` if a key
    /// or value could break the file's syntax (newline, brace, `#`, or a
    /// space in a key).
    pub fn render(&self) -> io::Result<String> {
        let mut out = String::from("vcl {\n");
        for (k, v) in &self.entries {
            let bad = |s: &str| s.contains(['\n', '\r', '{', '}', '#']);
            if k.is_empty() || bad(k) || k.contains(char::is_whitespace) || bad(v) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid vcl.conf entry {k:?} {v:?}"),
                ));
            }
            if v.is_empty() {
                let _ = writeln!(out, "  {k}");
            } else {
                let _ = writeln!(out, "  {k} {v}");
            }
        }
        out.push_str("}\n");
        Ok(out)
    }

    /// The file VCL should read: the given one, or the entries written to a
    /// new file in the temp directory (created exclusively, mode 0600, with
    /// an unpredictable name; removed when the returned [`ConfigFile`] is
    /// dropped).
    pub fn to_file(&self) -> io::Result<ConfigFile> {
        if let Some(f) = &self.file {
            if !f.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("vcl.conf {} does not exist", f.display()),
                ));
            }
            return Ok(ConfigFile { path: f.clone(), generated: false });
        }
        let text = self.render()?;
        let mut tries = 0;
        loop {
            let path =
                std::env::temp_dir().join(format!("vls-rs-{}-{:016x}.conf", std::process::id(), random()));
            // `create_new` is O_CREAT|O_EXCL: never an existing file, never
            // through a symlink.
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut f) => {
                    let file = ConfigFile { path, generated: true };
                    f.write_all(text.as_bytes())?;
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A `vcl.conf` for VCL to read: a file of the application's, or one
/// generated from entries, which is removed on drop.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    generated: bool,
}

impl ConfigFile {
    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if it was generated (and is removed on drop).
    pub fn is_generated(&self) -> bool {
        self.generated
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if self.generated {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// 64 bits no other process can predict (std's per-process random hash
/// keys, mixed with the time).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_rejects_syntax_breaking_entries() {
        assert!(VclConfig::new().set("a", "b\n}").render().is_err());
        assert!(VclConfig::new().set("a b", "c").render().is_err());
        assert!(VclConfig::new().set("", "c").render().is_err());
        let s =
            VclConfig::new().set("multi-thread-workers", "").set("rx-fifo-size", "4000").render().unwrap();
        assert_eq!(s, "vcl {\n  multi-thread-workers\n  rx-fifo-size 4000\n}\n");
    }

    #[test]
    fn generated_file_is_private_unpredictable_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let cfg = VclConfig::new().set("use-mq-eventfd", "");
        let (a, b) = (cfg.to_file().unwrap(), cfg.to_file().unwrap());
        assert_ne!(a.path(), b.path(), "two files, two names");
        assert!(a.is_generated());
        let meta = std::fs::symlink_metadata(a.path()).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(a.path()).unwrap(), "vcl {\n  use-mq-eventfd\n}\n");
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists(), "removed on drop");
        // The application's own file is used as is and never removed.
        let own = VclConfig::from_file(b.path()).to_file().unwrap();
        assert!(!own.is_generated());
        let own_path = own.path().to_path_buf();
        drop(own);
        assert!(own_path.exists());
    }

    #[test]
    fn missing_file_is_not_found() {
        let e = VclConfig::from_file("/nonexistent/vcl.conf").to_file().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
