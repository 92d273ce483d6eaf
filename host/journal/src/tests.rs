use std::collections::BTreeMap;
use std::io::Read;

use ecsp_config::JournalConfig;
use ecsp_engine::CycleReport;
use ecsp_engine::act::{LaunchFailure, Launched};
use ecsp_engine::model::{Clamp, Plan, PlannedLaunch, PlannedRemoval};

use super::*;

const SECRET: &str = "s3cr3t-free-text";

fn journal(dir: &std::path::Path) -> Journal {
    let config = JournalConfig { dir: Some(dir.to_owned()), ..Default::default() };
    Journal::open(&config, "ci", BTreeMap::from([("linux".to_owned(), "linux&&docker".to_owned())])).unwrap()
}

fn report(cycle: u64, queue: &[(u64, u64)], running: &[(&str, &str, u64)]) -> CycleReport {
    CycleReport {
        cycle,
        at_ms: cycle * 10_000,
        queue_items: queue.iter().map(|(id, since)| ("linux".to_owned(), *id, *since)).collect(),
        running_builds: running.iter().map(|(i, key, at)| (i.to_string(), "linux".to_owned(), key.to_string(), *at)).collect(),
        ..Default::default()
    }
}

fn decompressed(path: &std::path::Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    text
}

#[test]
fn queue_items_and_builds_are_recorded_when_they_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path());
    j.append(&report(1, &[(7, 5_000)], &[])).unwrap();
    j.append(&report(2, &[(7, 5_000), (8, 15_000)], &[])).unwrap();
    j.append(&report(3, &[(8, 15_000)], &[("i-1", "http://j/job/a/1/#1", 25_000)])).unwrap();
    j.append(&report(4, &[], &[("i-1", "http://j/job/a/1/#1", 25_000), ("i-2", "http://j/job/a/2/#2", 33_000)])).unwrap();
    j.append(&report(5, &[], &[("i-2", "http://j/job/a/2/#2", 33_000)])).unwrap();
    drop(j);
    let files = read_dir(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!((f.header.format.as_str(), f.header.version, f.header.controller_id.as_str()), (FORMAT, VERSION, "ci"));
    assert_eq!(f.header.templates["linux"], "linux&&docker");
    let c = &f.cycles;
    assert_eq!(c.len(), 5);
    let arrivals: Vec<Vec<u64>> = c.iter().map(|c| c.arrivals.iter().map(|a| a.queue_id).collect()).collect();
    assert_eq!(arrivals, [vec![7], vec![8], vec![], vec![], vec![]]);
    assert_eq!(c[1].arrivals[0].since_ms, 15_000);
    let a = record::build_digest("http://j/job/a/1/#1");
    assert_eq!(c[2].build_starts.iter().map(|b| (b.build.as_str(), b.instance_id.as_str(), b.at_ms)).collect::<Vec<_>>(), [(a.as_str(), "i-1", 25_000)]);
    assert_eq!(c[3].build_starts.len(), 1, "a build still running is not started again");
    assert_eq!(c[4].build_ends.iter().map(|b| (b.build.as_str(), b.at_ms)).collect::<Vec<_>>(), [(a.as_str(), 50_000)]);
    assert!(!decompressed(&f.path).contains("job/a"), "builds are named by digest only");
}

#[test]
fn secrets_and_free_text_never_reach_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path());
    let plan = Plan {
        launches: vec![PlannedLaunch { template: "linux".into(), count: 2, reason: SECRET.into() }],
        removals: vec![PlannedRemoval { instance_id: "i-9".into(), reason: SECRET.into() }],
    };
    let r = CycleReport {
        cycle: 1,
        at_ms: 1,
        proposed: plan.clone(),
        enforced: plan,
        clamps: vec![Clamp { rule: "per-cycle", detail: SECRET.into() }],
        policy_error: Some(SECRET.into()),
        errors: vec![SECRET.into()],
        launched: vec![Launched { template: "linux".into(), zone: "z".into(), vswitch: "vsw".into(), instance_type: "t".into(), spot: false, instance_ids: vec!["i-1".into()] }],
        launch_errors: vec![LaunchFailure {
            template: "linux".into(),
            zone: "z".into(),
            instance_type: "t".into(),
            spot: true,
            capacity: true,
            code: "OperationDenied.NoStock".into(),
            label: "no-stock",
            error: SECRET.into(),
        }],
        chores: vec![("delete-node".into(), "linux-i-1".into(), SECRET.into())],
        ..Default::default()
    };
    j.append(&r).unwrap();
    drop(j);
    let f = &read_dir(dir.path()).unwrap()[0];
    let text = decompressed(&f.path);
    assert!(!text.contains(SECRET), "{text}");
    let c = &f.cycles[0];
    assert_eq!((c.proposed.launch["linux"], c.enforced.remove.as_slice()), (2, ["i-9".to_owned()].as_slice()));
    assert_eq!((c.clamps.as_slice(), c.policy_failed, c.errors), (["per-cycle".to_owned()].as_slice(), true, 1));
    assert_eq!(c.launch_failed[0].code, "OperationDenied.NoStock");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

