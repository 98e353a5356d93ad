// Links libtppp: TPPP_LIB_DIR (a build or install lib dir), else the libdir
// `pkg-config tppp` knows (an installed prefix), else the system path. The
// directory also becomes the binaries' runtime path (no LD_LIBRARY_PATH).
fn main() {
    println!("cargo:rerun-if-env-changed=TPPP_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let dir = std::env::var("TPPP_LIB_DIR").ok().or_else(|| {
        let out = std::process::Command::new("pkg-config").args(["--variable=libdir", "tppp"]).output().ok()?;
        let d = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !d.is_empty()).then_some(d)
    });
    if let Some(dir) = dir {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-lib=dylib=tppp");
}
