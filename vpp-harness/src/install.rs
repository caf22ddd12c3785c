//! Where VPP is installed: [`VppInstall`] and its discovery.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the VPP install prefix (`bin/vpp`, `bin/vppctl`).
pub const VPP_PREFIX_ENV: &str = "VPP_PREFIX";

/// Where VPP is looked for when `VPP_PREFIX` is not set.
pub const DEFAULT_PREFIXES: &[&str] = &["/opt/vpp", "/usr"];

/// An installed VPP: the prefix holding `bin/vpp` and `bin/vppctl`.
#[derive(Debug, Clone)]
pub struct VppInstall {
    pub(crate) prefix: PathBuf,
}

impl VppInstall {
    /// The VPP installed at `prefix`; an error unless `<prefix>/bin/vpp`
    /// exists.
    ///
    /// A program that also links libvppcom should start the VPP it linked
    /// (e.g. with `vpp_sys::VPP_PREFIX`), so that both are of one release.
    pub fn at(prefix: impl Into<PathBuf>) -> io::Result<Self> {
        let install = VppInstall { prefix: prefix.into() };
        if install.vpp_bin().is_file() {
            return Ok(install);
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no VPP at {}: {} does not exist", install.prefix.display(), install.vpp_bin().display()),
        ))
    }

    /// Uses `VPP_PREFIX` if set, else the first of [`DEFAULT_PREFIXES`] that
    /// holds `bin/vpp`.
    pub fn from_env() -> io::Result<Self> {
        Self::find(std::env::var_os(VPP_PREFIX_ENV), DEFAULT_PREFIXES)
    }

    /// [`from_env`](Self::from_env) with the variable's value and the
    /// candidates after it given.
    pub(crate) fn find<P: AsRef<Path>>(prefix: Option<OsString>, candidates: &[P]) -> io::Result<Self> {
        if let Some(p) = prefix {
            let install = VppInstall { prefix: PathBuf::from(p) };
            if install.vpp_bin().is_file() {
                return Ok(install);
            }
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{VPP_PREFIX_ENV} is set but {} does not exist", install.vpp_bin().display()),
            ));
        }
        candidates.iter().find_map(|p| Self::at(p.as_ref()).ok()).ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.as_ref().display().to_string()).collect();
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no VPP found: set {VPP_PREFIX_ENV} to an install prefix holding bin/vpp (looked in {})",
                    looked.join(", ")
                ),
            )
        })
    }

    /// The install prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `<prefix>/bin/vpp`.
    pub fn vpp_bin(&self) -> PathBuf {
        self.prefix.join("bin/vpp")
    }

    /// `<prefix>/bin/vppctl`.
    pub fn vppctl_bin(&self) -> PathBuf {
        self.prefix.join("bin/vppctl")
    }

    /// The directory holding `libvppcom.so` (and `libvcl_ldpreload.so`).
    pub fn libdir(&self) -> Option<PathBuf> {
        ["lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu", "lib64", "lib"]
            .iter()
            .map(|s| self.prefix.join(s))
            .find(|d| d.join("libvppcom.so").exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_vpp_prefix_is_a_clear_error() {
        // A prefix that cannot exist, as `VPP_PREFIX` would give it (the
        // environment itself is not touched).
        let e = VppInstall::find(Some("/nonexistent/vls".into()), DEFAULT_PREFIXES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string().contains("VPP_PREFIX is set but /nonexistent/vls/bin/vpp does not exist"),
            "{e}"
        );
        // Nothing set and nothing at the candidates: every place is named.
        let e = VppInstall::find(None, &["/nonexistent/a", "/nonexistent/b"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("looked in /nonexistent/a, /nonexistent/b"), "{e}");
        assert!(VppInstall { prefix: "/nonexistent/vls".into() }.libdir().is_none());
        // A prefix given outright must hold bin/vpp.
        let e = VppInstall::at("/nonexistent/vls").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/vls/bin/vpp does not exist"), "{e}");
    }
}
