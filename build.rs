//! Checks the build tools the optional C libraries need, before they are compiled.
//!
//! Without this, a missing nasm or an old CMake surfaces minutes into the build as a CMake
//! stack trace from libjpeg-turbo or libhdf5; here it is one line naming the tool and how to
//! install it, which is what `pip install` of the sdist shows. Nothing else is done here.

use std::env;
use std::process::{exit, Command};

/// libhdf5's CMake build (hdf5-metno-src) needs this CMake or newer.
const HDF5_CMAKE: (u32, u32) = (3, 26);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let jpeg = env::var_os("CARGO_FEATURE_JPEG").is_some();
    let hdf5 = env::var_os("CARGO_FEATURE_HDF5").is_some();
    if !jpeg && !hdf5 {
        return;
    }
    // The cmake crate runs $CMAKE when it is set, else `cmake` from PATH; so do we.
    let cmake = env::var("CMAKE").unwrap_or_else(|_| "cmake".to_string());
    let Some(version) = output(&cmake, "--version") else {
        fail(&format!(
            "{cmake} not found: the jpeg and hdf5 features build C libraries with CMake >= {}.{}; \
             install it (pip install cmake, or your system's package) or set CMAKE",
            HDF5_CMAKE.0, HDF5_CMAKE.1
        ));
    };
    if hdf5 {
        if let Some(found) = cmake_version(&version) {
            if found < HDF5_CMAKE {
                fail(&format!(
                    "CMake {}.{} found ({cmake}), but the hdf5 feature needs CMake >= {}.{}; \
                     pip install \"cmake>=3.26\" and put it first on PATH, or set CMAKE",
                    found.0, found.1, HDF5_CMAKE.0, HDF5_CMAKE.1
                ));
            }
        }
    }
    // libjpeg-turbo's SIMD code is assembly; without nasm its build would stop (the
    // require-simd feature: a build without SIMD decodes several times slower).
    if jpeg && output("nasm", "-v").is_none() {
        fail(
            "nasm not found: the jpeg feature builds libjpeg-turbo's SIMD code with it; install \
             it (Debian/Ubuntu: apt-get install nasm, Fedora: dnf install nasm, macOS: brew \
             install nasm, Windows: choco install nasm) and build again",
        );
    }
}

/// What `program arg` printed, or `None` when it could not run or failed.
fn output(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `(major, minor)` from `cmake version 3.31.6`; `None` for any other text (then the
/// build goes on and CMake itself decides).
fn cmake_version(text: &str) -> Option<(u32, u32)> {
    let number = text.lines().next()?.split_whitespace().nth(2)?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One line on stderr (cargo shows it under the failed build script) and a failed build.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}
