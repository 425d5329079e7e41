//! Every committed corpus entry (`fuzz/corpus/<target>/`) and regression input
//! (`fuzz/regressions/<target>/`, a crash found once) through its target: a panic fails.

use std::path::Path;

#[test]
fn every_corpus_entry_and_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in eventseal_fuzz::TARGETS {
        let target = eventseal_fuzz::target(name).expect("a target");
        let mut replayed = 0;
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let input = std::fs::read(&path).expect("read an input");
                if let Err(panic) = std::panic::catch_unwind(|| target(&input)) {
                    std::panic::resume_unwind(Box::new(format!("{}: {panic:?}", path.display())));
                }
                replayed += 1;
            }
        }
        assert!(
            replayed >= 5,
            "target {name}: only {replayed} corpus entries (seed with fuzz/seed.py)"
        );
    }
}
