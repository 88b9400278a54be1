//! The register map: the one table that both the server's encoding and docs/modbus.md
//! come from. A value is written into the registers by its name, and the name's entry
//! says where it goes and what type it has, so the code cannot drift from the table; a
//! test checks that docs/modbus.md holds exactly the tables [`markdown`] writes.
//!
//! Word order, fixed: a 32-bit value takes two registers, the high word at the lower
//! address ("big-endian", ABCD, as Modbus orders the bytes in a register). A float is
//! IEEE 754 single precision in that order.

/// How a value is laid out in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 16 flags, bit 0 the least significant.
    Bits,
    U16,
    U32,
    I32,
    F32,
}

impl Kind {
    pub fn words(self) -> u16 {
        match self {
            Kind::Bits | Kind::U16 => 1,
            Kind::U32 | Kind::I32 | Kind::F32 => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Bits => "bits",
            Kind::U16 => "uint16",
            Kind::U32 => "uint32",
            Kind::I32 => "int32",
            Kind::F32 => "float32",
        }
    }
}

/// One value in a register table.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its first register, 0-based (the PDU address; some PLC tools show 30001 + address
    /// for input registers, 40001 + address for holding registers).
    pub addr: u16,
    pub kind: Kind,
    pub name: &'static str,
    pub units: &'static str,
    pub meaning: &'static str,
}

const fn f(addr: u16, kind: Kind, name: &'static str, units: &'static str, meaning: &'static str) -> Field {
    Field {
        addr,
        kind,
        name,
        units,
        meaning,
    }
}

/// Input registers (function code 4), read-only. The result fields (inspection id to
/// processing time) belong to one result, the one the status bit `results_valid` is about.
pub const INPUT: &[Field] = &[
    f(0, Kind::Bits, "status", "", "Status bits, below"),
    f(1, Kind::U16, "error_code", "", "What is wrong, below; 0 when nothing is"),
    f(2, Kind::U32, "inspection_id", "", "The part's id, as in the results log (`id`, low 32 bits)"),
    f(4, Kind::U16, "result_code", "", "0 none, 1 pass, 2 reject, 3 error (a fail-safe reject: the part could not be judged on its score)"),
    f(5, Kind::U16, "reason_code", "", "Why, below (the results log's `reason`)"),
    f(6, Kind::F32, "score", "", "The anomaly score; NaN when the part was not inspected"),
    f(8, Kind::I32, "score_x1000", "1/1000", "The score × 1000, rounded; −2147483648 when the part was not inspected"),
    f(10, Kind::F32, "threshold", "", "The threshold the part was judged by (reject when the score is above it)"),
    f(12, Kind::F32, "processing_time_ms", "ms", "Capture to verdict"),
    f(14, Kind::U32, "parts", "parts", "Parts decided since the start or the last counter reset"),
    f(16, Kind::U32, "passed", "parts", "Of which passed"),
    f(18, Kind::U32, "rejected", "parts", "Of which rejected on their score"),
    f(20, Kind::U32, "errors", "parts", "Of which rejected fail-safe (result code 3)"),
    f(22, Kind::U32, "overruns", "results", "Results the PLC did not get: not buffered because `buffer_results` were waiting, or dropped on the way to the server"),
    f(24, Kind::U32, "heartbeat", "", "+1 at every state the line sends (about every second), parts or not"),
    f(26, Kind::U32, "config_checksum", "", "The first 8 hex digits of the config file's sha256 (`config_sha256` in /api/state and in MQTT's status)"),
    f(28, Kind::U16, "buffered", "results", "Results waiting for the acknowledge, the one shown included"),
    f(29, Kind::U16, "buffer_capacity", "results", "`modbus.buffer_results`"),
];

/// Holding registers (function codes 3, 6, 16 and 22): only the control bits. A write to
/// any other address, or of a bit not listed, is refused (exception 2 or 3).
pub const HOLDING: &[Field] = &[f(0, Kind::Bits, "control", "", "Control bits, below")];

