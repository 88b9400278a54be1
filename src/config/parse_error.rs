//! A TOML error as an operator reads it, on one line: the key path, the line and column,
//! what was expected and what was found, and the offending source line.
//!
//! toml's errors carry a byte span. Where it points at a value or a key, the key path is
//! the item found there. serde's internally tagged enums (`[camera]`, `[trigger]`,
//! `[reject.output]`, `[status.fault_line]`, chosen by `kind`) buffer their table before
//! reading it, so their errors point at the whole table: there the key is found again by
//! what the message says was found (`string "256"`, `unknown field \`colour\``) among the
//! table's own values.

use std::ops::Range;
use toml_edit::{Item, Value};

/// "camera.width: invalid type: string "256", expected u32 (line 3, column 9: `width = "256"`)";
/// a syntax error without a key: "TOML parse error at line 6, column 7: invalid table header
/// (at `[camera`)".
pub fn parse_message(e: &toml::de::Error, source: &str) -> String {
    let what = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let Some(span) = e.span().filter(|s| s.start <= source.len()) else {
        return what;
    };
    let found = toml_edit::ImDocument::parse(source)
        .ok()
        .and_then(|doc| locate(doc.as_item(), span.start, &what));
    match found {
        Some((key, at)) => format!("{key}: {what} ({})", position(source, at)),
        None => {
            let (line, column, text) = line_of(source, span.start);
            format!("TOML parse error at line {line}, column {column}: {what} (at `{text}`)")
        }
    }
}

/// "line L, column C: `the line`" for byte `at` of `source`.
pub fn position(source: &str, at: usize) -> String {
    let (line, column, text) = line_of(source, at);
    format!("line {line}, column {column}: `{text}`")
}

/// 1-based line and column (in characters) of byte `at`, and that line's text, trimmed.
fn line_of(source: &str, at: usize) -> (usize, usize, &str) {
    let mut at = at.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    let start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = source[at..].find('\n').map_or(source.len(), |i| at + i);
    let line = source[..start].matches('\n').count() + 1;
    let column = source[start..at].chars().count() + 1;
    (line, column, source[start..end].trim())
}

