//! The console's assets, embedded at build time by `build.rs`: the files of `web/` and
//! uPlot's from the npm package pinned in `package-lock.json`. `braid serve` serves them at
//! `/` and `/console/…`.
//!
//! When Node.js (npm) is absent at build time, or `BRAID_CONSOLE=off`, the console is left out:
//! [`left_out`] says why, and the rest of Braid builds and runs as before.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its path under `/console/`, e.g. `app.js`.
    pub path: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
    /// Its Content-Type.
    pub content_type: &'static str,
    /// A strong ETag of its bytes (quoted).
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The page served at `/`.
pub const INDEX: &str = "index.html";

/// The embedded file at `path` (relative to `/console/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Every embedded file.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

/// Why the console is not in this build, if it is not.
pub fn left_out() -> Option<&'static str> {
    LEFT_OUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_add_less_than_one_megabyte() {
        let total: usize = assets().iter().map(|a| a.bytes.len()).sum();
        assert!(total < 1_000_000, "the console's assets are {total} bytes");
    }

    #[test]
    fn the_index_and_every_file_it_loads_are_embedded() {
        if let Some(why) = left_out() {
            // Only on a machine without Node.js; CI has it (scripts/test.sh checks).
            eprintln!("the console is left out of this build: {why}");
            return;
        }
        let index = std::str::from_utf8(asset(INDEX).expect("index.html").bytes).unwrap();
        for loaded in ["uPlot.iife.min.js", "uPlot.min.css", "app.js", "app.css"] {
            assert!(index.contains(&format!("/console/{loaded}")), "{loaded}");
            assert!(asset(loaded).is_some(), "{loaded} is embedded");
        }
        let app = std::str::from_utf8(asset("app.js").unwrap().bytes).unwrap();
        for module in ["lib.js", "overview.js", "view.js", "alerts.js", "jobs.js"] {
            assert!(app.contains(&format!("./{module}")), "{module}");
            assert!(asset(module).is_some(), "{module} is embedded");
        }
    }
}
