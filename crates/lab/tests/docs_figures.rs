//! The figures in docs/lab/ are the ones the lab draws at the default seed. Regenerate
//! them with `LAB_REWRITE_DOCS=1 cargo test -p lab --test docs_figures`.

use std::path::PathBuf;

#[test]
fn docs_figures_match_the_default_seed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/lab");
    let rewrite = std::env::var_os("LAB_REWRITE_DOCS").is_some();
    if rewrite {
        std::fs::create_dir_all(&dir).expect("docs/lab");
    }
    for name in lab::list() {
        let report = lab::run(name, lab::DEFAULT_SEED, false).expect("known");
        for fig in &report.figures {
            let path = dir.join(format!("{name}-{}.svg", fig.id));
            let svg = fig.to_svg();
            if rewrite {
                std::fs::write(&path, &svg).expect("write figure");
                continue;
            }
            let stored = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!("{} missing; run with LAB_REWRITE_DOCS=1", path.display())
            });
            assert!(
                stored == svg,
                "{} is stale; run with LAB_REWRITE_DOCS=1",
                path.display()
            );
        }
    }
}
