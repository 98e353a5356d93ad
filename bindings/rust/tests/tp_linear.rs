//! cargo test: struct layouts agree with c_api.h, the 2-rank TP linear check
//! over UCX and the 4-rank model check via tppp-run (TPPP_RUN,
//! TPPP_STRUCT_LAYOUT, TPPP_FIXTURES from ctest).
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
    assert_eq!(size("tppp_model_params"), std::mem::size_of::<sys::tppp_model_params>());
    assert_eq!(size("tppp_model_info"), std::mem::size_of::<sys::tppp_model_info>());
    assert_eq!(size("tppp_batch"), std::mem::size_of::<sys::tppp_batch>());
    assert_eq!(size("tppp_generate_params"), std::mem::size_of::<sys::tppp_generate_params>());
    let off = |field: &str| -> usize {
        text.lines().find_map(|l| l.strip_prefix(&format!("{field} "))).expect(field).trim().parse().unwrap()
    };
    let p = sys::tppp_layer_params::default();
    let base = &p as *const _ as usize;
    assert_eq!(off("tppp_layer_params.in_features"), &p.in_features as *const _ as usize - base);
    assert_eq!(off("tppp_layer_params.vocab_size"), &p.vocab_size as *const _ as usize - base);
    assert_eq!(off("tppp_layer_params.gather_to_rank0"), &p.gather_to_rank0 as *const _ as usize - base);
    // SAFETY: a zeroed plain-data struct, only its field addresses are read.
    let g: sys::tppp_generate_params = unsafe { std::mem::zeroed() };
    let base = &g as *const _ as usize;
    assert_eq!(off("tppp_generate_params.on_token"), &g.on_token as *const _ as usize - base);
    assert_eq!(off("tppp_generate_params.prefill_chunk"), &g.prefill_chunk as *const _ as usize - base);
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

#[test]
fn four_rank_model_tp2_pp2_matches_transformers() {
    let run = std::env::var("TPPP_RUN").expect("TPPP_RUN");
    let fixtures = std::env::var("TPPP_FIXTURES").expect("TPPP_FIXTURES");
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("model");
    let out = Command::new(run).args(["-n", "4", "--timeout", "120", "--"]).arg(&example)
        .arg(format!("{fixtures}/models/qwen3")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("OK").count(), 4, "{stdout}");
}
