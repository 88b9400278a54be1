//! Wires the stages together, owns the deadlines and the shutdown.
//!
//! ```text
//! source ──frame──▶ inspect (preprocess + model) ──outcome──▶ judge ──window──▶ actuate
//!    └────────────── captured (id, time) ─────────────────────▲   └──record──▶ record
//! ```
//!
//! Each stage is a thread; channels are bounded where a stage can fall behind. The
//! judge thread runs `judge::Judge` (the fail-safe core) against the clock: parts are
//! decided strictly in capture order, and a part whose outcome has not arrived by its
//! deadline is rejected, whatever arrives later.

use crate::actuate::{self, PulseStats, Window};
use crate::clock;
use crate::config::{FaultsConfig, SaveImages};
use crate::frame::{Frame, FrameLimit, NoImage, Reason, Truth};
use crate::judge::{Captured, Decision, Failure, InspectionLatency, Judge, Threshold, Timing};
use crate::model::Detector;
use crate::preprocess;
use crate::record::{
    image_name, FlushPolicy, ImageJob, JournalEvent, JournalTx, Leftover, MetricsFile, PartJob, PartRecord, RunStats,
    SeqBlock, Snapshot, StageLatency, StorageFault, Summary, ToSinks, Writer, WriterSettings,
};
use crate::runtime::{FaultLine, Runtime};
use crate::sinks::{Cadence, Controls, Headline, LineEvent, LineState, RunState, SinkSummary, Sinks};
use crate::source::{self, CameraCell, Source};
use anyhow::Context;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a run ends.
pub struct Report {
    pub summary: Summary,
    pub pulses: PulseStats,
    /// Outcomes that arrived after their part had been rejected at its deadline.
    pub late_outcomes: u64,
    /// Parts not run through the model because their deadline had passed before inspection
    /// could start (behind a stall): already rejected, so the stage skips to fresh parts.
    pub skipped_late: u64,
    /// Results lines that could not be written.
    pub record_errors: u64,
    /// Camera losses, recoveries and trigger counts (sources that watch a camera).
    pub camera: Option<source::CameraHealth>,
    /// The plant's side: each sink's figures (MQTT: results sent, dropped, unsent) and
    /// the events its feed dropped.
    pub sinks: Vec<SinkSummary>,
    /// What the last run left undone (it was killed), written as `interrupted` lines at the start.
    pub interrupted: Option<Leftover>,
}

impl Report {
    /// What `linesight run` prints at the end.
    pub fn render(&self) -> String {
        let mut s = self.summary.render();
        if let Some(left) = &self.interrupted {
            s += &left.render();
            s.push('\n');
        }
        let p = &self.pulses;
        s += &format!(
            "reject pulses {} for {} rejected parts (merged where windows overlap); worst edge lateness {:.2} ms\n",
            p.pulses, p.windows, p.worst_lateness_ms
        );
        if let Some(camera) = &self.camera {
            s += &camera.render();
        }
        for sink in &self.sinks {
            s += &sink.render();
        }
        if self.late_outcomes > 0 {
            s += &format!(
                "late outcomes {} (parts already rejected at their deadline), {} of them not inspected (deadline passed while queued)\n",
                self.late_outcomes, self.skipped_late
            );
        }
        s
    }
}

/// What inspection made of a part; the snapshot (the frame and its anomaly map) is kept
/// when `record.save` wants this part's image.
type Outcome = crate::judge::Outcome<Snapshot>;

/// What the recorder gets for each part.
struct Recorded {
    record: PartRecord,
    snapshot: Option<Snapshot>,
}

enum ToJudge {
    Captured(Captured),
    Outcome(Outcome),
}

