//! Fetches the official ONNX Runtime library for the target architecture from the
//! pinned `onnxruntime` wheel (with pip), so that `cargo run` works on a fresh clone
//! with nothing else installed. The binary finds it through LINESIGHT_BUNDLED_ORT;
//! a configured library (config or ORT_DYLIB_PATH) always wins at run time.
//!
//! Skipped when LINESIGHT_NO_ORT_FETCH is set (offline builds that bring their own).

use std::path::{Path, PathBuf};
use std::process::Command;

const ORT_VERSION: &str = "1.31.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LINESIGHT_NO_ORT_FETCH");
    if std::env::var_os("LINESIGHT_NO_ORT_FETCH").is_some() {
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || !(arch == "x86_64" || arch == "aarch64") {
        println!("cargo:warning=no ONNX Runtime wheel is fetched for {arch}-{os}; set ORT_DYLIB_PATH at run time");
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let lib = out
        .join(format!("onnxruntime-{ORT_VERSION}-{arch}"))
        .join(format!("libonnxruntime.so.{ORT_VERSION}"));
    if !lib.exists() {
        if let Err(e) = fetch(&arch, &lib) {
            println!("cargo:warning=could not fetch ONNX Runtime {ORT_VERSION} for {arch} ({e}); set ORT_DYLIB_PATH or runtime.onnxruntime_library at run time");
            return;
        }
    }
    println!("cargo:rustc-env=LINESIGHT_BUNDLED_ORT={}", lib.display());
}

fn fetch(arch: &str, lib: &Path) -> Result<(), String> {
    let dir = lib.parent().expect("lib has a parent");
    let wheels = dir.join("wheel");
    std::fs::create_dir_all(&wheels).map_err(|e| e.to_string())?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    // Any CPython 3 ABI works: only the shared library inside is used.
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
    ]);
    for tag in ["manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014"] {
        pip.args(["--platform", &format!("{tag}_{arch}")]);
    }
    pip.arg(format!("onnxruntime=={ORT_VERSION}")).arg("-d").arg(&wheels);
    let status = pip.status().map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download onnxruntime=={ORT_VERSION} failed ({status})"));
    }
    let extract = format!(
        "import glob, sys, zipfile\n\
         whl = glob.glob(sys.argv[1] + '/onnxruntime-*.whl')[0]\n\
         with zipfile.ZipFile(whl) as z:\n\
         \x20   name = 'onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}'\n\
         \x20   open(sys.argv[2], 'wb').write(z.read(name))\n"
    );
    let tmp = lib.with_extension("partial");
    let status = Command::new(&python)
        .args(["-c", &extract])
        .arg(&wheels)
        .arg(&tmp)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("the wheel holds no libonnxruntime.so".into());
    }
    std::fs::rename(&tmp, lib).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&wheels);
    Ok(())
}
