// The build script of both binaries (`include!`d by producer/build.rs and consumer/build.rs): what `--version`
// prints besides the crate version.
// - ZLE_GIT_COMMIT: the commit built, from the environment (the Dockerfile passes it: the image has no .git) or
//   from git; `unknown` when neither says.
// - ZLE_CATALOGUES: a fingerprint (FNV-1a, 64 bits) of the catalogues built into the binaries, so that two images
//   of the same commit with different catalogues can be told apart.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn rerun_if_exists(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=ZLE_GIT_COMMIT");
    let given = std::env::var("ZLE_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty());
    let commit = given.or_else(|| git(&["rev-parse", "--short=12", "HEAD"])).unwrap_or_else(|| "unknown".into());
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = Path::new(&dir);
        rerun_if_exists(&dir.join("HEAD"));
        rerun_if_exists(&dir.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            rerun_if_exists(&dir.join(branch));
        }
    }
    println!("cargo:rustc-env=ZLE_GIT_COMMIT={commit}");

    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in ["catalogue.toml", "catalogue-old-export.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common").join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=ZLE_CATALOGUES={hash:016x}");
}
