//! The release logic of vpp-sys' build script (`vpp-sys/build/release.rs`):
//! release numbers, the `vpp_release_at_least_*` cfgs, which releases a
//! build accepts, and the guess from `vcl_private.h`. VPP-free.

#[allow(dead_code)]
#[path = "../vpp-sys/build/release.rs"]
mod release;

#[test]
fn release_numbers() {
    assert_eq!(release::number("25.10"), Some(2510));
    assert_eq!(release::number("26.02"), Some(2602));
    assert_eq!(release::number("26.10"), Some(2610));
    for bad in ["26", "26.2", "v26.02", "26.02.1", "ab.cd", ""] {
        assert_eq!(release::number(bad), None, "{bad:?}");
    }
    // Every known release has a number, in increasing order.
    let n: Vec<u32> = release::KNOWN.iter().map(|r| release::number(r).unwrap()).collect();
    assert!(n.windows(2).all(|w| w[0] < w[1]), "{n:?}");
}

#[test]
fn cfgs_grow_with_the_release() {
    assert!(release::cfgs_for(2510).is_empty());
    assert_eq!(release::cfgs_for(2602), ["vpp_release_at_least_26_02"]);
    assert_eq!(release::cfgs_for(2606), ["vpp_release_at_least_26_02", "vpp_release_at_least_26_06"]);
    assert_eq!(release::cfgs_for(2702), release::all_cfgs());
    // Every cfg a build can set is declared.
    for n in [2510, 2602, 2606, 2610, 2702] {
        for c in release::cfgs_for(n) {
            assert!(release::all_cfgs().contains(&c), "{c} not declared");
        }
    }
}

#[test]
fn builds_refuse_older_releases_and_warn_for_unknown_ones() {
    for r in release::KNOWN {
        assert_eq!(release::check(r, release::number(r).unwrap()), Ok(None), "{r}");
    }
    let err = release::check("25.06", 2506).unwrap_err();
    assert!(err.contains("not supported") && err.contains("25.10"), "{err}");
    let newer = release::check("27.02", 2702).unwrap().expect("a warning");
    assert!(newer.contains("newer"), "{newer}");
    assert!(release::check("26.04", 2604).unwrap().is_some());
}

#[test]
fn the_internal_header_tells_25_10_from_later_releases() {
    assert_eq!(release::guess_from_header("typedef struct vcl_cfg_t_\n{\n  u8 x;\n} vcl_cfg_t;\n"), "26.02");
    assert_eq!(
        release::guess_from_header("typedef struct vppcom_cfg_t_\n{\n  u8 x;\n} vppcom_cfg_t;\n"),
        "25.10"
    );
}
