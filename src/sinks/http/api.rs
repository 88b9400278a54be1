//! The routes: the page and its assets, the JSON API, `/healthz`, `/metrics`, the saved
//! images, and (with a token) the writes. Every handler takes the state's lock only to
//! copy or serialize what it answers; the line never waits on it (it only pushes to the
//! sink's feed).

use super::audit::{AuditLog, Entry};
use super::state::{Counters, PartView, Phase, ThresholdRange, WebState};
use crate::clock::unix_ms;
use crate::record::{Metrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::sinks::Controls;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Everything only this page's own files may use: nothing is fetched from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The bearer token and the audit log: present only with `http.token_file`.
pub struct Writes {
    pub token: String,
    pub audit: AuditLog,
}

/// What every handler shares.
pub struct Shared {
    pub state: Mutex<WebState>,
    pub metrics: Metrics,
    pub controls: Arc<Controls>,
    pub writes: Option<Writes>,
    pub range: ThresholdRange,
    /// `record.save_dir`, where images are served from; `None` with `record.save = "none"`.
    pub save_dir: Option<PathBuf>,
    pub refresh_ms: u64,
    pub title: Option<String>,
    /// The threshold the line started with (`LineInfo::threshold`).
    pub start_threshold: f32,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, WebState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The threshold the judge uses from the next part on.
    pub fn threshold(&self) -> f32 {
        self.controls.threshold().unwrap_or(self.start_threshold)
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/state", get(api_state))
        .route("/api/parts", get(api_parts))
        .route("/api/rejects", get(api_rejects))
        .route("/api/info", get(api_info))
        .route("/images/{name}", get(image));
    if shared.writes.is_some() {
        r = r
            .route("/api/threshold", post(set_threshold))
            .route("/api/reset", post(reset_counters));
    }
    r.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX_HTML);
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// An f32 as JSON the way it prints (6.7577536, not 6.757753849029541).
pub fn num(v: f32) -> Value {
    format!("{v}").parse::<f64>().map_or(Value::Null, Value::from)
}

/// 200 only while the line runs: after its first `Running` state, until it stops.
async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let phase = s.state().phase();
    let (status, text) = match phase {
        Phase::Running => (StatusCode::OK, "running\n"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        Phase::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
    };
    (status, [(header::CACHE_CONTROL, "no-store")], text).into_response()
}

/// The classic text format, or OpenMetrics when the scraper asks for it (Prometheus does).
async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, s.metrics.render_openmetrics())
    } else {
        (TEXT_CONTENT_TYPE, s.metrics.render())
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Serialize)]
struct StateView<'a> {
    run_id: &'a str,
    phase: Phase,
    now_unix_ms: u64,
    title: Option<&'a str>,
    refresh_ms: u64,
    model: ModelView<'a>,
    provider: &'a str,
    reject_output: &'a str,
    config_sha256: &'a str,
    threshold: ThresholdView,
    writes: bool,
    images: bool,
    last_part: Option<PartView<'a>>,
    last_image: Option<PartView<'a>>,
    last_seq: u64,
    last_reject_seq: u64,
    counters: CountersView<'a>,
    line: Option<LineView<'a>>,
    camera: Option<&'a crate::source::CameraState>,
    dropped_events: u64,
}

#[derive(Serialize)]
struct ModelView<'a> {
    name: &'a str,
    sha256: &'a str,
}

#[derive(Serialize)]
struct ThresholdView {
    /// What the judge uses from the next part on.
    now: f32,
    at_start: f32,
    /// What the last part was judged with.
    last_part: Option<f32>,
    range: [f32; 2],
    range_source: &'static str,
}

#[derive(Serialize)]
struct CountersView<'a> {
    since_start: &'a Counters,
    since_reset: &'a Counters,
}

#[derive(Serialize)]
struct LineView<'a> {
    run_state: crate::sinks::RunState,
    unix_ms: u64,
    parts_per_second: f64,
    latency_ms: &'a std::collections::BTreeMap<String, crate::stats::Percentiles>,
}

fn serialized(body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e.to_string()})),
    }
}

