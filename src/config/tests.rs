use super::*;

const MINIMAL: &str = r#"
    [camera]
    kind = "synthetic"
    [model]
    dir = "m"
    [reject]
    delay_ms = 300
    [reject.output]
    kind = "simulated"
"#;

#[test]
fn minimal_config_takes_line_side_defaults() {
    let c = Config::parse(MINIMAL, Path::new("t.toml"), PathBuf::from("/etc/ls")).unwrap();
    assert_eq!(c.decision.deadline_ms, 200);
    assert_eq!(c.reject.pulse_ms, 50);
    assert_eq!(c.resolve(Path::new("r.jsonl")), PathBuf::from("/etc/ls/r.jsonl"));
    assert_eq!(c.resolve(Path::new("/abs")), PathBuf::from("/abs"));
}

#[test]
fn every_problem_is_listed_at_once() {
    let text = MINIMAL
        .replace("delay_ms = 300", "delay_ms = 100\npulse_ms = 0")
        .replace("kind = \"synthetic\"", "kind = \"synthetic\"\ndefect_ratio = 2.0");
    let err = Config::parse(&text, Path::new("t.toml"), PathBuf::new()).unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected Invalid, got {err}")
    };
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["camera.defect_ratio", "decision.deadline_ms", "reject.pulse_ms"]);
}

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("t.toml"), PathBuf::new()).unwrap()
}

/// A minimal config takes each section's `Default`, whether the section is left out or
/// written empty, and each `Default` holds the values the field docs state.
#[test]
fn every_default_is_the_documented_one() {
    // The sections that may be left out, as one comparable value.
    let sections = |c: &Config| {
        format!(
            "{:?}",
            (&c.runtime, &c.decision, &c.record, &c.faults, &c.trigger, &c.status)
        )
    };
    let defaults = format!(
        "{:?}",
        (
            &RuntimeConfig::default(),
            &DecisionConfig::default(),
            &RecordConfig::default(),
            &FaultsConfig::default(),
            &TriggerConfig::default(),
            &StatusConfig::default()
        )
    );
    let left_out = parse(MINIMAL);
    let empty = parse(&format!(
        "{MINIMAL}\n[runtime]\n[runtime.tensorrt]\n[runtime.cuda]\n[decision]\n[record]\n[faults]\n[trigger]\nkind = \"free_run\"\n[status]\n"
    ));
    // Every key written out with the value its doc states: the same config.
    let documented = parse(&format!("{MINIMAL}\n{DOCUMENTED_DEFAULTS}"));
    for (what, c) in [("left out", &left_out), ("empty", &empty), ("documented", &documented)] {
        assert_eq!(sections(c), defaults, "sections {what}");
    }
}

/// Each section's keys with the defaults their doc comments state.
const DOCUMENTED_DEFAULTS: &str = r#"
[runtime]
intra_threads = 0
providers = ["cpu"]
require_accelerator = false
warmup_runs = 3
[runtime.tensorrt]
device_id = 0
fp16 = false
timing_cache = true
workspace_mb = 0
builder_optimization_level = 3
[runtime.cuda]
device_id = 0
cudnn_conv_algo_search = "exhaustive"
cuda_graph = false
[decision]
deadline_ms = 200
queue_depth = 4
max_frame_scale = 16
[record]
results = "results.jsonl"
progress_s = 1.0
save = "none"
save_dir = "images"
[faults]
broken_frame_every = 0
inference_error_every = 0
slow_inference_every = 0
slow_inference_ms = 1000
camera_loss_ms = 1000
[trigger]
kind = "free_run"
[status]
camera_stall_ms = 2000
camera_retry_ms = 100
camera_retry_max_ms = 5000
"#;

/// The optional keys of sections with required ones: each named default is the documented one.
#[test]
fn keys_beside_required_ones_take_their_documented_defaults() {
    let c = parse(MINIMAL);
    assert_eq!(c.camera, CameraConfig::Synthetic(SyntheticCamera::default()));
    let documented = "kind = \"synthetic\"\nwidth = 256\nheight = 256\nparts_per_second = 10.0\ndefect_ratio = 0.1\ndefect_kinds = []\nseed = 0";
    assert_eq!(
        c.camera,
        parse(&MINIMAL.replace("kind = \"synthetic\"", documented)).camera,
        "the documented defaults"
    );
    assert_eq!(c.reject.pulse_ms, 50);

    let camera = |section: &str| parse(&MINIMAL.replace("kind = \"synthetic\"", section)).camera;
    assert_eq!(
        camera("kind = \"folder\"\npath = \"images\""),
        CameraConfig::Folder {
            path: PathBuf::from("images"),
            parts_per_second: 10.0,
            looped: false,
        }
    );
    assert_eq!(
        camera("kind = \"v4l2\"\ndevice = \"/dev/video0\""),
        CameraConfig::V4l2(V4l2Camera {
            device: PathBuf::from("/dev/video0"),
            pixel_format: None,
            width: None,
            height: None,
            fps: None,
            exposure_us: None,
            gain: None,
            buffers: 4,
            controls: Default::default(),
        })
    );
    assert_eq!(
        camera("kind = \"gstreamer\"\npipeline = \"videotestsrc ! appsink\""),
        CameraConfig::Gstreamer(GstreamerCamera {
            pipeline: "videotestsrc ! appsink".into(),
            sync: false,
            max_buffers: 1,
            drop: true,
            end_of_stream: EndOfStream::Reconnect,
        })
    );

    let gpio = parse(&format!(
        "{}\n[trigger]\nkind = \"gpio\"\nchip = \"c\"\nline = 3\n",
        MINIMAL.replace("kind = \"simulated\"", "kind = \"gpio\"\nchip = \"c\"\nline = 5")
    ));
    assert_eq!(
        gpio.reject.output,
        OutputConfig::Gpio {
            chip: "c".into(),
            line: LineRef::Offset(5),
            active_low: false,
        }
    );
    assert_eq!(
        gpio.trigger,
        TriggerConfig::Gpio(GpioTrigger {
            chip: "c".into(),
            line: LineRef::Offset(3),
            edge: TriggerEdge::Rising,
            bias: None,
            debounce_us: 2000,
            window_start_ms: 0,
            window_end_ms: 50,
        })
    );
}

#[test]
fn one_gpio_line_check_serves_every_line() {
    let text = format!(
        "{}\n[trigger]\nkind = \"gpio\"\nchip = \"\"\nline = \"\"\n[status.fault_line]\nkind = \"gpio\"\nchip = \"\"\nline = 2\n",
        MINIMAL.replace("kind = \"simulated\"", "kind = \"gpio\"\nchip = \"c\"\nline = \"\"")
    );
    let err = Config::parse(&text, Path::new("t.toml"), PathBuf::new()).unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected Invalid, got {err}")
    };
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "reject.output.line",
            "trigger.chip",
            "trigger.line",
            "status.fault_line.chip"
        ]
    );
}

#[test]
fn pixel_formats_take_their_aliases_in_any_case() {
    for (name, format) in [
        ("grey", V4l2PixelFormat::Grey),
        ("GRAY", V4l2PixelFormat::Grey),
        ("y8", V4l2PixelFormat::Grey),
        ("YUY2", V4l2PixelFormat::Yuyv),
        ("yuyv", V4l2PixelFormat::Yuyv),
        ("mjpeg", V4l2PixelFormat::Mjpg),
        ("MJPG", V4l2PixelFormat::Mjpg),
    ] {
        assert_eq!(V4l2PixelFormat::parse(name), Some(format), "{name}");
    }
    assert_eq!(V4l2PixelFormat::parse("NV12"), None);
}
