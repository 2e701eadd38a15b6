//! `rein diff`: semantic difference of two policies.

use super::lint::SolverArgs;
use super::{printable, EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE};
use clap::Args;
use rein_analysis::DiffReport;
use rein_engine::compare::FieldChangeKind;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `rein diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The policy in force (a file or a directory).
    #[arg(value_name = "OLD")]
    old: PathBuf,
    /// The policy that would replace it.
    #[arg(value_name = "NEW")]
    new: PathBuf,
    /// Print the comparison as one JSON object (for tools).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    solver: SolverArgs,
}

/// Runs `rein diff`.
pub fn run(args: DiffArgs, color: bool) -> anyhow::Result<u8> {
    let format = if args.json {
        super::Format::Json
    } else {
        super::Format::Human
    };
    let (Ok(old), Ok(new)) = (
        super::load_policy(std::slice::from_ref(&args.old), color, format),
        super::load_policy(std::slice::from_ref(&args.new), color, format),
    ) else {
        if !args.json {
            eprintln!("error: a policy did not load");
        }
        return Ok(EXIT_USAGE);
    };
    let mut solver = match args.solver.start() {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let report = rein_analysis::diff(&old, &new, &mut solver);
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("differs".into(), report.differs().into());
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        print_human(&report, &mut out)?;
    }
    Ok(if report.differs() { EXIT_BLOCK } else { EXIT_ALLOW })
}

fn print_human(report: &DiffReport, out: &mut impl Write) -> anyhow::Result<()> {
    let s = &report.structure;
    for a in &report.actions {
        writeln!(out, "{}:", printable(&a.action))?;
        match a.only_in {
            Some("old") => writeln!(
                out,
                "  removed: NEW does not know the action (every request is blocked)"
            )?,
            Some(_) => writeln!(out, "  added: OLD did not know the action (every request was blocked)")?,
            None => {}
        }
        for c in &a.changes {
            let arrow = format!("{} → {}", c.from.as_str(), c.to.as_str());
            match (&c.example, &c.rules) {
                (Some(ex), Some((o, n))) => {
                    let names = |r: &[String]| {
                        if r.is_empty() {
                            "default".to_string()
                        } else {
                            r.iter()
                                .map(|x| printable(x).into_owned())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    };
                    writeln!(out, "  {arrow}: for example {}", printable(&ex.to_string()))?;
                    writeln!(out, "    (old: {}; new: {})", names(o), names(n))?;
                }
                _ => writeln!(out, "  {arrow}: {}", c.note.as_deref().unwrap_or("possible"))?,
            }
        }
        if a.contract_changed {
            writeln!(
                out,
                "  contract changed: requests valid under only one contract are blocked by the other"
            )?;
        }
        if a.after_changed {
            writeln!(out, "  `after` rules changed (not analysed here: see `rein plan`)")?;
        }
    }
    let mut structural = Vec::new();
    if let Some((o, n)) = s.default_before {
        structural.push(format!("default: {} → {}", o.as_str(), n.as_str()));
    }
    if let Some((o, n)) = s.default_after {
        structural.push(format!("default_after: {} → {}", o.as_str(), n.as_str()));
    }
    if let Some((o, n)) = &s.combining {
        structural.push(format!("combining: {o} → {n}"));
    }
    for (root, changes) in [("actor", &s.actor), ("snapshot", &s.snapshot)] {
        for c in changes {
            structural.push(format!("{root} contract: {}", field_change(c)));
        }
    }
    for a in &s.actions {
        let name = printable(&a.action);
        for r in &a.rules_added {
            structural.push(format!(
                "{name}: rule `{}` added ({})",
                printable(&r.id),
                r.effect.as_str()
            ));
        }
        for r in &a.rules_removed {
            structural.push(format!(
                "{name}: rule `{}` removed ({})",
                printable(&r.id),
                r.effect.as_str()
            ));
        }
        for r in &a.rules_changed {
            structural.push(format!(
                "{name}: rule `{}` changed ({})",
                printable(&r.id),
                r.what.join(", ")
            ));
        }
        for c in a.input.iter().chain(a.output.iter()) {
            structural.push(format!("{name}: {}", field_change(c)));
        }
    }
    if !structural.is_empty() {
        writeln!(out, "changed:")?;
        for line in structural {
            writeln!(out, "  {line}")?;
        }
    }
    for u in &report.unknown {
        writeln!(
            out,
            "unknown: action `{}`: {} ({})",
            printable(&u.action),
            u.question,
            u.reason
        )?;
    }
    if report.differs() {
        writeln!(out, "diff: decisions differ (or may differ) between OLD and NEW")?;
    } else {
        writeln!(
            out,
            "diff: every request is decided the same by OLD and NEW (`before` phase, proved)"
        )?;
    }
    Ok(())
}

fn field_change(c: &rein_engine::compare::FieldChange) -> String {
    let path = printable(&c.path);
    match &c.kind {
        FieldChangeKind::Added { ty } => format!("field `{path}` added ({ty})"),
        FieldChangeKind::Removed { ty } => format!("field `{path}` removed ({ty})"),
        FieldChangeKind::Retyped { old, new } => format!("field `{path}` retyped {old} → {new}"),
        FieldChangeKind::Constraints { old, new } => format!("field `{path}` constraints {old} → {new}"),
    }
}
