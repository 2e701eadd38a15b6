//! Prints the analysis of each argument as JSON, or of standard input when
//! there is no argument: `cargo run -p rein-shell --example analyze -- 'cmd'`.
use std::io::Read;

fn main() {
    let mut commands: Vec<String> = std::env::args().skip(1).collect();
    if commands.is_empty() {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("{e}");
            return;
        }
        commands.push(text);
    }
    for command in commands {
        let analysis = rein_shell::analyze(&command);
        match serde_json::to_string_pretty(&analysis) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("{e}"),
        }
    }
}