/// Runs the line until the source ends, `max_parts` parts were seen, or `stop` is set
/// (Ctrl-C, SIGTERM). Then drains: every part seen gets its verdict and its pulse,
/// the output is left de-energised (driven low), and the results are flushed.
pub fn run(rt: Runtime, max_parts: Option<u64>, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    let (config, threshold) = (&rt.config, rt.threshold);

    let (judge_tx, judge_rx) = unbounded::<ToJudge>();
    let (frame_tx, frame_rx) = bounded::<Frame>(config.decision.queue_depth);
    let (window_tx, window_rx) = unbounded::<Window>();
    let (record_tx, record_rx) = unbounded::<Recorded>();

    log::info!("reject output {} armed", rt.reject.describe());
    let (model_name, output) = (rt.detector.manifest.name.clone(), rt.reject.describe()); // service
    let provider = rt.detector.serving.detail.clone();
    let started_ns = clock::now_ns();
    let faults = config.faults.clone();
    let limit = rt.detector.manifest.input.frames(config.decision.max_frame_scale).limit;
    let timing = Timing {
        deadline_ns: clock::ms_to_ns(config.decision.deadline_ms),
        reject_delay_ns: clock::ms_to_ns(config.reject.delay_ms),
        pulse_ns: clock::ms_to_ns(config.reject.pulse_ms),
    };
    let progress_s = config.record.progress_s;
    let save = config.record.save;
    let save_dir = config.resolve(&config.record.save_dir);
    let metrics = config
        .record
        .metrics_file
        .as_ref()
        .map(|p| MetricsFile::new(config.resolve(p), &model_name, &provider, threshold.0));
    // The plant side's threshold (web page), read by the judge before each round of decisions.
    let controls = rt.sinks.controls();

    // The record's storage is the writer thread's alone: a full or hung disk costs records
    // (counted), never the record thread, the sinks or the summary.
    let rec = &config.record;
    // Parts in flight, for the next start if this run is killed.
    let journal = rt.journal;
    let interrupted = rt.interrupted;
    let writer = Writer::spawn(
        rt.results,
        metrics,
        rt.seq_file,
        WriterSettings {
            flush: FlushPolicy::new(rec.flush_lines, rec.flush_ms),
            backlog_parts: rec.backlog_parts.min(1 << 20) as usize,
            stall_ms: rec.stall_ms,
            rotate_bytes: rec.rotate_mb.saturating_mul(1 << 20),
            keep: crate::record::Keep::new(rec.keep_mb, rec.keep_days),
            save_dir: save_dir.clone(),
            journal: journal.tx(),
        },
    )?;
    let run_id = rt.info.run_id.clone();

    // Each stage's thread takes its part of the runtime.
    let actuator = {
        let journal = journal.tx();
        let lowered = move |end_ns| journal.send(JournalEvent::Pulsed { end_ns });
        spawn("actuate", move || actuate::run_scheduler(rt.reject, window_rx, lowered))?
    };
    let recorder = Recorder {
        writer,
        run_id,
        seqs: rt.seqs,
        started_ns,
        progress_s,
        save_dir,
        sinks: rt.sinks,
        camera: rt.camera,
        fault: rt.fault,
    };
    let recorder = spawn("record", move || record_loop(recorder, record_rx))?;
    let judge = {
        let judge_rx = judge_rx.clone();
        let controls = Arc::clone(&controls);
        let journal = journal.tx();
        spawn("judge", move || {
            judge_loop(
                judge_rx,
                Judge::new(threshold, timing),
                &controls,
                window_tx,
                record_tx,
                journal,
            )
        })?
    };
    drop(judge_rx);
    let inspect = {
        let judge_tx = judge_tx.clone();
        let faults = faults.clone();
        spawn("inspect", move || {
            inspect_loop(
                rt.detector,
                frame_rx,
                judge_tx,
                faults,
                (save, threshold, &controls),
                timing,
            )
        })?
    };
    crate::service::ready(&format!("model {model_name} warm, reject output {output} armed")); // systemd READY=1
    let source_result = source_loop(
        rt.source,
        frame_tx,
        judge_tx,
        journal.tx(),
        (&faults, &limit),
        max_parts,
        &stop,
    );

    // The source is done (or failed): the other stages drain in order.
    crate::service::stopping(); // systemd STOPPING=1
    let skipped_late = inspect.join().expect("inspect thread panicked");
    let late_outcomes = judge.join().expect("judge thread panicked");
    let pulses = actuator.join().expect("actuate thread panicked");
    let (stats, record_errors, sinks) = recorder.join().expect("record thread panicked");
    journal.finish(Duration::from_millis(config.record.stall_ms));
    let camera = source_result?;
    let mut summary = stats.final_summary();
    summary.provider = provider;
    Ok(Report {
        summary,
        pulses,
        late_outcomes,
        skipped_late,
        record_errors,
        camera,
        sinks,
        interrupted,
    })
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(format!("ls-{name}"))
        .spawn(f)
        .with_context(|| format!("cannot start the {name} thread"))
}

