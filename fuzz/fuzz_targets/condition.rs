//! The condition parser and checker never panic; parsed expressions print
//! back to text that parses to the same tree.
#![no_main]
use libfuzzer_sys::fuzz_target;

const POLICY: &str = "contracts:\n  actions:\n    a:\n      input: {s: string, n: int, x: number, l: list<string>, m: map<int>, o: {type: object, optional: true, fields: {k: string}}}\nrules:\n  - id: r\n    action: a\n    when: ";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = rein_engine::syntax::cel::parse(text) {
        let printed = expr.to_string();
        let reparsed = rein_engine::syntax::cel::parse(&printed);
        assert!(reparsed.is_ok(), "printed form does not parse: {printed}");
    }
    let yaml_text = serde_json_string(text);
    let policy = format!("{POLICY}{yaml_text}\n    effect: block\n");
    if let Ok(p) = rein_engine::Policy::from_yaml_str(&policy) {
        let _ = p.decide(&rein_engine::Request::new("a"));
    }
});

/// A YAML double-quoted scalar holding `text`.
fn serde_json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
