// Links libtppp: TPPP_LIB_DIR (a build or install lib dir) or the system path.
fn main() {
    println!("cargo:rerun-if-env-changed=TPPP_LIB_DIR");
    if let Ok(dir) = std::env::var("TPPP_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-lib=dylib=tppp");
}
