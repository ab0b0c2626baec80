//! Installs the console's npm packages (`npm ci` from package-lock.json, into OUT_DIR) and
//! writes `console_assets.rs`, which embeds the files of `web/` and uPlot's distribution.
//!
//! Without Node.js the console is left out with a warning and the rest builds; with
//! `BRAID_CONSOLE=off` it is left out on purpose; with `BRAID_CONSOLE=required` (the test
//! suite) a console that cannot be built fails the build.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files uPlot's package contributes, from `node_modules/uplot/dist/`.
const UPLOT_FILES: &[&str] = &["uPlot.iife.min.js", "uPlot.min.css"];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// FNV-1a over the bytes: an ETag that changes when the file does.
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}-{}\"", bytes.len())
}

fn write_assets(out: &Path, files: &[(String, PathBuf)], left_out: Option<&str>) {
    let mut code = String::from("static ASSETS: &[Asset] = &[\n");
    for (path, source) in files {
        let bytes =
            fs::read(source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
        let _ = writeln!(
            code,
            "    Asset {{ path: {path:?}, bytes: include_bytes!({source:?}), content_type: {:?}, etag: {:?} }},",
            content_type(path),
            etag(&bytes),
            source = source.display().to_string(),
        );
    }
    code.push_str("];\n");
    let _ = writeln!(code, "const LEFT_OUT: Option<&str> = {left_out:?};");
    fs::write(out.join("console_assets.rs"), code).expect("writing console_assets.rs");
}

fn leave_out(out: &Path, why: &str) {
    if env::var("BRAID_CONSOLE").as_deref() == Ok("required") {
        panic!("the console cannot be built: {why} (BRAID_CONSOLE=required)");
    }
    println!(
        "cargo::warning=the web console is left out of this build: {why}. `braid serve` answers / with a note; install Node.js 18+ with npm and rebuild to include it."
    );
    write_assets(out, &[], Some(why));
}

/// Runs `npm ci` in `dir` unless its node_modules already match `lock`.
fn npm_ci(dir: &Path, lock: &str) -> Result<(), String> {
    let installed = dir.join("node_modules/.package-lock.json");
    let stamp = dir.join("installed-lock.json");
    if installed.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(lock) {
        return Ok(());
    }
    let output = Command::new("npm")
        .args([
            "ci",
            "--omit=dev",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("npm could not be run ({e}); Node.js with npm is needed"))?;
    if !output.status.success() {
        return Err(format!(
            "`npm ci` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    fs::write(&stamp, lock).map_err(|e| e.to_string())?;
    Ok(())
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    let web = manifest.join("web");
    for watched in ["web", "package.json", "package-lock.json", "build.rs"] {
        println!(
            "cargo::rerun-if-changed={}",
            manifest.join(watched).display()
        );
    }
    println!("cargo::rerun-if-env-changed=BRAID_CONSOLE");
    if env::var("BRAID_CONSOLE").as_deref() == Ok("off") {
        println!("cargo::warning=the web console is left out of this build (BRAID_CONSOLE=off)");
        write_assets(
            &out,
            &[],
            Some("left out at build time (BRAID_CONSOLE=off)"),
        );
        return;
    }
    let npm_dir = out.join("npm");
    fs::create_dir_all(&npm_dir).expect("creating OUT_DIR/npm");
    let lock =
        fs::read_to_string(manifest.join("package-lock.json")).expect("console/package-lock.json");
    fs::copy(manifest.join("package.json"), npm_dir.join("package.json"))
        .expect("copying package.json");
    fs::write(npm_dir.join("package-lock.json"), &lock).expect("copying package-lock.json");
    if let Err(why) = npm_ci(&npm_dir, &lock) {
        leave_out(&out, &why);
        return;
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut own: Vec<PathBuf> = fs::read_dir(&web)
        .expect("console/web")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    own.sort();
    for path in own {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 names")
            .to_string();
        files.push((name, path));
    }
    for name in UPLOT_FILES {
        let path = npm_dir.join("node_modules/uplot/dist").join(name);
        if !path.exists() {
            leave_out(&out, &format!("{} is missing after npm ci", path.display()));
            return;
        }
        files.push(((*name).to_string(), path));
    }
    write_assets(&out, &files, None);
}
