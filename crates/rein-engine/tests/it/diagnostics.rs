//! Golden tests: every invalid policy in `tests/diagnostics/` renders its
//! diagnostics exactly as the snapshot says (file, line, column, the source
//! line with a caret, the hint).

use rein_engine::Policy;
use std::path::Path;

fn render(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/diagnostics")
        .join(name);
    // Name files by their path in the repo so snapshots do not depend on
    // where the checkout lives.
    let text = std::fs::read(&path).unwrap();
    let shown = format!("tests/diagnostics/{name}");
    let err = match String::from_utf8(text) {
        Ok(t) => Policy::from_sources([(shown, t)]).expect_err("policy should not load"),
        Err(_) => {
            // Invalid UTF-8 goes through the file loader.
            let err = Policy::load(&[&path]).expect_err("policy should not load");
            let rendered = err.render(false);
            let base = format!("{}", path.parent().unwrap().display());
            return rendered.replace(&base, "tests/diagnostics");
        }
    };
    let mut out = format!("{}\n\n", err);
    out.push_str(&err.render(false));
    out
}

/// A policy file loaded with a derived source, named as the MCP gateway
/// names them.
fn render_derived(policy: &str, derived: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let err = Policy::from_sources_with_derived(
        [(format!("tests/diagnostics/{policy}"), text(policy))],
        &[("<contracts of MCP server fs>".to_string(), text(derived))],
    )
    .expect_err("policy should not load");
    let mut out = format!("{}\n\n", err);
    out.push_str(&err.render(false));
    out
}

#[test]
fn derived_source_with_other_keys() {
    insta::assert_snapshot!(render_derived("derived_policy.yaml", "derived_source.yaml"));
}

#[test]
fn derived_contract_yields_to_the_policys() {
    insta::assert_snapshot!(render_derived("derived_policy.yaml", "derived_contracts.yaml"));
}

macro_rules! golden {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            insta::assert_snapshot!(render($file));
        }
    )*};
}

golden! {
    unknown_field => "unknown_field.yaml",
    type_mismatch => "type_mismatch.yaml",
    optional_unguarded => "optional_unguarded.yaml",
    bad_regex_and_glob => "bad_regex_and_glob.yaml",
    targets => "targets.yaml",
    syntax_errors => "syntax_errors.yaml",
    enum_and_output => "enum_and_output.yaml",
    yaml_error => "yaml_error.yaml",
    duplicate_key => "duplicate_key.yaml",
    invalid_utf8 => "invalid_utf8.yaml",
    state_syntax => "state_syntax.yaml",
    state_types => "state_types.yaml",
    tool_facts => "tool_facts.yaml",
    tool_types => "tool_types.yaml",
}

#[test]
fn every_diagnostics_file_has_a_golden_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let this = include_str!("diagnostics.rs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(this.contains(&format!("\"{name}\"")), "{name} has no golden test");
    }
}

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let err = Policy::from_sources([(
        "t.yaml",
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics/syntax_errors.yaml"))
            .unwrap(),
    )])
    .unwrap_err();
    assert!(err.error_count() >= 8, "{err}");
}