/// One item of the document: a table or array of tables, or a value.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn value(self) -> Option<&'a Value> {
        match self {
            Node::Item(Item::Value(v)) | Node::Value(v) => Some(v),
            _ => None,
        }
    }

    /// A table, whose span is its header (or its braces): its children lie elsewhere.
    fn is_table(self) -> bool {
        match self {
            Node::Item(Item::Table(_) | Item::ArrayOfTables(_)) => true,
            n => matches!(n.value(), Some(Value::InlineTable(_))),
        }
    }

    /// (key path segment, the key's span, the child), in the document's order.
    fn children(self) -> Vec<(String, Option<Range<usize>>, Node<'a>)> {
        let key = |k: &str| {
            if k.contains(['.', ' ', '"']) {
                format!("{k:?}")
            } else {
                k.to_string()
            }
        };
        match self {
            Node::Item(Item::Table(t)) => t
                .iter()
                .map(|(k, i)| (key(k), t.key(k).and_then(|k| k.span()), Node::Item(i)))
                .collect(),
            Node::Item(Item::ArrayOfTables(a)) => a
                .iter()
                .enumerate()
                .flat_map(|(n, t)| {
                    t.iter().map(move |(k, i)| {
                        (
                            format!("[{n}].{}", key(k)),
                            t.key(k).and_then(|k| k.span()),
                            Node::Item(i),
                        )
                    })
                })
                .collect(),
            n => match n.value() {
                Some(Value::InlineTable(t)) => t
                    .iter()
                    .map(|(k, v)| (key(k), t.key(k).and_then(|k| k.span()), Node::Value(v)))
                    .collect(),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(n, v)| (format!("[{n}]"), None, Node::Value(v)))
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

fn join(path: &str, segment: &str) -> String {
    if path.is_empty() || segment.starts_with('[') {
        format!("{path}{segment}")
    } else {
        format!("{path}.{segment}")
    }
}

fn contains(span: &Option<Range<usize>>, at: usize) -> bool {
    span.as_ref()
        .is_some_and(|s| s.start <= at && at < s.end.max(s.start + 1))
}

/// The key path of the item at byte `at` and the byte to show; inside a table that the
/// error names as a whole, the value or key that `what` describes.
fn locate(root: &Item, at: usize, what: &str) -> Option<(String, usize)> {
    let (path, node, start) = deepest(Node::Item(root), String::new(), at)?;
    if node.is_some_and(Node::is_table) {
        if let Some(found) = described(node.unwrap(), &path, what) {
            return Some(found);
        }
    }
    Some((path, start))
}

/// The deepest item whose key or span holds `at`: (path, the item if `at` is on it rather
/// than on its key, where it starts).
fn deepest(node: Node<'_>, path: String, at: usize) -> Option<(String, Option<Node<'_>>, usize)> {
    for (segment, key_span, child) in node.children() {
        let here = join(&path, &segment);
        if contains(&key_span, at) {
            return Some((here, None, key_span.map_or(at, |s| s.start)));
        }
        let span = child.span();
        if contains(&span, at) {
            let start = span.map_or(at, |s| s.start);
            return deepest(child, here.clone(), at).or(Some((here, Some(child), start)));
        }
        // A table's span is its header only: its keys may be anywhere after it.
        if matches!(child, Node::Item(Item::Table(_) | Item::ArrayOfTables(_))) {
            if let Some(found) = deepest(child, here, at) {
                return Some(found);
            }
        }
    }
    None
}

/// Inside `table` (at `path`), the first value or key that the message `what` names as
/// what was found: `string "256"`, `integer \`-5\``, `unknown field \`colour\``,
/// `unknown variant \`usb\``.
fn described(table: Node<'_>, path: &str, what: &str) -> Option<(String, usize)> {
    let unknown_field = quoted_after(what, "unknown field `");
    for (segment, key_span, child) in table.children() {
        let here = join(path, &segment);
        if let Some(start) = key_span.clone().or(child.span()).map(|s| s.start) {
            if unknown_field.is_some_and(|f| segment == f) || child.value().is_some_and(|v| is_described(v, what)) {
                return Some((here, start));
            }
        }
        if !child.is_table() && child.children().is_empty() {
            continue;
        }
        if let Some(found) = described(child, &here, what) {
            return Some(found);
        }
    }
    None
}

/// Whether `what` (serde's message) names `v` as the value it found.
fn is_described(v: &Value, what: &str) -> bool {
    let found = |s: &str| what.contains(&format!("invalid type: {s}")) || what.contains(&format!("invalid value: {s}"));
    match v {
        Value::String(s) => {
            let s = s.value();
            found(&format!("string {s:?}")) || what.contains(&format!("unknown variant `{s}`"))
        }
        Value::Integer(i) => found(&format!("integer `{}`", i.value())),
        Value::Boolean(b) => found(&format!("boolean `{}`", b.value())),
        Value::Float(f) => ["invalid type: floating point `", "invalid value: floating point `"]
            .iter()
            .filter_map(|p| quoted_after(what, p))
            .filter_map(|n| n.parse::<f64>().ok())
            .any(|n| n == *f.value() || (n.is_nan() && f.value().is_nan())),
        Value::Array(_) => found("sequence"),
        Value::InlineTable(_) => found("map"),
        Value::Datetime(_) => false,
    }
}

/// The text between `prefix` and the next backtick.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        match toml::from_str::<crate::config::Config>(text) {
            Ok(_) => panic!("{text} parsed"),
            Err(e) => parse_message(&e, text),
        }
    }

    const TAIL: &str = "[model]\ndir = \"m\"\n[reject]\ndelay_ms = 300\n[reject.output]\nkind = \"simulated\"\n";

    #[test]
    fn a_type_error_in_a_tagged_section_names_its_key_and_line() {
        let m = message(&format!("[camera]\nkind = \"synthetic\"\nwidth = \"256\"\n{TAIL}"));
        assert_eq!(
            m,
            "camera.width: invalid type: string \"256\", expected u32 (line 3, column 1: `width = \"256\"`)"
        );
        let m = message(&format!(
            "[camera]\nkind = \"v4l2\"\ndevice = \"/dev/video0\"\ncontrols = {{ gain = 1.5 }}\n{TAIL}"
        ));
        assert!(
            m.starts_with("camera.controls.gain: invalid type: floating point `1.5`, expected i32 (line 4"),
            "{m}"
        );
        let m = message(&format!("[camera]\nkind = \"synthetic\"\ncolour = 1\n{TAIL}"));
        assert!(m.starts_with("camera.colour: unknown field `colour`"), "{m}");
        assert!(m.ends_with("(line 3, column 1: `colour = 1`)"), "{m}");
        let m = message(&format!("[camera]\nwidth = 64\nkind = \"usb\"\n{TAIL}"));
        assert!(m.starts_with("camera.kind: unknown variant `usb`"), "{m}");
        let out = TAIL.replace(
            "kind = \"simulated\"",
            "kind = \"gpio\"\nchip = \"c\"\nline = 5\nactive_low = \"yes\"",
        );
        let m = message(&format!("[camera]\nkind = \"synthetic\"\n{out}"));
        assert!(
            m.starts_with("reject.output.active_low: invalid type: string \"yes\", expected a boolean (line 11"),
            "{m}"
        );
    }

    #[test]
    fn a_type_error_in_a_plain_section_names_its_key_and_line() {
        let m = message(&format!(
            "[camera]\nkind = \"synthetic\"\n{TAIL}[decision]\nqueue_depth = \"4\"\n"
        ));
        assert_eq!(
            m,
            "decision.queue_depth: invalid type: string \"4\", expected usize (line 10, column 15: `queue_depth = \"4\"`)"
        );
        let m = message(&format!(
            "[camera]\nkind = \"synthetic\"\n{TAIL}[runtime]\nproviders = [\"cpu\", 3]\n"
        ));
        assert!(
            m.starts_with("runtime.providers[1]: wanted string or table (line 10, column 21"),
            "{m}"
        );
        let m = message(&format!(
            "[camera]\nkind = \"synthetic\"\n{TAIL}[decision]\nqueue_depth = -4\n"
        ));
        assert!(
            m.starts_with("decision.queue_depth: invalid value: integer `-4`, expected usize (line 10"),
            "{m}"
        );
    }

    #[test]
    fn a_missing_key_names_its_table_and_a_syntax_error_its_line() {
        let m = message(&format!("[camera]\nkind = \"folder\"\n{TAIL}"));
        assert_eq!(m, "camera: missing field `path` (line 1, column 1: `[camera]`)");
        let m = message("[camera]\nkind = \"synthetic\"\n[model\n");
        assert!(
            m.starts_with("TOML parse error at line 3, column 7: invalid table header"),
            "{m}"
        );
    }
}
