//! An output line with no hardware: every edge is kept with its time, and written
//! to an edge log so that tests and commissioning can check the timing.

use super::OutputLine;
use crate::clock;
use anyhow::Context;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Edge {
    /// When the level changed, CLOCK_MONOTONIC ns.
    pub t_ns: u64,
    /// The logical level after the edge: true = reject asserted.
    pub level: bool,
}

pub struct SimulatedLine {
    log: Option<(PathBuf, File)>,
    level: bool,
}

impl SimulatedLine {
    /// `key` (`reject.output`, `status.fault_line`) names the line's section in messages.
    pub fn new(edge_log: Option<PathBuf>, key: &str) -> anyhow::Result<Self> {
        let log = match edge_log {
            Some(path) => {
                let file =
                    File::create(&path).with_context(|| format!("{key}.edge_log: cannot create {}", path.display()))?;
                Some((path, file))
            }
            None => None,
        };
        Ok(SimulatedLine { log, level: false })
    }
}

impl OutputLine for SimulatedLine {
    fn set(&mut self, asserted: bool) -> anyhow::Result<()> {
        if asserted == self.level {
            return Ok(());
        }
        self.level = asserted;
        let edge = Edge {
            t_ns: clock::now_ns(),
            level: asserted,
        };
        if let Some((path, file)) = &mut self.log {
            let line = serde_json::to_string(&edge)? + "\n";
            file.write_all(line.as_bytes())
                .with_context(|| format!("cannot write edge log {}", path.display()))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.log {
            Some((p, _)) => format!("simulated (edges logged to {})", p.display()),
            None => "simulated".into(),
        }
    }
}