fn source_loop(
    mut source: Box<dyn Source>,
    frames: Sender<Frame>,
    judge: Sender<ToJudge>,
    journal: JournalTx,
    (faults, limit): (&FaultsConfig, &FrameLimit),
    max_parts: Option<u64>,
    stop: &AtomicBool,
) -> anyhow::Result<Option<source::CameraHealth>> {
    let mut seen = 0u64;
    while !stop.load(Ordering::Relaxed) && max_parts.is_none_or(|m| seen < m) {
        let Some(mut frame) = source
            .next_frame()
            .with_context(|| format!("camera: {}", source.describe()))?
        else {
            break;
        };
        seen += 1;
        // A frame of any source outside the limit is never resized: a huge one would take
        // seconds and push the parts behind it past their deadlines.
        if let Some(why) = frame
            .image
            .as_ref()
            .ok()
            .and_then(|px| limit.check(px.width, px.height).err())
        {
            frame.image = Err(NoImage::broken(format!("frame refused: {why}")));
        }
        if every(faults.broken_frame_every, frame.id) {
            if let Ok(px) = &mut frame.image {
                px.data.truncate(px.data.len() / 2);
            }
        }
        let (id, capture_ns) = (frame.id, frame.capture_ns);
        let no_image = frame
            .image
            .as_ref()
            .err()
            .map(|e| Failure::new(e.reason, e.detail.clone()));
        // The journal first (its results line cannot come before it), then the judge, so
        // that the part's deadline runs from now on.
        journal.send(JournalEvent::Captured { id, capture_ns });
        let _ = judge.send(ToJudge::Captured(Captured {
            id,
            capture_ns,
            frame_ns: frame.frame_ns,
            no_image: no_image.clone(),
            truth: frame.truth.take(),
            origin: frame.origin.take(),
        }));
        if no_image.is_some() {
            // Nothing to inspect: the judge already has its outcome.
            continue;
        }
        match frames.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let overload = Failure::new(
                    Reason::Overload,
                    "inspection queue full: the line is faster than inference",
                );
                let _ = judge.send(ToJudge::Outcome(Outcome {
                    id,
                    result: Err(overload),
                    latency: InspectionLatency::default(),
                    snapshot: None,
                }));
            }
            Err(TrySendError::Disconnected(_)) => anyhow::bail!("the inspection stage stopped unexpectedly"),
        }
    }
    Ok(source.health())
}

/// True for every n-th part (n = 0: never).
fn every(n: u64, id: u64) -> bool {
    n > 0 && (id + 1) % n == 0
}