async fn api_state(State(s): State<Arc<Shared>>) -> Response {
    let threshold = s.threshold();
    let st = s.state();
    let info = &st.info;
    let line = st.last_state();
    serialized(&StateView {
        run_id: &info.run_id,
        phase: st.phase(),
        now_unix_ms: unix_ms(),
        title: s.title.as_deref(),
        refresh_ms: s.refresh_ms,
        model: ModelView {
            name: &info.model,
            sha256: &info.model_sha256,
        },
        provider: &info.provider,
        reject_output: &info.reject_output,
        config_sha256: &info.config_sha256,
        threshold: ThresholdView {
            now: threshold,
            at_start: s.start_threshold,
            last_part: st.threshold_in_use(),
            range: [s.range.low, s.range.high],
            range_source: s.range.source,
        },
        writes: s.writes.is_some(),
        images: s.save_dir.is_some(),
        last_part: st.last_part().map(|p| p.view()),
        last_image: st.last_image().map(|p| p.view()),
        last_seq: st.last_part().map_or(0, |p| p.seq),
        last_reject_seq: st.rejects().last().map_or(0, |p| p.seq),
        counters: CountersView {
            since_start: st.since_start(),
            since_reset: st.since_reset(),
        },
        line: line.map(|l| LineView {
            run_state: l.run_state,
            unix_ms: l.unix_ms,
            parts_per_second: l.summary.parts_per_second,
            latency_ms: &l.summary.latency_ms,
        }),
        camera: line.and_then(|l| l.camera.as_ref()),
        dropped_events: st.dropped_events,
    })
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// Parts after `since` (their `seq`), oldest first, from the ring of recent parts.
async fn api_parts(State(s): State<Arc<Shared>>, Query(q): Query<Since>) -> Response {
    #[derive(Serialize)]
    struct Parts<'a> {
        parts: Vec<PartView<'a>>,
        oldest_seq: Option<u64>,
        last_seq: u64,
    }
    let st = s.state();
    serialized(&Parts {
        parts: st.parts_since(q.since).map(|p| p.view()).collect(),
        oldest_seq: st.oldest_seq(),
        last_seq: st.last_part().map_or(0, |p| p.seq),
    })
}

/// The last rejects, oldest first.
async fn api_rejects(State(s): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct Rejects<'a> {
        rejects: Vec<PartView<'a>>,
    }
    let st = s.state();
    serialized(&Rejects {
        rejects: st.rejects().map(|p| p.view()).collect(),
    })
}

/// The run's facts and the config it runs with (read-only).
async fn api_info(State(s): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct Info<'a> {
        #[serde(flatten)]
        info: &'a crate::sinks::LineInfo,
        config_text: &'a str,
    }
    let st = s.state();
    serialized(&Info {
        info: &st.info,
        config_text: &st.info.config_text,
    })
}

/// A saved overlay, by file name, from `record.save_dir` only.
async fn image(State(s): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such image\n").into_response();
    let Some(dir) = &s.save_dir else {
        return not_found();
    };
    match read_image(dir, &name) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        None => not_found(),
    }
}

/// A plain file name (letters, digits, `_`, `-`, `.`; no leading dot; `.png`) whose file,
/// links resolved, lies directly in `dir`.
pub fn read_image(dir: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.ends_with(".png")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !plain {
        return None;
    }
    let dir = dir.canonicalize().ok()?;
    let file = dir.join(name).canonicalize().ok()?;
    if file.parent() != Some(dir.as_path()) || !file.is_file() {
        return None;
    }
    std::fs::read(file).ok()
}

/// Why a request may not write: `None` if its bearer token is the one.
fn refusal(headers: &HeaderMap, token: &str) -> Option<&'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some("no bearer token (Authorization: Bearer <token>)");
    };
    let value = value.as_bytes();
    let given = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
        _ => return Some("Authorization is not a bearer token"),
    };
    if constant_time_eq(given, token.as_bytes()) {
        None
    } else {
        Some("wrong token")
    }
}

/// Compares without stopping at the first difference, so that timing tells nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Records the entry, then answers: a write that cannot be audited is refused.
fn audited(audit: &AuditLog, mut entry: Entry, outcome: Result<Value, (StatusCode, String)>) -> (bool, Response) {
    entry.result = match &outcome {
        Ok(_) => "ok".to_string(),
        Err((_, why)) => format!("refused: {why}"),
    };
    if let Err(e) = audit.record(&entry) {
        log::error!("{e:#}; the write from {} is refused", entry.peer);
        let body = json!({"error": format!("not done: the audit log cannot be written ({e:#})")});
        return (false, json_response(StatusCode::INTERNAL_SERVER_ERROR, &body));
    }
    match outcome {
        Ok(body) => (true, json_response(StatusCode::OK, &body)),
        Err((status, why)) => {
            let mut r = json_response(status, &json!({ "error": why }));
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"linesight\""),
                );
            }
            (false, r)
        }
    }
}

