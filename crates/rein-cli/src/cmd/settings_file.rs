//! Client configuration files Rein writes into (`rein init claude-code`,
//! `rein mcp wrap`): an order-preserving JSON tree ([`Json`]), reading,
//! showing the change as a diff, asking, and replacing the file atomically,
//! and the rein executable such a file may name.
//!
//! (serde_json's `preserve_order` feature would also keep the order, but
//! Cargo unifies features: it would change the key order of every JSON
//! object the workspace builds and prints, not only these files'.)

use anyhow::{bail, Context};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::fs;
use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The text of `path`, or `None` when it does not exist. A file that is
/// not UTF-8 is refused, and left as it is.
pub(super) fn read_text(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(_) => bail!("{}: not UTF-8 text; the file was left unchanged", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Prints the unified diff from `old` (labelled `old_label`) to `new`
/// (labelled `label`) on stdout.
pub(super) fn print_diff(old_label: &str, label: &str, old: &str, new: &str) -> anyhow::Result<()> {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "{}",
        diff.unified_diff().context_radius(3).header(old_label, label)
    )?;
    out.flush()?;
    Ok(())
}

/// A serde_json error in `path` (whose text is `text`) as
/// `PATH:LINE:COLUMN: WHAT: MESSAGE; the file was left unchanged`, where
/// `what` is `data` for a value of the wrong shape and "not valid JSON" for
/// the rest. A comment where the error is gets said as such: some agents
/// (Gemini CLI) read their settings with comments, and serde_json's "key
/// must be a string" would not tell the user why their file is refused.
pub(super) fn json_error(path: &Path, text: &str, e: &serde_json::Error, data: &str) -> anyhow::Error {
    let what = match e.classify() {
        serde_json::error::Category::Data => data,
        _ => "not valid JSON",
    };
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let mut message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
    if e.is_syntax() && comment_at(text, e.line(), e.column()) {
        message = "a comment (JSON has none; Rein rewrites the file and could not keep it): \
                   take the comments out, or add Rein's hooks by hand"
            .to_owned();
    }
    anyhow::anyhow!(
        "{}:{}:{}: {what}: {message}; the file was left unchanged",
        path.display(),
        e.line(),
        e.column()
    )
}

/// Whether a `//` or `/*` comment starts at (or just before) 1-based
/// `line`:`column` of `text`, where serde_json stopped.
fn comment_at(text: &str, line: usize, column: usize) -> bool {
    let Some(row) = text.lines().nth(line.saturating_sub(1)) else {
        return false;
    };
    let chars: Vec<char> = row.chars().collect();
    [column.saturating_sub(1), column.saturating_sub(2)]
        .iter()
        .any(|&at| chars.get(at) == Some(&'/') && matches!(chars.get(at + 1), Some('/' | '*')))
}

/// The rein a client configuration should run when this one is `exe`: `exe` itself, or,
/// when `exe` lies in a cargo build folder, the first `rein` on PATH that
/// does not (`runner` names who runs it, for the note). A build folder's binary is replaced by the next `cargo build`
/// and removed by `cargo clean` (every tool call would then be refused),
/// and whoever can run cargo in that tree can rebuild it.
pub(super) fn installed_rein(exe: &Path, runner: &str) -> anyhow::Result<PathBuf> {
    if !in_cargo_target(exe) {
        return Ok(exe.to_path_buf());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("rein"))
        .find(|candidate| candidate.is_file() && candidate.is_absolute() && !in_cargo_target(candidate));
    match on_path {
        Some(found) => {
            eprintln!(
                "note: this rein runs from cargo's build folder ({}); {runner} will run {} (found on PATH; \
                 --rein-bin chooses another)",
                exe.display(),
                found.display()
            );
            Ok(found)
        }
        None => bail!(
            "this rein runs from cargo's build folder ({}), which the next `cargo build` replaces and `cargo clean` \
             removes; install it first (`cargo install --path crates/rein-cli`) so that `rein` is on PATH, or pass \
             --rein-bin PATH; nothing written",
            exe.display()
        ),
    }
}

/// Whether `exe` is `<target>/<profile>/NAME` or
/// `<target>/<triple>/<profile>/NAME` of a cargo target folder (which holds
/// `CACHEDIR.TAG` or `.rustc_info.json`). The path is taken as written, not
/// through symlinks: a link the user put on PATH is their choice.
fn in_cargo_target(exe: &Path) -> bool {
    exe.ancestors().skip(2).take(2).any(|dir| {
        dir.join(".rustc_info.json").is_file()
            || fs::read_to_string(dir.join("CACHEDIR.TAG")).is_ok_and(|t| t.contains("cargo"))
    })
}

/// `path` as text, for a configuration file.
pub(super) fn utf8(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| {
        format!(
            "{} is not valid UTF-8; it cannot go into a settings file",
            path.display()
        )
    })
}

/// `path` made absolute (not resolving symlinks), as text.
pub(super) fn absolute(path: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))?;
    Ok(utf8(&abs)?.to_owned())
}

/// The indentation of the first indented line of `text` (two spaces if
/// none), so that a rewritten file keeps its style.
pub(super) fn indent_of(text: &str) -> String {
    text.lines()
        .skip(1)
        .map(|line| {
            let end = line.find(|c| c != ' ' && c != '\t').unwrap_or(line.len());
            &line[..end]
        })
        .find(|indent| !indent.is_empty() && indent.len() <= 8)
        .unwrap_or("  ")
        .to_owned()
}