/// Inspects frames in order; returns how many it skipped because their deadline had passed.
fn inspect_loop(
    mut detector: Detector,
    frames: Receiver<Frame>,
    judge: Sender<ToJudge>,
    faults: FaultsConfig,
    (save, threshold, controls): (SaveImages, Threshold, &Controls),
    timing: Timing,
) -> u64 {
    let spec = detector.manifest.input.clone();
    let mut preprocessor = preprocess::Preprocessor::default();
    let want_map = save != SaveImages::None && detector.manifest.outputs.anomaly_map.is_some();
    let mut skipped = 0u64;
    for frame in frames {
        crate::service::inspecting(true); // service: a frame stuck here withholds the watchdog
        let t0 = clock::now_ns();
        let mut latency = InspectionLatency {
            queue_ms: Some(clock::ns_to_ms(t0.saturating_sub(frame.capture_ns))),
            ..Default::default()
        };
        // Already rejected by the judge: the stage skips it and catches up on fresh parts.
        let expired = timing.expired_before_inspection(frame.capture_ns, t0);
        skipped += u64::from(expired.is_some());
        let result = (|| {
            if let Some(expired) = expired {
                return Err(expired);
            }
            let pixels = frame
                .image
                .as_ref()
                .map_err(|e| Failure::new(e.reason, e.detail.clone()))?;
            // written straight into the bound input tensor: no copy, no allocation
            preprocessor
                .to_tensor(pixels, &spec, detector.input_mut())
                .map_err(|e| Failure::new(Reason::BrokenFrame, e.to_string()))?;
            let t1 = clock::now_ns();
            latency.preprocess_ms = Some(clock::ns_to_ms(t1 - t0));
            if every(faults.slow_inference_every, frame.id) {
                std::thread::sleep(Duration::from_millis(faults.slow_inference_ms));
            }
            if every(faults.inference_error_every, frame.id) {
                return Err(Failure::new(
                    Reason::InferenceError,
                    "injected fault (faults.inference_error_every)",
                ));
            }
            let inspection = detector
                .run(want_map)
                .map_err(|e| Failure::new(Reason::InferenceError, format!("{e:#}")))?;
            latency.inference_ms = Some(clock::ns_to_ms(clock::now_ns() - t1));
            Ok(inspection)
        })();
        let (result, snapshot) = match result {
            Ok(inspection) => {
                // The judge will use the plant side's threshold, if one was set.
                let threshold = controls.threshold().map_or(threshold, Threshold);
                let keep = save == SaveImages::All
                    || (save == SaveImages::Rejects && threshold.judge(inspection.score) != Reason::BelowThreshold);
                let snapshot = match (keep, inspection.anomaly_map, frame.image) {
                    (true, Some(map), Ok(pixels)) => Some(Snapshot {
                        pixels,
                        map,
                        resize: spec.resize,
                    }),
                    _ => None,
                };
                (Ok(inspection.score), snapshot)
            }
            Err(e) => (Err(e), None),
        };
        crate::service::inspecting(false); // service
        if judge
            .send(ToJudge::Outcome(Outcome {
                id: frame.id,
                result,
                latency,
                snapshot,
            }))
            .is_err()
        {
            break;
        }
    }
    skipped
}

