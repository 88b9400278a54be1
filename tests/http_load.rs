//! The page never slows the line: a client polling `/api/state` 20 times a second (and
//! `/api/parts` for what is new, as the page does) all through a sim run adds no
//! fail-safe reject. No wall-clock window is asserted: the line's own verdicts say it.
//! (bench/plant-load.sh measures the capture → verdict p99 with and without this load.)

mod common;
mod http_common;

use common::set;
use http_common::{sim_with_page, try_request, WebLine};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn polling_the_api_20_times_a_second_adds_no_fail_safe_reject() {
    let parts = 150;
    let sim = sim_with_page(|t| {
        set(t, "camera.defect_ratio", 0.2.into());
        // room for a loaded test machine: only a real stall would miss this deadline
        set(t, "decision.deadline_ms", 250.into());
    });
    let mut line = WebLine::start(sim, &["--max-parts", &parts.to_string()], &[]);
    line.wait_running();

    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poller = {
        let (stop, answered, failed) = (Arc::clone(&stop), Arc::clone(&answered), Arc::clone(&failed));
        let addr = line.addr;
        std::thread::spawn(move || {
            let mut since = 0u64;
            let mut seen = Vec::new();
            // bounded: 20 a second for at most 10 minutes
            for _ in 0..20 * 600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match try_request(addr, "GET", "/api/state", &[], b"") {
                    Ok(r) if r.status == 200 => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        let st = r.json();
                        let last = st["last_seq"].as_u64().unwrap_or(0);
                        seen.push(st["counters"]["since_start"]["parts"].as_u64().unwrap_or(0));
                        if last > since {
                            let p = try_request(addr, "GET", &format!("/api/parts?since={since}"), &[], b"");
                            if p.is_ok_and(|p| p.status == 200) {
                                since = last;
                            }
                        }
                    }
                    _ => {
                        // the line has ended (or the page is gone): counted, not fatal
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    };

    // the run ends by itself after `parts` parts
    let log = http_common::wait_for("the run to end", || line.try_finished());
    stop.store(true, Ordering::Relaxed);
    let seen = poller.join().unwrap();

    let results = line.sim.results();
    assert_eq!(results.len(), parts, "{log}");
    let fail_safe: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r["reason"].as_str(), Some("below_threshold" | "above_threshold")))
        .collect();
    assert!(
        fail_safe.is_empty(),
        "the page's load must not cost a verdict: {} fail-safe rejects: {fail_safe:?}",
        fail_safe.len()
    );
    let answered = answered.load(Ordering::Relaxed);
    // ~20 a second over a 15 s run; far fewer would mean the load was not there
    assert!(
        answered >= 100,
        "only {answered} polls answered ({} failed)",
        failed.load(Ordering::Relaxed)
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "counters never go back");
    assert!(seen.last() > seen.first(), "the counters moved while polled");
}