#[test]
fn files_rotate_by_size_and_the_oldest_go_when_the_total_is_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path());
    j.max_file_bytes = 2_000;
    j.max_total_bytes = 7_000;
    for cycle in 1..=400 {
        // Distinct queue ids: records that do not compress to nothing.
        j.append(&report(cycle, &[(cycle * 7_919 % 100_003, cycle * 13)], &[])).unwrap();
    }
    drop(j);
    let files = writer::journal_files(dir.path()).unwrap();
    assert!(files.len() >= 3, "{} files", files.len());
    let total: u64 = files.iter().map(|f| f.1).sum();
    assert!(total <= 7_000 + 2_000, "{total} bytes kept");
    let read = read_dir(dir.path()).unwrap();
    let cycles: Vec<u64> = read.iter().flat_map(|f| f.cycles.iter().map(|c| c.cycle)).collect();
    assert_eq!(*cycles.last().unwrap(), 400, "the newest records are kept");
    assert!(cycles[0] > 1, "the oldest file went");
    assert!(cycles.windows(2).all(|w| w[1] == w[0] + 1), "files are read oldest first, with no gap");
}

#[test]
fn files_older_than_max_age_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("journal-0000000000001.jsonl.gz");
    std::fs::write(&old, b"").unwrap();
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 24 * 3600);
    std::fs::File::options().write(true).open(&old).unwrap().set_modified(month_ago).unwrap();
    let mut j = journal(dir.path());
    j.append(&report(1, &[], &[])).unwrap();
    assert!(!old.exists(), "a file last written 31 days ago goes at max-age = 30d");
    assert_eq!(writer::journal_files(dir.path()).unwrap().len(), 1);
}

#[test]
fn a_file_cut_short_yields_its_complete_records_and_a_bad_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path());
    for cycle in 1..=50 {
        j.append(&report(cycle, &[(cycle, cycle)], &[])).unwrap();
    }
    let path = j.current.as_ref().unwrap().0.clone();
    // The writer dies: no gzip trailer, and the last record cut in two.
    std::mem::forget(j);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::File::options().write(true).open(&path).unwrap().set_len(len - 7).unwrap();
    let f = reader::read_file(&path).unwrap();
    assert!((45..50).contains(&f.cycles.len()), "{} records", f.cycles.len());
    assert_eq!(f.cycles.iter().map(|c| c.cycle).collect::<Vec<_>>(), (1..=f.cycles.len() as u64).collect::<Vec<_>>());

    let bad = dir.path().join("journal-9999999999999.jsonl.gz");
    let mut out = flate2::write::GzEncoder::new(std::fs::File::create(&bad).unwrap(), flate2::Compression::fast());
    use std::io::Write;
    writeln!(out, r#"{{"format":"ecsp-journal","version":1,"controller_id":"ci","started_ms":1,"templates":{{}}}}"#).unwrap();
    writeln!(out, r#"{{"cycle":1,"at_ms":1}}"#).unwrap();
    writeln!(out, r#"{{"cycle":"two"}}"#).unwrap();
    writeln!(out, r#"{{"cycle":3,"at_ms":3}}"#).unwrap();
    out.finish().unwrap();
    let e = format!("{:#}", reader::read_file(&bad).unwrap_err());
    assert!(e.contains("journal-9999999999999.jsonl.gz line 3: invalid type: string \"two\", expected u64"), "{e}");

    let newer = dir.path().join("journal-9999999999998.jsonl.gz");
    let mut out = flate2::write::GzEncoder::new(std::fs::File::create(&newer).unwrap(), flate2::Compression::fast());
    writeln!(out, r#"{{"format":"ecsp-journal","version":2,"controller_id":"ci","started_ms":1,"templates":{{}}}}"#).unwrap();
    out.finish().unwrap();
    let e = format!("{:#}", reader::read_file(&newer).unwrap_err());
    assert!(e.contains("journal version 2 is newer than this build reads (1)"), "{e}");
}

#[test]
fn the_sink_writes_off_the_caller_and_leaves_a_whole_file_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let sink = JournalSink::start(journal(dir.path())).unwrap();
    for cycle in 1..=3 {
        sink.record(&report(cycle, &[(cycle, cycle)], &[]));
    }
    drop(sink);
    let files = writer::journal_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    // Whole: the gzip trailer is there (a cut file makes read_to_string fail).
    let text = decompressed(&files[0].0);
    assert_eq!(text.lines().count(), 4, "the header and the three cycles: {text}");
}