/// `POST /api/threshold` with `{"threshold": 7.1}`: from the next part on, within the sane range.
async fn set_threshold(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(writes) = &s.writes else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let old = s.threshold();
    let mut entry = Entry::new(unix_ms(), peer, "threshold");
    entry.old = num(old);
    let asked = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("threshold")?.as_f64())
        .map(|v| v as f32)
        .ok_or_else(|| {
            let shown: String = String::from_utf8_lossy(&body).chars().take(100).collect();
            (
                StatusCode::BAD_REQUEST,
                format!("expected {{\"threshold\": <number>}}, found {shown:?}"),
            )
        });
    entry.new = match &asked {
        Ok(v) => num(*v),
        Err(_) => Value::String(String::from_utf8_lossy(&body).chars().take(100).collect()),
    };
    let outcome = match refusal(&headers, &writes.token) {
        Some(why) => Err((StatusCode::UNAUTHORIZED, why.to_string())),
        None => asked.and_then(|v| s.range.check(v).map_err(|why| (StatusCode::UNPROCESSABLE_ENTITY, why))),
    };
    let new = outcome.as_ref().ok().copied();
    let outcome =
        outcome.map(|v| json!({"old": num(old), "new": num(v), "range": [num(s.range.low), num(s.range.high)]}));
    let (ok, response) = audited(&writes.audit, entry, outcome);
    if let (true, Some(v)) = (ok, new) {
        s.controls.set_threshold(v);
        log::info!("threshold {old} → {v} from {peer} (web API), from the next part on");
    }
    response
}

/// `POST /api/reset`: starts the page's "since reset" counters again.
async fn reset_counters(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(writes) = &s.writes else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let now = unix_ms();
    let mut entry = Entry::new(now, peer, "reset_counters");
    let mut st = s.state();
    let before = st.since_reset();
    entry.old = json!({"parts": before.parts, "rejected": before.rejected, "since_unix_ms": before.since_unix_ms});
    entry.new = json!({"parts": 0, "rejected": 0, "since_unix_ms": now});
    let outcome = match refusal(&headers, &writes.token) {
        Some(why) => Err((StatusCode::UNAUTHORIZED, why.to_string())),
        None => Ok(json!({"old": entry.old, "new": entry.new})),
    };
    let (ok, response) = audited(&writes.audit, entry, outcome);
    if ok {
        st.reset(now);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_may_write() {
        let mut h = HeaderMap::new();
        assert!(refusal(&h, "s3cret-token").unwrap().starts_with("no bearer token"));
        h.insert(header::AUTHORIZATION, "Basic czNjcmV0".parse().unwrap());
        assert_eq!(refusal(&h, "s3cret-token"), Some("Authorization is not a bearer token"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret-tokem".parse().unwrap());
        assert_eq!(refusal(&h, "s3cret-token"), Some("wrong token"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(
            refusal(&h, "s3cret-token"),
            Some("wrong token"),
            "a prefix is not the token"
        );
        h.insert(header::AUTHORIZATION, "bearer  s3cret-token ".parse().unwrap());
        assert_eq!(refusal(&h, "s3cret-token"), None);
    }

    #[test]
    fn images_come_only_from_the_save_folder_by_plain_name() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("images");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("00000007_above_threshold.png"), b"png").unwrap();
        std::fs::write(root.path().join("secret.png"), b"secret").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.png"), dir.join("link.png")).unwrap();
        assert_eq!(
            read_image(&dir, "00000007_above_threshold.png").as_deref(),
            Some(&b"png"[..])
        );
        for bad in [
            "../secret.png",
            "..%2Fsecret.png",
            "link.png",
            ".hidden.png",
            "00000007_above_threshold.PNG",
            "a/b.png",
            "",
            "missing.png",
        ] {
            assert_eq!(read_image(&dir, bad), None, "{bad:?} must not be served");
        }
    }

    #[test]
    fn f32_values_read_as_they_print() {
        assert_eq!(num(6.7577534).to_string(), "6.7577534");
        assert_eq!(num(7.2).to_string(), "7.2");
        assert_eq!(num(f32::NAN), Value::Null);
    }
}
