//! Runs the vector sets of `tests/vectors/` that the independent Python generator
//! (`tests/vectors/generate.py`) writes besides the envelope vectors: `audit` (audit
//! chains) and `webhooks` (Standard Webhooks `v1` and `v1a` signatures).

mod audit;
mod webhooks;

use serde_json::Value;
use std::path::Path;

/// The files of `tests/vectors/<set>/`, sorted, as `(file name, JSON)`.
fn vectors(set: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors").join(set);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the {set} vectors are missing from {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable");
            (name, serde_json::from_str(&text).expect("JSON"))
        })
        .collect()
}
