//! Where VPP is installed: [`VppInstall`] and its discovery.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Environment variable naming the VPP install prefix (`bin/vpp`, `bin/vppctl`).
pub const VPP_PREFIX_ENV: &str = "VPP_PREFIX";

/// The prefix looked at last by [`VppInstall::discover`].
pub const FALLBACK_PREFIX: &str = "/usr";

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

    /// Looks for VPP in the order `vpp-sys`' build script uses for the
    /// libvppcom it links:
    ///
    /// 1. `VPP_PREFIX`, if set (and then nowhere else);
    /// 2. the `prefix` variable of pkg-config's `vppcom` package
    ///    (`pkg-config --variable=prefix vppcom`, or the program named by
    ///    `PKG_CONFIG`), when pkg-config is there and knows it;
    /// 3. [`FALLBACK_PREFIX`] (`/usr`).
    ///
    /// The first that holds `bin/vpp` is used.
    pub fn discover() -> io::Result<Self> {
        let mut candidates: Vec<PathBuf> = pkg_config_prefix().into_iter().collect();
        candidates.push(PathBuf::from(FALLBACK_PREFIX));
        Self::find(std::env::var_os(VPP_PREFIX_ENV), &candidates)
    }

    /// [`discover`](Self::discover) with the variable's value and the
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

/// `pkg-config --variable=prefix vppcom`, if pkg-config runs and knows
/// the package.
fn pkg_config_prefix() -> Option<PathBuf> {
    let program = std::env::var_os("PKG_CONFIG").unwrap_or_else(|| "pkg-config".into());
    let out = Command::new(program)
        .args(["--variable=prefix", "vppcom"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let prefix = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !prefix.is_empty()).then(|| PathBuf::from(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_vpp_prefix_is_a_clear_error() {
        // A prefix that cannot exist, as `VPP_PREFIX` would give it (the
        // environment itself is not touched).
        let e = VppInstall::find(Some("/nonexistent/vls".into()), &[FALLBACK_PREFIX]).unwrap_err();
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

    #[test]
    fn discovery_takes_the_first_prefix_holding_bin_vpp() {
        let root = std::env::temp_dir().join(format!("vpp-harness-install-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        for p in [&a, &b] {
            std::fs::create_dir_all(p.join("bin")).unwrap();
            std::fs::write(p.join("bin/vpp"), "").unwrap();
        }
        let none = root.join("none");
        // The variable wins over every candidate.
        let found = VppInstall::find(Some(b.clone().into()), &[&a]).unwrap();
        assert_eq!(found.prefix(), b);
        // Without it, candidates in order, skipping one without bin/vpp.
        let found = VppInstall::find(None, &[&none, &a, &b]).unwrap();
        assert_eq!(found.prefix(), a);
        assert_eq!(VppInstall::at(&b).unwrap().vppctl_bin(), b.join("bin/vppctl"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
