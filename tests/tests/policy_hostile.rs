//! Hostile policies (tests/hostile/*): each is contained with a clear typed error within its
//! budget, and a good policy evaluates normally in the same runtime afterwards.

use std::time::{Duration, Instant};

use e2e::policy::{
    load, load_in, roomy_limits, roomy_runtime, runtime, test_limits, workspace_wasm,
};
use ecs_provisioner::policy::bench::{Shape, synthetic_snapshot};
use ecs_provisioner::policy::{Cause, Function, PlaceRequest, Policy, PolicySource, Snapshot};

fn snapshot() -> Snapshot {
    synthetic_snapshot(Shape {
        nodes: 20,
        queued: 30,
        offerings: 8,
    })
}

fn request(s: &Snapshot) -> PlaceRequest {
    PlaceRequest {
        now_ms: s.now_ms,
        template: s.templates[0].clone(),
        count: 3,
    }
}

fn hostile(name: &str) -> Policy {
    load(&workspace_wasm(&format!("hostile-{name}")), "{}")
        .unwrap_or_else(|e| panic!("hostile-{name} loads: {e}"))
}

/// The default policy, evaluated in the same shared runtime after the hostile one.
fn good_policy_still_works() {
    let good = load(&workspace_wasm("policy-default"), "{}").expect("policy-default loads");
    let s = snapshot();
    good.scale(&s).expect("the default policy still scales");
    good.place(&request(&s), &s.offerings, &[])
        .expect("the default policy still places");
}

#[test]
fn infinite_loop_times_out() {
    let p = hostile("infinite-loop");
    let started = Instant::now();
    let err = p.scale(&snapshot()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        (err.function, &err.cause),
        (
            Some(Function::Scale),
            &Cause::Timeout(test_limits().deadline)
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("ran past its time budget of 100 ms"),
        "{err}"
    );
    // Bounded by the deadline rather than hanging (slack for a loaded 2-core machine).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    good_policy_still_works();
}

#[test]
fn memory_bomb_hits_the_cap() {
    // With the 100 ms test deadline a loaded machine may time the bomb out first; the roomy
    // runtime's long deadline makes the memory cap the limit that stops it.
    let bomb = load_in(
        &roomy_runtime(),
        &workspace_wasm("hostile-memory-bomb"),
        "{}",
    )
    .expect("loads");
    let err = bomb.scale(&snapshot()).unwrap_err();
    assert_eq!(err.function, Some(Function::Scale));
    let cap = roomy_limits().memory_bytes;
    assert!(
        matches!(err.cause, Cause::MemoryCap { cap: c, requested } if c == cap && requested > cap),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("exceeded the memory cap of 32 MiB"),
        "{err}"
    );
    // The same bomb under the shared runtime is stopped too, by whichever limit comes first.
    let err = hostile("memory-bomb").scale(&snapshot()).unwrap_err();
    assert!(matches!(err.kind(), "memory-cap" | "timeout"), "{err}");
    good_policy_still_works();
}

#[test]
fn trap_is_a_trap_with_the_panic_message() {
    let p = hostile("trap");
    let s = snapshot();
    let err = p.scale(&s).unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("trap", Some(Function::Scale)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("hostile-trap: deliberate panic in scale"),
        "{err}"
    );
    let err = p.place(&request(&s), &s.offerings, &[]).unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("trap", Some(Function::Place)),
        "{err}"
    );
    assert!(err.to_string().contains("unreachable"), "{err}");
    good_policy_still_works();
}

#[test]
fn nonsense_is_invalid_output() {
    let p = hostile("nonsense");
    let s = snapshot();
    let err = p.scale(&s).unwrap_err();
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("launches[0]: unknown template `no-such-template`"),
        "{err}"
    );
    let err = p.place(&request(&s), &s.offerings, &[]).unwrap_err();
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("placements[0]: offering index 8 out of range (there are 8 offerings)"),
        "{err}"
    );
    good_policy_still_works();
}

#[test]
fn wrong_version_names_both_versions() {
    let wasm = workspace_wasm("hostile-wrong-version");
    let err = runtime().load(&PolicySource::Path(wasm), "{}").unwrap_err();
    assert_eq!(err.kind(), "incompatible-contract");
    assert_eq!(
        err.to_string(),
        "policy `hostile_wrong_version` was built for contract ecs-provisioner:policy@0.3.0; this host accepts 0.2.x, 0.1.x"
    );
    good_policy_still_works();
}