/// `tree` as pretty JSON indented by `indent`, with a final newline.
pub(super) fn render(tree: &Json, indent: &str) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    tree.serialize(&mut ser)?;
    out.push(b'\n');
    Ok(String::from_utf8(out)?)
}

/// Writes a change already shown as a diff, unless `dry_run`, and on a
/// terminal only once confirmed (`yes` skips the question). Returns the
/// exit code when nothing was written: `EXIT_ALLOW` for a dry run,
/// `EXIT_BLOCK` when the person said no.
/// Renders `new` with `old_text`'s indent, prints the diff from the file at
/// `path` (from `/dev/null` when it did not `exist`), then writes it as
/// [`write_reviewed`] does and says so. `Some(exit code)` when nothing was
/// written (a dry run, or the user said no).
pub(super) fn show_and_write(
    path: &Path,
    exists: bool,
    old_text: &str,
    new: &Json,
    dry_run: bool,
    yes: bool,
) -> anyhow::Result<Option<u8>> {
    let new_text = render(new, &indent_of(old_text))?;
    let label = path.display().to_string();
    let old_label = if exists { label.as_str() } else { "/dev/null" };
    print_diff(old_label, &label, old_text, &new_text)?;
    let not_written = write_reviewed(path, &new_text, dry_run, yes)?;
    if not_written.is_none() {
        eprintln!("wrote {}", path.display());
    }
    Ok(not_written)
}

pub(super) fn write_reviewed(path: &Path, text: &str, dry_run: bool, yes: bool) -> anyhow::Result<Option<u8>> {
    if dry_run {
        eprintln!("dry run: {} not written", path.display());
        return Ok(Some(super::EXIT_ALLOW));
    }
    if !yes && std::io::stdin().is_terminal() && !confirm(path)? {
        eprintln!("nothing written");
        return Ok(Some(super::EXIT_BLOCK));
    }
    write_atomic(path, text)?;
    Ok(None)
}

/// Asks on stderr whether to write `path`; yes only for `y` or `yes`.
fn confirm(path: &Path) -> anyhow::Result<bool> {
    eprint!("write {}? [y/N] ", path.display());
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Writes `text` to a temporary file next to `path` (creating the folder),
/// with the old file's permissions, then renames it over `path`. A symlink
/// is followed: its target is replaced, the link stays.
pub(super) fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let path = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).with_context(|| format!("cannot follow the symlink {}", path.display()))?
        }
        _ => path.to_owned(),
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("settings.json");
    let tmp = dir.join(format!(".{name}.rein-{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Ok(meta) = fs::metadata(&path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    // Make the rename durable where the platform allows opening a folder.
    if let Ok(dir) = fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A JSON value whose objects keep their keys in document order.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Obj),
}

/// An object's members in order. A repeated key keeps its first place and
/// its last value, as JavaScript's `JSON.parse` does.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Obj(pub(super) Vec<(String, Json)>);

impl Obj {
    /// The value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Json> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, to change.
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Replaces the value of `key` in place, or appends it.
    pub(super) fn insert(&mut self, key: &str, value: Json) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// Takes `key` out.
    pub(super) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }
}

impl Json {
    /// An object of `members`, in their order.
    pub(super) fn object<const N: usize>(members: [(&str, Json); N]) -> Json {
        let mut obj = Obj::default();
        for (k, v) in members {
            obj.insert(k, v);
        }
        Json::Object(obj)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::String(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}

impl From<u32> for Json {
    fn from(n: u32) -> Json {
        Json::Number(n.into())
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(obj) => {
                let mut map = s.serialize_map(Some(obj.0.len()))?;
                for (k, v) in &obj.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::invalid_value(Unexpected::Float(v), &self))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut obj = Obj::default();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            obj.insert(&k, v);
        }
        Ok(Json::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_is_named_as_such() {
        let path = Path::new("settings.json");
        for text in [
            "{\n  // mine\n  \"a\": 1\n}",
            "{\"a\": 1, /* mine */ \"b\": 2}",
            "{\"a\": 1 // mine\n}",
        ] {
            let e = serde_json::from_str::<Json>(text).unwrap_err();
            let message = json_error(path, text, &e, "wrong shape").to_string();
            assert!(message.contains("a comment (JSON has none"), "{text}: {message}");
        }
        let text = "{\"a\": 1,}";
        let e = serde_json::from_str::<Json>(text).unwrap_err();
        let message = json_error(path, text, &e, "wrong shape").to_string();
        assert!(
            message.contains("trailing comma") && !message.contains("comment"),
            "{message}"
        );
    }

    #[test]
    fn key_order_and_duplicates_follow_json_parse() {
        let tree: Json = serde_json::from_str(r#"{"z": 1, "a": {"y": 2.50, "b": null}, "z": 3}"#).unwrap();
        assert_eq!(
            render(&tree, "  ").unwrap(),
            "{\n  \"z\": 3,\n  \"a\": {\n    \"y\": 2.5,\n    \"b\": null\n  }\n}\n"
        );
    }

    #[test]
    fn indentation_is_kept() {
        assert_eq!(indent_of("{\n    \"a\": 1\n}\n"), "    ");
        assert_eq!(indent_of("{\n\t\"a\": 1\n}\n"), "\t");
        assert_eq!(indent_of("{\"a\": 1}"), "  ");
    }
}
