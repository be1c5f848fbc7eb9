//! The JSON-lines view: one [`TraceEvent`] per line, as serde writes it (schema in
//! `docs/TRACES.md`), and the reader that parses it back.

use super::TraceEvent;

/// The record as JSON lines, each ending in a newline.
pub fn render(events: &[TraceEvent]) -> String {
    let mut out = String::new();
    for e in events {
        // A TraceEvent holds only strings, numbers, booleans and lists of them: it
        // always serialises.
        if let Ok(line) = serde_json::to_string(e) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Parses JSON lines back into events; the error names the 1-based line that does not
/// parse. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<TraceEvent>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}