/// Bits of the input register `status`.
pub const STATUS_BITS: &[(u16, &str, &str)] = &[
    (0, "online", "The line is running (not before its first state, not once it is stopping)"),
    (1, "ready", "Online and the camera delivering: parts are being inspected"),
    (2, "results_valid", "The result fields hold a result. Buffering off: the newest, from the first part on. Buffering on: the oldest not yet acknowledged"),
    (3, "inspection_completed", "Toggles each time a new result is shown in the result fields"),
    (4, "last_pass", "The result shown passed"),
    (5, "last_reject", "The result shown is a reject (result code 2 or 3)"),
    (6, "error", "`error_code` is not 0"),
    (7, "buffer_overrun", "A result was not buffered (see `overruns`); held until the PLC resets the counters"),
    (8, "camera_ok", "The camera is open and delivering"),
    (9, "buffering", "Buffering is on (the control bit, as the server took it)"),
    (10, "acknowledge", "The acknowledge bit, as the server took it"),
];

/// Bits of the holding register `control`.
pub const CONTROL_BITS: &[(u16, &str, &str)] = &[
    (0, "buffering_enable", "1: results wait, up to `buffer_results`, for the acknowledge, the oldest shown first. Turning it on starts with an empty buffer; turning it off discards what waits and shows the newest result again"),
    (1, "results_acknowledge", "Buffering on: 0 → 1 acknowledges the result shown (`results_valid` falls); the next one is shown once the PLC has set the bit back to 0"),
    (2, "reset_counters", "0 → 1 sets the counters (parts to overruns) to 0 and clears `buffer_overrun`"),
];

/// Values of `error_code`, the most important first.
pub const ERROR_CODES: &[(u16, &str, &str)] = &[
    (0, "none", "Nothing is wrong"),
    (
        1,
        "camera_lost",
        "The camera is lost: parts passing meanwhile are rejected fail-safe until it is back",
    ),
    (
        2,
        "fail_safe_reject",
        "The newest part was rejected fail-safe (its reason in `reason_code` when it is the one shown)",
    ),
];

/// A value for [`Registers::put`].
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Bits(u16),
    U16(u16),
    U32(u32),
    I32(i32),
    F32(f32),
}

impl Value {
    fn kind(self) -> Kind {
        match self {
            Value::Bits(_) => Kind::Bits,
            Value::U16(_) => Kind::U16,
            Value::U32(_) => Kind::U32,
            Value::I32(_) => Kind::I32,
            Value::F32(_) => Kind::F32,
        }
    }
}

/// Words laid out by a table.
#[derive(Debug, Clone)]
pub struct Registers {
    table: &'static [Field],
    pub words: Vec<u16>,
}

/// Registers a table spans.
pub fn span(table: &[Field]) -> u16 {
    table.iter().map(|f| f.addr + f.kind.words()).max().unwrap_or(0)
}

impl Registers {
    pub fn new(table: &'static [Field]) -> Registers {
        Registers {
            table,
            words: vec![0; span(table) as usize],
        }
    }

    /// Writes `value` where the table puts `name`. A name not in the table, or a value of
    /// another type than the table says, is a bug here (every field is written at every
    /// encoding, so the unit tests find it).
    pub fn put(&mut self, name: &str, value: Value) {
        let field = self
            .table
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("register {name} is not in the map"));
        assert_eq!(field.kind, value.kind(), "register {name} has another type in the map");
        let at = field.addr as usize;
        let (hi, lo) = match value {
            Value::Bits(v) | Value::U16(v) => {
                self.words[at] = v;
                return;
            }
            Value::U32(v) => ((v >> 16) as u16, v as u16),
            Value::I32(v) => ((v as u32 >> 16) as u16, v as u16),
            Value::F32(v) => ((v.to_bits() >> 16) as u16, v.to_bits() as u16),
        };
        self.words[at] = hi;
        self.words[at + 1] = lo;
    }
}

