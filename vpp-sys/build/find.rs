//! Locating an installed VPP (public headers + libvppcom) and the source tree
//! that carries VCL's internal headers.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the build found.
pub struct Vpp {
    /// The install prefix (`bin/vpp`, `include/`, `lib*/`); for a
    /// pkg-config install, the `.pc` file's `prefix` variable.
    pub prefix: PathBuf,
    /// Directory holding `vcl/vppcom.h`, `vppinfra/`, `vnet/`, `vpp/app/version.h`.
    pub include: PathBuf,
    /// Directory holding `libvppcom.so`.
    pub libdir: PathBuf,
    /// `src/` of a VPP source tree, holding `vcl/vcl_private.h`.
    pub src: PathBuf,
    /// Version of the installed VPP, e.g. `26.06-release`.
    pub version: String,
}

/// One place that was searched and why it was rejected.
struct Attempt {
    what: String,
    why: String,
}

const LIBDIR_SUFFIXES: &[&str] = &["lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu", "lib64", "lib"];

/// Looks for a VPP install in the documented order: `VPP_PREFIX`, pkg-config, `/usr`.
/// Returns a full, human-readable explanation when nothing usable is found.
pub fn find() -> Result<Vpp, String> {
    let mut attempts = Vec::new();
    let install = find_install(&mut attempts);
    let src = find_src(&mut attempts);
    match (install, src) {
        (Some((prefix, include, libdir)), Some(src)) => {
            let version = read_installed_version(&include).unwrap_or_else(|| "unknown".into());
            Ok(Vpp { prefix, include, libdir, src, version })
        }
        _ => Err(explain(&attempts)),
    }
}

/// (prefix, include dir, lib dir) of the install found.
fn find_install(attempts: &mut Vec<Attempt>) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if let Some(prefix) = env::var_os("VPP_PREFIX") {
        let prefix = PathBuf::from(prefix);
        return match check_prefix(&prefix) {
            Ok((include, libdir)) => Some((prefix, include, libdir)),
            Err(why) => {
                attempts.push(Attempt { what: format!("VPP_PREFIX={}", prefix.display()), why });
                None
            }
        };
    }
    attempts.push(Attempt { what: "VPP_PREFIX".into(), why: "not set".into() });

    match pkg_config::Config::new().cargo_metadata(false).env_metadata(false).probe("vppcom") {
        Ok(lib) => {
            let include = lib.include_paths.iter().find(|p| p.join("vcl/vppcom.h").is_file()).cloned();
            let libdir = lib.link_paths.iter().find(|p| has_libvppcom(p)).cloned();
            match (include, libdir) {
                (Some(i), Some(l)) => {
                    // The .pc file's own prefix; else the one its include
                    // directory lies in.
                    let prefix = pkg_config::get_variable("vppcom", "prefix")
                        .ok()
                        .filter(|p| !p.trim().is_empty())
                        .map(|p| PathBuf::from(p.trim()))
                        .unwrap_or_else(|| i.parent().unwrap_or(&i).to_path_buf());
                    return Some((prefix, i, l));
                }
                _ => attempts.push(Attempt {
                    what: "pkg-config vppcom".into(),
                    why: "found, but its paths hold no vcl/vppcom.h or libvppcom.so".into(),
                }),
            }
        }
        Err(e) => attempts.push(Attempt {
            what: "pkg-config vppcom".into(),
            why: format!(
                "no usable vppcom.pc ({})",
                e.to_string().lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("not found")
            ),
        }),
    }

    match check_prefix(Path::new("/usr")) {
        Ok((include, libdir)) => Some((PathBuf::from("/usr"), include, libdir)),
        Err(why) => {
            attempts.push(Attempt { what: "prefix /usr".into(), why });
            None
        }
    }
}

fn has_libvppcom(dir: &Path) -> bool {
    dir.join("libvppcom.so").exists()
}

fn check_prefix(prefix: &Path) -> Result<(PathBuf, PathBuf), String> {
    let include = prefix.join("include");
    if !include.join("vcl/vppcom.h").is_file() {
        return Err(format!("no {}", include.join("vcl/vppcom.h").display()));
    }
    LIBDIR_SUFFIXES
        .iter()
        .map(|s| prefix.join(s))
        .find(|d| has_libvppcom(d))
        .map(|libdir| (include, libdir))
        .ok_or_else(|| {
            format!("no libvppcom.so under {}/{{{}}}", prefix.display(), LIBDIR_SUFFIXES.join(","))
        })
}

/// Accepts either the root of a VPP checkout or its `src/` directory.
fn find_src(attempts: &mut Vec<Attempt>) -> Option<PathBuf> {
    let Some(dir) = env::var_os("VPP_SRC_DIR") else {
        attempts.push(Attempt {
            what: "VPP_SRC_DIR".into(),
            why:
                "not set (vcl_private.h is not installed by VPP; a source tree of the same version is needed)"
                    .into(),
        });
        return None;
    };
    let dir = PathBuf::from(dir);
    for candidate in [dir.join("src"), dir.clone()] {
        if candidate.join("vcl/vcl_private.h").is_file() {
            return Some(candidate);
        }
    }
    attempts.push(Attempt {
        what: format!("VPP_SRC_DIR={}", dir.display()),
        why: "holds neither src/vcl/vcl_private.h nor vcl/vcl_private.h".into(),
    });
    None
}

/// Reads `VPP_BUILD_VER` from the installed `vpp/app/version.h`.
fn read_installed_version(include: &Path) -> Option<String> {
    let text = std::fs::read_to_string(include.join("vpp/app/version.h")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("#define VPP_BUILD_VER"))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// Best-effort version of a source tree: `src/scripts/.version` or `git describe`.
pub fn source_version(src: &Path) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string(src.join("scripts/.version")) {
        return Some(v.trim().to_string());
    }
    let out = std::process::Command::new("git")
        .args(["describe", "--long", "--match", "v*"])
        .current_dir(src)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `26.06-release` / `v26.06-0-gabc` / `26.06.1-rc0` → `26.06`.
pub fn release_of(version: &str) -> String {
    let v = version.trim_start_matches('v');
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => format!("{a}.{b}"),
        _ => v.to_string(),
    }
}

fn explain(attempts: &[Attempt]) -> String {
    let mut s = String::from(
        "vpp-sys: could not find VPP (libvppcom + headers) and its internal VCL headers.\n\
         Looked in:\n",
    );
    for a in attempts {
        let _ = writeln!(s, "  - {}: {}", a.what, a.why);
    }
    s.push_str(
        "Set the variables and build again:\n\
         \x20 VPP_PREFIX=<install prefix with include/vcl/vppcom.h and lib*/libvppcom.so>\n\
         \x20 VPP_SRC_DIR=<VPP source tree of the same version, holding src/vcl/vcl_private.h>\n\
         or build without the `vpp` feature (the VPP-free part of the crate).",
    );
    s
}
