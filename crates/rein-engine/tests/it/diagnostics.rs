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
