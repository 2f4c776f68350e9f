//! Structural invariants of the workspace that ARCHITECTURE.md promises: which crates may talk to
//! a database, and how files are laid out.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" && name != "fuzz" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `[dependencies]` table of a crate's Cargo.toml, as text.
fn dependencies(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).expect("read Cargo.toml");
    let start = text.find("[dependencies]").map_or(text.len(), |i| i + "[dependencies]".len());
    let rest = &text[start..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[test]
fn only_storage_talks_to_databases() {
    let root = workspace();
    let drivers = ["sqlx", "fred", "qdrant-client", "pgvector"];
    // bench measures storage against raw-SQL baselines in the same process.
    let allowed = ["storage", "tests", "bench"];
    let mut manifests = vec![root.join("Cargo.toml")];
    for dir in ["contracts", "storage", "actors", "supervisor", "cluster", "gateway", "tests", "bench"] {
        manifests.push(root.join(dir).join("Cargo.toml"));
    }
    for manifest in manifests {
        let crate_dir = manifest.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
        if allowed.contains(&crate_dir) {
            continue;
        }
        let deps = dependencies(&manifest);
        for driver in drivers {
            let uses = deps.lines().any(|l| {
                l.trim_start().starts_with(&format!("{driver}.")) || l.trim_start().starts_with(&format!("{driver} "))
            });
            assert!(!uses, "{}: depends on {driver}; database access belongs in flywheel-storage", manifest.display());
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for_and_none_is_mod_rs() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["src", "contracts", "storage", "actors", "supervisor", "cluster", "gateway", "tests", "bench"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    for file in files {
        assert_ne!(file.file_name().and_then(|n| n.to_str()), Some("mod.rs"), "{}: use foo.rs + foo/", file.display());
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.trim_start().starts_with("//!"), "{} does not open with a //! line", file.display());
    }
}