/// The register map as docs/modbus.md shows it: the tables, then the bits and codes.
pub fn markdown() -> String {
    let mut out = String::new();
    let table = |out: &mut String, title: &str, fields: &[Field]| {
        out.push_str(&format!(
            "### {title}\n\n| Address | Registers | Type | Name | Units | Meaning |\n|---:|---:|---|---|---|---|\n"
        ));
        for f in fields {
            let regs = if f.kind.words() == 1 {
                f.addr.to_string()
            } else {
                format!("{}–{}", f.addr, f.addr + f.kind.words() - 1)
            };
            out.push_str(&format!(
                "| {} | {regs} | {} | `{}` | {} | {} |\n",
                f.addr,
                f.kind.name(),
                f.name,
                f.units,
                f.meaning
            ));
        }
        out.push('\n');
    };
    let bits = |out: &mut String, title: &str, head: &str, rows: &[(u16, &str, &str)]| {
        out.push_str(&format!("### {title}\n\n| {head} | Name | Meaning |\n|---:|---|---|\n"));
        for (n, name, meaning) in rows {
            out.push_str(&format!("| {n} | `{name}` | {meaning} |\n"));
        }
        out.push('\n');
    };
    table(&mut out, "Input registers (function code 4, read-only)", INPUT);
    table(&mut out, "Holding registers (function codes 3, 6, 16, 22)", HOLDING);
    bits(&mut out, "`status` bits (input register 0)", "Bit", STATUS_BITS);
    bits(&mut out, "`control` bits (holding register 0)", "Bit", CONTROL_BITS);
    let results: Vec<(u16, &str, &str)> = super::handshake::RESULT_CODES.to_vec();
    bits(&mut out, "`result_code` values", "Value", &results);
    let reasons: Vec<(u16, &str, &str)> = super::handshake::REASON_CODES
        .iter()
        .map(|(code, reason, meaning)| (*code, reason.map_or("none", |r| r.as_str()), *meaning))
        .collect();
    bits(&mut out, "`reason_code` values", "Value", &reasons);
    bits(&mut out, "`error_code` values", "Value", ERROR_CODES);
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_follow_each_other_without_gaps_or_overlaps() {
        for table in [INPUT, HOLDING] {
            let mut next = 0;
            for f in table {
                assert_eq!(f.addr, next, "{} starts where the one before ends", f.name);
                next += f.kind.words();
            }
            let mut names: Vec<_> = table.iter().map(|f| f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), table.len(), "names are unique");
        }
        assert_eq!(span(INPUT), 30);
    }

    #[test]
    fn thirty_two_bit_values_put_the_high_word_first() {
        let mut r = Registers::new(INPUT);
        r.put("inspection_id", Value::U32(0x0001_0002));
        r.put("score_x1000", Value::I32(-2));
        r.put("score", Value::F32(1.5));
        assert_eq!(r.words[2..4], [0x0001, 0x0002]);
        assert_eq!(r.words[8..10], [0xffff, 0xfffe]);
        // 1.5 = 0x3fc00000
        assert_eq!(r.words[6..8], [0x3fc0, 0x0000]);
    }

    #[test]
    #[should_panic(expected = "another type")]
    fn a_value_of_the_wrong_type_is_refused() {
        Registers::new(INPUT).put("score", Value::U32(1));
    }

    #[test]
    fn docs_modbus_md_holds_the_register_map() {
        const BEGIN: &str = "<!-- register map: generated from src/sinks/modbus/map.rs, checked by its tests -->\n";
        const END: &str = "<!-- end of the register map -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/modbus.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let start = doc.find(BEGIN).expect("docs/modbus.md marks where the map begins") + BEGIN.len();
        let end = doc[start..].find(END).expect("and where it ends") + start;
        let want = format!("\n{}\n", markdown());
        if doc[start..end] != want && std::env::var_os("LINESIGHT_WRITE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{want}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        assert!(
            doc[start..end] == want,
            "docs/modbus.md's register map differs from src/sinks/modbus/map.rs: run \
             LINESIGHT_WRITE_DOCS=1 cargo test --lib sinks::modbus to write it, and read the diff"
        );
    }
}
