//! cargo test: struct layouts agree with c_api.h, and the 2-rank TP linear
//! check over UCX via tppp-run (TPPP_RUN, TPPP_STRUCT_LAYOUT from ctest).
use std::process::Command;
use tppp::sys;

#[test]
fn struct_sizes_match_the_header() {
    let bin = std::env::var("TPPP_STRUCT_LAYOUT").expect("TPPP_STRUCT_LAYOUT");
    let out = Command::new(bin).arg("--flat").output().expect("struct_layout");
    let text = String::from_utf8(out.stdout).unwrap();
    let size = |name: &str| -> usize {
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} size "))).expect(name).trim().parse().unwrap()
    };
    assert_eq!(size("tppp_group_params"), std::mem::size_of::<sys::tppp_group_params>());
    assert_eq!(size("tppp_group_info"), std::mem::size_of::<sys::tppp_group_info>());
    assert_eq!(size("tppp_tensor"), std::mem::size_of::<sys::tppp_tensor>());
    assert_eq!(size("tppp_layer_params"), std::mem::size_of::<sys::tppp_layer_params>());
    let off = |field: &str| -> usize {
        text.lines().find_map(|l| l.strip_prefix(&format!("{field} "))).expect(field).trim().parse().unwrap()
    };
    let p = sys::tppp_layer_params::default();
    let base = &p as *const _ as usize;
    assert_eq!(off("tppp_layer_params.in_features"), &p.in_features as *const _ as usize - base);
    assert_eq!(off("tppp_layer_params.vocab_size"), &p.vocab_size as *const _ as usize - base);
    assert_eq!(off("tppp_layer_params.gather_to_rank0"), &p.gather_to_rank0 as *const _ as usize - base);
}

#[test]
fn version_major_matches() {
    assert_eq!(tppp::version().0, sys::TPPP_VERSION_MAJOR);
}

#[test]
fn two_rank_tp_linear_over_ucx() {
    let run = std::env::var("TPPP_RUN").expect("TPPP_RUN");
    // The example sits next to this test binary: target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("tp_linear");
    let out = Command::new(run).args(["-n", "2", "--timeout", "120", "--"]).arg(&example).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("OK").count(), 2, "{stdout}");
}
