//! The VPP releases this crate knows, and what the build tells the shim and
//! the Rust code about the one it binds.
//!
//! A release `YY.MM` is the number `YYMM` (26.02 → 2602). The shim is
//! compiled with `-DVPPSYS_RELEASE=<number>`; Rust code gets one cfg per
//! known release from the second on, set when the bound release is that one
//! or newer: `vpp_release_at_least_26_02`, `vpp_release_at_least_26_06`, …
//! Every known cfg name is declared (`cargo::rustc-check-cfg`) whether it is
//! set or not, so a misspelt one is a warning.

/// Releases the bindings, the shim and the real-VPP suite were made for and
/// are tested with, oldest first. `26.10` is the development branch.
pub const KNOWN: &[&str] = &["25.10", "26.02", "26.06", "26.10"];

/// `"26.02"` → `Some(2602)`; anything else → `None`.
pub fn number(release: &str) -> Option<u32> {
    let (y, m) = release.split_once('.')?;
    if y.len() != 2 || m.len() != 2 {
        return None;
    }
    Some(y.parse::<u32>().ok()? * 100 + m.parse::<u32>().ok()?)
}

/// The cfg that says "release `release` or newer": `26.02` →
/// `vpp_release_at_least_26_02`.
pub fn cfg_name(release: &str) -> String {
    format!("vpp_release_at_least_{}", release.replace('.', "_"))
}

/// Every cfg name a build can set (all known releases but the oldest, which
/// every supported build is at least).
pub fn all_cfgs() -> Vec<String> {
    KNOWN[1..].iter().map(|r| cfg_name(r)).collect()
}

/// The cfgs to set for release number `n`.
pub fn cfgs_for(n: u32) -> Vec<String> {
    KNOWN[1..].iter().filter(|r| number(r).is_some_and(|k| n >= k)).map(|r| cfg_name(r)).collect()
}

/// Whether the build can go on for release number `n`: `Ok(None)` for a
/// known release, `Ok(Some(warning))` for one newer than every known one
/// (built as the newest known, untested), `Err(message)` for one older than
/// the oldest known (its internal VCL structures are not handled).
pub fn check(release: &str, n: u32) -> Result<Option<String>, String> {
    let oldest = number(KNOWN[0]).expect("KNOWN holds YY.MM releases");
    let newest = KNOWN[KNOWN.len() - 1];
    if KNOWN.contains(&release) {
        Ok(None)
    } else if n < oldest {
        Err(format!(
            "vpp-sys: VPP {release} is not supported: the oldest supported release is {} \
             (supported: {}). The shim reaches into VCL's internal structures, which differ \
             before {}.",
            KNOWN[0],
            KNOWN.join(", "),
            KNOWN[0]
        ))
    } else if n > number(newest).expect("KNOWN holds YY.MM releases") {
        Ok(Some(format!(
            "vpp-sys: VPP {release} is newer than every release this crate was tested with \
             ({}); building it as {newest}. Run the real-VPP suite before relying on it.",
            KNOWN.join(", ")
        )))
    } else {
        // Between two known releases (e.g. a point release like 26.04 that
        // does not exist upstream): treat as the previous known one.
        Ok(Some(format!(
            "vpp-sys: VPP {release} is not one of the releases this crate was tested with ({}); \
             building it as the nearest older one.",
            KNOWN.join(", ")
        )))
    }
}

/// The release a source tree's `vcl_private.h` looks like, for a VPP whose
/// version cannot be read: `vcl_cfg_t` appeared in 26.02 (before, the
/// internal configuration type was `vppcom_cfg_t`). 26.06 and 26.10 have
/// the same internal VCL headers as 26.02, so this tells 25.10 from 26.02
/// only.
pub fn guess_from_header(vcl_private_h: &str) -> &'static str {
    if vcl_private_h.contains("} vcl_cfg_t;") {
        "26.02"
    } else {
        "25.10"
    }
}
