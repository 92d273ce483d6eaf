//! The house rules that a compiler does not check: no import circle between the modules of
//! any host crate (scripts/import-cycles.py; crates themselves cannot form circles in cargo).

use std::path::Path;
use std::process::Command;

#[test]
fn no_import_circles_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("python3")
        .arg(root.join("scripts/import-cycles.py"))
        .output()
        .expect("python3 runs scripts/import-cycles.py (installed by scripts/setup-test-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("no import circles in 11 crates"), "the script must see every host crate: {text}");
}
