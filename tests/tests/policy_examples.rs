//! The built-in default policy and every example policy under policies/, run as wasm by the
//! host: the builtin is embedded and evaluates a large snapshot, and each example policy's
//! fixture files pass.

use e2e::policy::{load, runtime, workspace_root, workspace_wasm};
use ecs_provisioner::policy::bench::{Shape, synthetic_snapshot};
use ecs_provisioner::policy::{PlaceRequest, PolicySource, fixture, validate};

#[test]
fn builtin_default_is_embedded_and_evaluates_a_large_snapshot() {
    let p = runtime()
        .load(&PolicySource::parse("builtin:default"), "{}")
        .expect("builtin:default loads");
    assert_eq!(p.name(), "builtin:default");
    let s = synthetic_snapshot(Shape {
        nodes: 1000,
        queued: 5000,
        offerings: 200,
    });
    let plan = p.scale(&s).expect("scale");
    validate::scale_plan(&s, &plan).unwrap();
    assert!(
        plan.launches.iter().map(|l| l.count).sum::<u32>() > 0,
        "5000 queued builds launch something: {plan:?}"
    );
    let request = PlaceRequest {
        now_ms: s.now_ms,
        template: s.templates[0].clone(),
        count: 40,
    };
    let placements = p.place(&request, &s.offerings, &[]).expect("place");
    assert!(placements.iter().map(|p| p.count).sum::<u32>() > 0);

    let err = runtime()
        .load(&PolicySource::parse("builtin:nope"), "{}")
        .unwrap_err();
    assert!(err.to_string().contains("unknown builtin policy"), "{err}");
}

#[test]
fn every_example_policy_passes_its_fixtures() {
    let dir = workspace_root().join("policies");
    // The Rust crates; Python and JavaScript policies are tested in policy_polyglot.rs.
    let mut crates: Vec<_> = std::fs::read_dir(&dir)
        .expect("policies/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    crates.sort();
    assert!(
        crates.len() >= 3,
        "expected the default policy and at least two more in {}",
        dir.display()
    );
    let mut report = String::new();
    let mut failed = 0;
    for c in crates {
        let manifest = std::fs::read_to_string(c.join("Cargo.toml")).unwrap();
        let package = manifest
            .lines()
            .find_map(|l| {
                l.strip_prefix("name = \"")
                    .map(|n| n.trim_end_matches('"').to_owned())
            })
            .expect("package name");
        let policy =
            load(&workspace_wasm(&package), "{}").unwrap_or_else(|e| panic!("{package}: {e}"));
        let mut out = Vec::new();
        let summary = fixture::run(&policy, &[c.join("fixtures")], &mut out).unwrap();
        report.push_str(&String::from_utf8_lossy(&out));
        failed += summary.failed;
        assert!(
            summary.passed > 0 || summary.failed > 0,
            "{package} has no fixture cases"
        );
    }
    assert_eq!(failed, 0, "fixture failures:\n{report}");
}