/// Runs the judge against the clock: decides every part in capture order, sends each
/// reject's window to the actuator and every verdict to the recorder. Once the inputs
/// close it still decides the parts in flight at their deadlines. Returns how many
/// outcomes came too late.
fn judge_loop(
    inbox: Receiver<ToJudge>,
    mut judge: Judge<Snapshot>,
    controls: &Controls,
    windows: Sender<Window>,
    records: Sender<Recorded>,
    journal: JournalTx,
) -> u64 {
    let mut open = true;
    loop {
        // service: the judge's heartbeat feeds the systemd watchdog.
        crate::service::beat();
        // A threshold set from the plant side takes effect here, between parts.
        if let Some(t) = controls.threshold() {
            judge.set_threshold(Threshold(t));
        }
        let (now_ns, unix_ms) = (clock::now_ns(), clock::unix_ms());
        while let Some(decision) = judge.next_decision(now_ns, unix_ms) {
            if let Some([start_ns, end_ns]) = decision.eject_ns {
                journal.send(JournalEvent::Rejected {
                    id: decision.id,
                    capture_ns: decision.capture_ns,
                    end_ns,
                });
                let _ = windows.send(Window { start_ns, end_ns });
            }
            crate::service::decided(decision.eject_ns.is_some()); // service
            let _ = records.send(recorded(decision));
        }
        if !open && !judge.has_pending() {
            return judge.late_outcomes();
        }
        // service: wake at least every beat_wait(), so that an idle line still beats.
        let wait = judge.next_due_ns().map_or(crate::service::beat_wait(), |due| {
            Duration::from_nanos(due.saturating_sub(clock::now_ns())).min(crate::service::beat_wait())
        });
        if !open {
            // Nothing more will arrive: wait out the front part's deadline.
            std::thread::sleep(wait);
            continue;
        }
        match inbox.recv_timeout(wait) {
            Ok(ToJudge::Captured(part)) => judge.captured(part),
            Ok(ToJudge::Outcome(outcome)) => judge.outcome(outcome),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
    }
}

/// A decision as the results log writes it, with the image to save, if any.
fn recorded(d: Decision<Snapshot>) -> Recorded {
    let (truth, defect_kind) = match d.truth {
        None => (None, None),
        Some(Truth::Good) => (Some("good"), None),
        Some(Truth::Defect(kind)) => (Some("defect"), kind),
    };
    let record = PartRecord {
        // Set by the record thread, which numbers the parts.
        run_id: String::new(),
        device_seq: 0,
        id: d.id,
        capture_ns: d.capture_ns,
        frame_ns: d.frame_ns,
        unix_ms: d.unix_ms,
        origin: d.origin,
        score: d.score,
        threshold: d.threshold,
        verdict: d.verdict,
        reason: d.reason,
        detail: d.detail,
        eject_ns: d.eject_ns,
        latency: StageLatency {
            queue_ms: d.latency.queue_ms,
            preprocess_ms: d.latency.preprocess_ms,
            inference_ms: d.latency.inference_ms,
            total_ms: d.total_ms,
        },
        truth,
        defect_kind,
    };
    Recorded {
        record,
        snapshot: d.snapshot,
    }
}

/// How often the record thread hands the sinks a state and rewrites the metrics file,
/// parts or not (MQTT publishes every `mqtt.state_interval_s` of them).
const STATE_EVERY: Duration = Duration::from_secs(1);

/// What the record thread owns.
struct Recorder {
    /// The record's storage (results, images, metrics file, seq file), on its own thread.
    writer: Writer,
    run_id: String,
    seqs: SeqBlock,
    started_ns: u64,
    progress_s: f64,
    save_dir: std::path::PathBuf,
    sinks: Sinks,
    /// The camera's state, written by its listener on the source's thread.
    camera: Arc<CameraCell>,
    /// `status.fault_line`: asserted here too while storage refuses or blocks results.
    fault: FaultLine,
}

/// Records every part until the judge is done; returns the run's statistics, the results
/// lines that could not be written, and the sinks' figures.
fn record_loop(rec: Recorder, records: Receiver<Recorded>) -> (RunStats, u64, Vec<SinkSummary>) {
    let Recorder {
        writer,
        run_id,
        mut seqs,
        started_ns,
        progress_s,
        save_dir,
        sinks,
        camera,
        fault,
    } = rec;
    let health = Arc::clone(writer.health());
    let mut stats = RunStats::new(started_ns);
    let tty = std::io::stderr().is_terminal();
    let every_ns = (progress_s * 1e9) as u64;
    let (mut last_ns, mut last_parts) = (clock::now_ns(), 0u64);
    let figures = |stats: &mut RunStats| {
        (stats.record_errors, stats.record_backlog) = (health.errors(), health.backlog());
        stats.images_removed = health.images_removed();
        stats.logs_removed = health.logs_removed();
    };
    let state = |stats: &RunStats, run_state, camera, last_part| {
        LineEvent::State(Arc::new(LineState {
            run_state,
            unix_ms: clock::unix_ms(),
            summary: stats.summary(),
            camera,
            last_part,
        }))
    };
    // States for the sinks and the metrics file on a cadence, whether parts come or not;
    // the first (warm and armed) before any part.
    let mut cadence = Cadence::new(STATE_EVERY);
    // Parts on their way to the sinks: one whose image is being saved waits for it.
    let mut to_sinks: ToSinks<PartRecord> = ToSinks::new(writer.stall_ns());
    let mut parts_sent = 0u64;
    let mut send_parts = |ready: Vec<(PartRecord, Option<std::path::PathBuf>)>| {
        for (record, image) in ready {
            parts_sent += 1;
            sinks.send(LineEvent::Part {
                seq: parts_sent,
                record: Arc::new(record),
                image,
            });
        }
    };
    // The threshold the last part was judged with (the plant side may change it).
    let mut threshold = None;
    let mut last_part = None;
    // A stalled write, reported once per stall.
    let mut stall_told = false;
    let mut storage_fault = StorageFault::default();
    let mut records_open = true;
    while records_open || !to_sinks.is_empty() {
        let now = clock::now_ns();
        let camera_now = camera.get();
        let headline = Headline::new(RunState::Running, camera_now.as_ref());
        if cadence.due(now, headline) {
            figures(&mut stats);
            writer.metrics(stats.summary(), threshold);
            sinks.send(state(&stats, RunState::Running, camera_now, last_part));
            cadence.told(now, headline);
            let stalled = writer.stalled_ns(now);
            fault.storage(storage_fault.update(health.errors(), stalled.is_some(), now));
            match stalled {
                Some(b) if !stall_told => {
                    stall_told = true;
                    log::error!(
                        "record: a write has been blocked for {:.1} s; {} part(s) waiting for storage",
                        b as f64 / 1e9,
                        health.backlog()
                    );
                }
                None => stall_told = false,
                _ => {}
            }
        }
        send_parts(to_sinks.ready(now));
        // Woken by the next part, an image saved, or when the next state is due.
        let due = [cadence.next_due_ns(), to_sinks.next_due_ns()]
            .into_iter()
            .flatten()
            .min();
        let wait = due.map_or(STATE_EVERY, |due| {
            Duration::from_nanos(due.saturating_sub(clock::now_ns()))
        });
        if !records_open {
            // Only images outstanding: their parts go at the latest after record.stall_ms.
            if let Ok(done) = writer.images.recv_timeout(wait) {
                to_sinks.image_done(done.ticket, done.saved);
            }
            continue;
        }
        let received = crossbeam_channel::select! {
            recv(records) -> r => r.ok(),
            recv(writer.images) -> done => {
                if let Ok(done) = done {
                    to_sinks.image_done(done.ticket, done.saved);
                }
                continue;
            }
            default(wait) => continue,
        };
        let Some(Recorded { mut record, snapshot }) = received else {
            records_open = false;
            continue;
        };
        let (device_seq, reserve) = seqs.take();
        if let Some(next) = reserve {
            writer.reserve(next);
        }
        record.run_id.clone_from(&run_id);
        record.device_seq = device_seq;
        threshold = Some(record.threshold);
        // Images are a help, not the record: a failure is reported, the verdict stands.
        let image = snapshot.map(|snapshot| ImageJob {
            path: save_dir.join(image_name(device_seq, &run_id, record.id, record.reason.as_str())),
            threshold: record.threshold,
            ticket: device_seq,
            snapshot,
        });
        let ticket = image.as_ref().map(|i| i.ticket);
        let queued = writer.part(PartJob {
            id: record.id,
            device_seq,
            line: record.line(),
            image,
        });
        if !queued && health.errors().is_power_of_two() {
            log::error!(
                "part {} verdict {:?} not recorded: {} part(s) already waiting for storage ({} not recorded so far)",
                record.id,
                record.verdict,
                health.backlog(),
                health.errors()
            );
        }
        stats.add(&record);
        last_part = Some(record.id);
        to_sinks.push(record, ticket.filter(|_| queued), clock::now_ns());
        send_parts(to_sinks.ready(clock::now_ns()));
        let now = clock::now_ns();
        if every_ns > 0 && now - last_ns >= every_ns {
            let rate = (stats.parts - last_parts) as f64 / ((now - last_ns) as f64 / 1e9);
            let line = stats.progress_line(rate);
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
            (last_ns, last_parts) = (now, stats.parts);
        }
    }
    if tty && every_ns > 0 {
        eprintln!();
    }
    figures(&mut stats);
    writer.metrics(stats.summary(), threshold);
    // A clean end: the next run continues from the next number, without a gap.
    writer.reserve(seqs.next());
    // The writer finishes its queue and its last sync, unless it is blocked on storage:
    // then it is abandoned after record.stall_ms, and what it held is counted.
    let stall_ms = writer.stall_ns() / 1_000_000;
    match writer.finish() {
        Some(end) => log::debug!(
            "record: {} results lines written, {} syncs, {} rotations",
            end.written,
            end.syncs,
            end.rotations
        ),
        None => log::warn!("record: the writer was abandoned (a write blocked for over {stall_ms} ms)"),
    }
    figures(&mut stats);
    sinks.send(state(&stats, RunState::Stopping, camera.get(), last_part));
    // Bounded: a hung broker or browser must not hold up the end of the run.
    let sinks = sinks.stop(crate::sinks::STOP_WAIT);
    (stats, health.errors(), sinks)
}
