//! The Jetson package's files agree with each other and with linesight: the field
//! config parses and names its reject line the stable way, and every path it writes
//! is one the systemd unit lets the service write, and the package installs what
//! the config and the unit point at. (The .deb itself is inspected in CI by
//! board/jetson-orin-nano/check-deb.sh.)

use linesight::config::{Config, LineRef, OutputConfig};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn jetson_toml() -> toml::Table {
    toml::from_str(&read("board/jetson-orin-nano/linesight.toml")).unwrap()
}

/// The config as linesight parses it, accelerator settings included.
fn jetson_config() -> Config {
    Config::parse(
        &read("board/jetson-orin-nano/linesight.toml"),
        Path::new("linesight.toml"),
        PathBuf::from("/etc/linesight"),
    )
    .unwrap_or_else(|e| panic!("board/jetson-orin-nano/linesight.toml: {e}"))
}

/// Values of a `Key=` line in the unit, split on spaces.
fn unit_values(key: &str) -> Vec<String> {
    read("board/jetson-orin-nano/linesight.service")
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Destinations of the .deb's assets, from Cargo.toml's [package.metadata.deb].
fn deb_assets() -> Vec<(String, String)> {
    let cargo: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            let file = Path::new(src).file_name().unwrap().to_str().unwrap();
            let dest = if dest.ends_with('/') {
                format!("/{dest}{file}")
            } else {
                format!("/{dest}")
            };
            (src.to_string(), dest)
        })
        .collect()
}

#[test]
fn jetson_config_names_the_reject_line_by_chip_label_and_line_name() {
    let c = jetson_config();
    match &c.reject.output {
        OutputConfig::Gpio { chip, line, active_low } => {
            assert_eq!(chip, "tegra234-gpio", "a chip label, stable across boots");
            assert_eq!(line, &LineRef::Name("PAC.06".into()), "header pin 7 by line name");
            assert!(*active_low, "fail-safe wiring: de-energised (low) = reject");
        }
        other => panic!("the Jetson config drives a GPIO, found {other:?}"),
    }
    assert!(c.problems().is_empty());
}

#[test]
fn jetson_config_carries_the_accelerator_settings() {
    use linesight::config::{ConvSearch, ProviderKind};
    let rt = jetson_config().runtime;
    assert_eq!(
        rt.providers,
        [ProviderKind::Tensorrt, ProviderKind::Cuda, ProviderKind::Cpu]
    );
    assert!(rt.require_accelerator);
    assert!(rt.tensorrt.fp16);
    assert_eq!(rt.cuda.cudnn_conv_algo_search, ConvSearch::Exhaustive);
    // The engine cache must be where the unit lets the service write.
    let cache = rt.tensorrt.engine_cache_dir.unwrap();
    assert!(cache.starts_with("/var/cache/linesight"), "{}", cache.display());
    let lib = rt.onnxruntime_library.unwrap();
    assert!(lib.starts_with("/opt/"), "outside /home: the unit has ProtectHome=yes");
}

#[test]
fn every_path_the_service_writes_is_writable_under_the_unit() {
    let c = jetson_config();
    let writable: Vec<PathBuf> = unit_values("ReadWritePaths").iter().map(PathBuf::from).collect();
    assert_eq!(
        writable,
        [Path::new("/var/lib/linesight"), Path::new("/var/cache/linesight")]
    );
    let t = jetson_toml();
    let engine_cache = PathBuf::from(t["runtime"]["tensorrt"]["engine_cache_dir"].as_str().unwrap());
    for (key, p) in [
        ("record.results", c.record.results.clone()),
        ("record.save_dir", c.record.save_dir.clone()),
        ("runtime.tensorrt.engine_cache_dir", engine_cache),
    ] {
        assert!(p.is_absolute(), "{key} must be absolute: {}", p.display());
        assert!(
            writable.iter().any(|w| p.starts_with(w)),
            "{key} = {} is read-only for the service (ProtectSystem=strict)",
            p.display()
        );
    }
    // systemd creates (and hands to the service user) what it may write.
    assert_eq!(unit_values("StateDirectory"), ["linesight"]);
    assert!(unit_values("CacheDirectory").contains(&"linesight".to_string()));
}

#[test]
fn the_package_installs_what_the_unit_and_the_config_point_at() {
    let assets = deb_assets();
    let installed = |dest: &str| assets.iter().any(|(_, d)| d == dest);
    // ExecStart's config is the packaged config.
    let exec = unit_values("ExecStart");
    assert_eq!(exec[..2], ["/usr/bin/linesight", "run"]);
    assert!(installed(&exec[0]), "{} is packaged", exec[0]);
    let config = &exec[exec.iter().position(|a| a == "--config").unwrap() + 1];
    assert!(installed(config), "{config} is packaged");
    assert!(
        assets
            .iter()
            .any(|(s, d)| s == "board/jetson-orin-nano/linesight.toml" && d == config),
        "the Jetson config is what lands at {config}"
    );
    // The configured model is packaged, manifest and network both.
    let model = jetson_config().model.dir;
    for f in ["model.onnx", "model.toml"] {
        let p = model.join(f);
        assert!(installed(p.to_str().unwrap()), "{} is packaged", p.display());
    }
    assert!(installed("/lib/udev/rules.d/99-linesight-gpio.rules"));
    // The unit's user, groups and notify settings.
    assert_eq!(unit_values("Type"), ["notify"]);
    assert_eq!(unit_values("User"), ["linesight"]);
    assert_eq!(unit_values("SupplementaryGroups"), ["gpio", "video"]);
    assert!(!unit_values("WatchdogSec").is_empty());
    let postinst = read("board/jetson-orin-nano/debian/postinst");
    assert!(postinst.contains("adduser --system") && postinst.contains("#DEBHELPER#"));
}
