//! Prints the analysis of each argument as JSON: `cargo run -p rein-shell --example analyze -- 'cmd'`.
fn main() {
    for command in std::env::args().skip(1) {
        let analysis = rein_shell::analyze(&command);
        match serde_json::to_string_pretty(&analysis) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("{e}"),
        }
    }
}
