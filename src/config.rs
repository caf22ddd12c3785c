//! [`VclConfig`]: the configuration an application attaches to VPP with,
//! a `vcl.conf` file or the entries of its `vcl { }` section.

use std::fmt::Write as _;
use std::io;
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
    /// file in the temp directory.
    pub fn to_file(&self) -> io::Result<PathBuf> {
        if let Some(f) = &self.file {
            if !f.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("vcl.conf {} does not exist", f.display()),
                ));
            }
            return Ok(f.clone());
        }
        let path = std::env::temp_dir().join(format!("vls-rs-{}-vcl.conf", std::process::id()));
        std::fs::write(&path, self.render()?)?;
        Ok(path)
    }
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
    fn missing_file_is_not_found() {
        let e = VclConfig::from_file("/nonexistent/vcl.conf").to_file().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
