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
            // One write of a whole line, formatted on the stack: an edge costs no allocation.
            let mut line = [0u8; 64];
            let mut cursor = std::io::Cursor::new(&mut line[..]);
            writeln!(cursor, "{{\"t_ns\":{},\"level\":{}}}", edge.t_ns, edge.level).expect("an edge fits 64 bytes");
            let n = cursor.position() as usize;
            file.write_all(&line[..n])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_edge_is_one_json_line_as_serde_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edges.jsonl");
        let mut line = SimulatedLine::new(Some(path.clone()), "reject.output").unwrap();
        line.set(true).unwrap();
        line.set(true).unwrap(); // no change, no edge
        line.set(false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let edges: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(edges.len(), 2, "{text}");
        assert_eq!(
            (edges[0]["level"].as_bool(), edges[1]["level"].as_bool()),
            (Some(true), Some(false))
        );
        let t = edges[0]["t_ns"].as_u64().unwrap();
        let again = Edge { t_ns: t, level: true };
        assert_eq!(text.lines().next().unwrap(), serde_json::to_string(&again).unwrap());
    }
}
