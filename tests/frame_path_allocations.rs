//! No heap allocation per part on the frame path in steady state (issue 18): a counting
//! global allocator around two runs of the sim line in this process, of N1 and N2 parts.
//! What a run costs once (opening the model, the threads, the first frames) is the same in
//! both, so the difference of their counts over N2 - N1 is what each further part costs.
//!
//! The frame path, from the frame on: the source loop (this test's `ls-source` thread,
//! which calls `pipeline::run`), the trigger, `ls-inspect`, `ls-judge` and `ls-actuate`.
//! The camera thread (`ls-camera`) is counted and printed but not held to it: the sim
//! line's camera renders a new part image every time (a simulator), as a folder camera
//! decodes a file; recycling frame buffers for the V4L2 and GStreamer cameras is not done
//! yet. The record thread, the storage writer and the plant's side are off the path (fed
//! through channels; they format lines). ONNX Runtime's own C++ allocations do not pass
//! through Rust's allocator and are not counted. crossbeam's unbounded channels allocate a
//! block per 31 messages, which the tolerance below allows. It counts; it never times.
//!
//! Where a stage allocates: `ALLOC_TRACE=ls-judge cargo test --test frame_path_allocations
//! -- --nocapture` prints the stacks of that thread's allocations in the longer run.

use linesight::config::Config;
use linesight::pipeline;
use linesight::runtime::Runtime;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod common;

/// The threads counted apart; everything else is `OTHER`. All but the camera are held to
/// no allocation per part.
const STAGES: [&str; 6] = [
    "ls-source",
    "ls-camera",
    "ls-trigger",
    "ls-inspect",
    "ls-judge",
    "ls-actuate",
];
const OTHER: usize = STAGES.len();
const UNSET: usize = usize::MAX;

static COUNTS: [AtomicU64; OTHER + 1] = [const { AtomicU64::new(0) }; OTHER + 1];

/// `ALLOC_TRACE`: the stage whose allocations' stacks are kept (at most `TRACES_KEPT`).
static TRACE: AtomicUsize = AtomicUsize::new(UNSET);
const TRACES_KEPT: usize = 40;
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's index in COUNTS, found at its first allocation.
    static STAGE: Cell<usize> = const { Cell::new(UNSET) };
    /// Inside the counter: an allocation made while classifying the thread is not counted.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    let _ = BUSY.try_with(|busy| {
        if busy.replace(true) {
            return;
        }
        let stage = STAGE.with(|s| {
            if s.get() == UNSET {
                let name = std::thread::current().name().map(str::to_owned);
                s.set(
                    name.and_then(|n| STAGES.iter().position(|st| n == *st))
                        .unwrap_or(OTHER),
                );
            }
            s.get()
        });
        COUNTS[stage].fetch_add(1, Ordering::Relaxed);
        if stage == TRACE.load(Ordering::Relaxed) {
            let mut kept = TRACES.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() < TRACES_KEPT {
                kept.push(std::backtrace::Backtrace::force_capture().to_string());
            }
        }
        busy.set(false);
    });
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn snapshot() -> [u64; OTHER + 1] {
    std::array::from_fn(|i| COUNTS[i].load(Ordering::Relaxed))
}

/// The sim line, paced well below the model's speed on a loaded 2-core machine and with
/// a long deadline, so that every part takes the steady path (inspected, judged on its
/// score) and none the fail-safe one.
fn run_line(dir: &std::path::Path, parts: u64) {
    let sim = common::SimRun::new(|t| {
        common::set(t, "camera.parts_per_second", 8.0.into());
        common::set(t, "decision.deadline_ms", 5_000.into());
        common::set(t, "reject.delay_ms", 5_500.into());
        common::set(t, "decision.queue_depth", 64.into());
        common::set(t, "runtime.warmup_runs", 3.into());
        common::set(t, "record.seq_file", dir.join("seq").display().to_string().into());
        common::set(
            t,
            "record.journal_file",
            dir.join("journal").display().to_string().into(),
        );
    });
    let config = Config::load(&sim.config).unwrap();
    let report = std::thread::Builder::new()
        .name("ls-source".into())
        .spawn(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let rt = Runtime::open(config, None, &stop).unwrap();
            pipeline::run(rt, Some(parts), stop).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
    let s = &report.summary;
    assert_eq!(s.parts, parts);
    let fail_safe: u64 = s
        .rejects_by_reason
        .iter()
        .filter(|(r, _)| r.as_str() != "above_threshold")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        fail_safe, 0,
        "every part must take the steady path: {:?}",
        s.rejects_by_reason
    );
    drop(sim);
}

#[test]
fn the_frame_path_allocates_nothing_per_part() {
    let dir = tempfile::tempdir().unwrap();
    let (short, long) = (24u64, 72u64);
    let s0 = snapshot();
    run_line(dir.path(), short);
    let s1 = snapshot();
    let trace = std::env::var("ALLOC_TRACE").ok();
    if let Some(stage) = &trace {
        TRACE.store(
            STAGES
                .iter()
                .position(|s| s == stage)
                .expect("ALLOC_TRACE: a stage's thread name"),
            Ordering::Relaxed,
        );
    }
    run_line(dir.path(), long);
    let s2 = snapshot();
    TRACE.store(UNSET, Ordering::Relaxed);
    for stack in TRACES.lock().unwrap().iter() {
        let ours: Vec<&str> = stack
            .lines()
            .filter(|l| l.contains("linesight") || l.contains("ort::"))
            .take(6)
            .collect();
        eprintln!("---\n{}", ours.join("\n"));
    }
    let mut report = Vec::new();
    for (i, name) in STAGES.iter().chain(&["other"]).enumerate() {
        let (a, b) = (s1[i] - s0[i], s2[i] - s1[i]);
        let per_part = (b as f64 - a as f64) / (long - short) as f64;
        report.push((name, a, b, per_part));
    }
    for (name, a, b, per_part) in &report {
        eprintln!("{name:>11}: {a:>8} allocations in {short} parts, {b:>8} in {long}: {per_part:+.2} per part");
    }
    // A few allocations may fall in either run by chance (a channel's block, a histogram
    // growing); one per part on any stage is what the test is there to catch.
    for (name, _, _, per_part) in report[..OTHER].iter().filter(|(name, ..)| **name != "ls-camera") {
        assert!(
            *per_part < 0.25,
            "{name} allocates {per_part:.2} times per part in steady state: {report:?}"
        );
    }
}
