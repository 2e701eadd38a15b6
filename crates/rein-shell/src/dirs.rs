//! The working directory through one command line: what `cd`, `pushd`,
//! `popd` (and wrappers such as `env -C`) make it, as path text relative to
//! where the command line starts.
//!
//! The state is a set of alternatives, because a `cd` may fail (`cd x; rm
//! y` runs `rm` in `x` or where it started), or a set that cannot be known
//! (`cd "$X"`), from which point every part is not understood. The walk
//! keeps one state per shell: a subshell, a substitution, a pipeline stage
//! or a background command works on a copy.

use crate::words::WordInfo;

/// More possible working directories than this: not understood.
pub(crate) const MAX_DIRS: usize = 16;

/// One possible state of the shell: its directory and its directory stack
/// (`pushd`), both as path text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) cwd: String,
    /// The directories `pushd` saved, the most recent first.
    pub(crate) stack: Vec<String>,
}

/// Where the shell may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dirs {
    /// One of these (never empty).
    Known(Vec<Place>),
    /// Cannot be known, and why.
    Unknown(String),
}

impl Default for Dirs {
    fn default() -> Self {
        Dirs::Known(vec![Place::default()])
    }
}

impl Dirs {
    /// Either state.
    pub(crate) fn union(&self, other: &Dirs) -> Dirs {
        match (self, other) {
            (Dirs::Unknown(r), _) | (_, Dirs::Unknown(r)) => Dirs::Unknown(r.clone()),
            (Dirs::Known(a), Dirs::Known(b)) => {
                let mut all = a.clone();
                for p in b {
                    if !all.contains(p) {
                        all.push(p.clone());
                    }
                }
                Dirs::bounded(all)
            }
        }
    }

    fn bounded(places: Vec<Place>) -> Dirs {
        if places.len() > MAX_DIRS {
            Dirs::Unknown(format!(
                "the command may be in more than {MAX_DIRS} working directories (cd)"
            ))
        } else {
            Dirs::Known(places)
        }
    }

    /// Every state of `other` is one of `self`'s.
    pub(crate) fn covers(&self, other: &Dirs) -> bool {
        match (self, other) {
            (Dirs::Unknown(_), _) => true,
            (Dirs::Known(_), Dirs::Unknown(_)) => false,
            (Dirs::Known(a), Dirs::Known(b)) => b.iter().all(|p| a.contains(p)),
        }
    }

    /// The distinct directories, in order; empty when unknown.
    pub(crate) fn cwds(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Dirs::Known(places) = self {
            for p in places {
                if !out.contains(&p.cwd) {
                    out.push(p.cwd.clone());
                }
            }
        }
        out
    }

    /// Each state changed by `f`; any error makes the whole unknown.
    pub(crate) fn map(&self, f: impl Fn(&Place) -> Result<Place, String>) -> Dirs {
        match self {
            Dirs::Unknown(r) => Dirs::Unknown(r.clone()),
            Dirs::Known(places) => {
                let mut out: Vec<Place> = Vec::new();
                for p in places {
                    match f(p) {
                        Ok(q) => {
                            if !out.contains(&q) {
                                out.push(q);
                            }
                        }
                        Err(reason) => return Dirs::Unknown(reason),
                    }
                }
                Dirs::bounded(out)
            }
        }
    }

    /// The states with every directory moved into `dir` (`env -C dir`,
    /// `git -C dir`).
    pub(crate) fn enter(&self, dir: &str) -> Dirs {
        self.map(|p| {
            Ok(Place {
                cwd: join(&p.cwd, dir),
                stack: p.stack.clone(),
            })
        })
    }
}

/// `dir` taken from `cwd`, as text: an absolute or home path replaces it.
pub(crate) fn join(cwd: &str, dir: &str) -> String {
    if dir.is_empty() {
        cwd.to_owned()
    } else if cwd.is_empty() || dir.starts_with('/') || dir == "~" || dir.starts_with("~/") {
        dir.to_owned()
    } else if cwd.ends_with('/') {
        format!("{cwd}{dir}")
    } else {
        format!("{cwd}/{dir}")
    }
}

/// What a directory-changing builtin does: the states after it succeeds.
/// The states after it fails are those before.
pub(crate) fn change(program: &str, words: &[WordInfo], text: &str, before: &Dirs) -> Option<Dirs> {
    let unknown = |why: String| Dirs::Unknown(format!("the working directory after `{text}` cannot be known: {why}"));
    let result = match program {
        "cd" => cd_target(words).map(|target| before.enter(&target)),
        "pushd" => pushd(words, before),
        "popd" => popd(words, before),
        "dirs" if words.iter().skip(1).any(|w| w.literal == "-c") => Ok(before.map(|p| {
            Ok(Place {
                cwd: p.cwd.clone(),
                stack: Vec::new(),
            })
        })),
        _ => return None,
    };
    Some(match result {
        Ok(Dirs::Unknown(r)) if !r.contains("working directories") => unknown(r),
        Ok(d) => d,
        Err(why) => unknown(why),
    })
}

/// A directory word as `cd` and `pushd` take it.
fn literal_dir(w: &WordInfo) -> Result<String, String> {
    let dir = &w.literal;
    if !w.is_literal() {
        return Err(format!("the directory {dir} is not literal"));
    }
    if dir == "-" {
        return Err("`-` goes to the previous directory ($OLDPWD)".to_owned());
    }
    if dir.starts_with('~') && dir != "~" && !dir.starts_with("~/") {
        return Err(format!("{dir} names another user's home or the directory stack"));
    }
    Ok(dir.clone())
}

/// `cd [-L|-P [-e]] [-@] [dir]`.
fn cd_target(words: &[WordInfo]) -> Result<String, String> {
    let mut i = 1;
    let mut physical = false;
    while let Some(w) = words.get(i) {
        let t = w.literal.as_str();
        if t == "--" {
            i += 1;
            break;
        }
        if !t.starts_with('-') || t == "-" {
            break;
        }
        if !w.is_literal() || !t.chars().skip(1).all(|c| matches!(c, 'L' | 'P' | 'e' | '@')) {
            return Err(format!("unknown option {t} of cd"));
        }
        physical |= t.contains('P');
        i += 1;
    }
    let Some(w) = words.get(i) else {
        return Ok("~".to_owned());
    };
    let dir = literal_dir(w)?;
    if physical && dir.split('/').any(|c| c == "..") {
        return Err("cd -P reads `..` through symlinks".to_owned());
    }
    Ok(dir)
}

/// `pushd dir` (into `dir`, the old directory saved) and `pushd` alone
/// (swaps with the saved one).
fn pushd(words: &[WordInfo], before: &Dirs) -> Result<Dirs, String> {
    let args: Vec<&WordInfo> = words.iter().skip(1).filter(|w| w.literal != "--").collect();
    match args.as_slice() {
        [] => Ok(before.map(|p| match p.stack.split_first() {
            Some((top, rest)) => {
                let mut stack = vec![p.cwd.clone()];
                stack.extend(rest.iter().cloned());
                Ok(Place {
                    cwd: top.clone(),
                    stack,
                })
            }
            None => Err("pushd swaps with a directory the command did not push".to_owned()),
        })),
        [w] if w.literal.starts_with(['+', '-']) && w.literal.len() > 1 => {
            Err(format!("pushd {} rotates the directory stack", w.literal))
        }
        [w] => {
            let dir = literal_dir(w)?;
            Ok(before.map(|p| {
                let mut stack = vec![p.cwd.clone()];
                stack.extend(p.stack.iter().cloned());
                Ok(Place {
                    cwd: join(&p.cwd, &dir),
                    stack,
                })
            }))
        }
        _ => Err("pushd with more than one argument".to_owned()),
    }
}

/// `popd` alone: back to the directory the last `pushd` saved.
fn popd(words: &[WordInfo], before: &Dirs) -> Result<Dirs, String> {
    let args: Vec<&WordInfo> = words.iter().skip(1).filter(|w| w.literal != "--").collect();
    if let Some(w) = args.first() {
        return Err(format!("popd {} is not read", w.literal));
    }
    Ok(before.map(|p| match p.stack.split_first() {
        Some((top, rest)) => Ok(Place {
            cwd: top.clone(),
            stack: rest.to_vec(),
        }),
        None => Err("popd goes beyond what the command pushed".to_owned()),
    }))
}

/// Builtins a function of the same name would replace, so that a later
/// `cd` no longer changes the directory (or changes it elsewhere).
pub(crate) const SHADOWED_BUILTINS: &[&str] = &[
    "cd", "pushd", "popd", "dirs", "builtin", "command", "eval", "source", ".", "exec", "enable", "set", "shopt",
    "export", "declare", "typeset", "local", "readonly", "unset", "read", "printf", "hash",
];

/// Variables whose value changes where `cd` or `~` lead.
pub(crate) const DIR_VARIABLES: &[&str] = &["HOME", "CDPATH", "PWD", "OLDPWD"];

/// Variables whose value changes what a later command runs or how a known
/// program behaves: the program search path, libraries loaded into every
/// program, files a shell runs at start, editors and pagers programs
/// start, git's and other tools' configuration by environment.
const PROGRAM_VARIABLES: &[&str] = &[
    "PATH",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MANPAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "TAR_OPTIONS",
    "RIPGREP_CONFIG_PATH",
    "CURL_HOME",
    "WGETRC",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "GREP_OPTIONS",
];

/// git variables that only say who commits.
const GIT_IDENTITY: &[&str] = &[
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_TERMINAL_PROMPT",
];

/// A variable that changes where `cd` and `~` lead, or what later
/// commands run; the message says which.
pub(crate) fn special_variable(name: &str) -> Option<&'static str> {
    if DIR_VARIABLES.contains(&name) {
        Some("which changes where cd and ~ lead")
    } else if PROGRAM_VARIABLES.contains(&name) || (name.starts_with("GIT_") && !GIT_IDENTITY.contains(&name)) {
        Some("which changes what programs run or how they behave")
    } else {
        None
    }
}

/// Why the command changes how later commands read, if it does: it
/// assigns a [`special_variable`] (as `NAME=…`, `export`, `declare`,
/// `read`, `printf -v`, `unset`…), or sets an option that changes `cd`.
pub(crate) fn changes_dir_rules(program: &str, args: &[String], assigned: &[String]) -> Option<String> {
    let special = |word: &str| {
        let name = word.split(['=', '[']).next().unwrap_or_default().trim_end_matches('+');
        special_variable(name)
    };
    if let Some((v, why)) = assigned.iter().find_map(|v| special(v).map(|why| (v, why))) {
        return Some(format!("assigns {v}, {why}"));
    }
    // `declare -n ref=HOME`: a name that refers to a special variable.
    if matches!(program, "declare" | "typeset" | "local") && args.iter().any(|a| a.starts_with('-') && a.contains('n'))
    {
        if let Some(a) = args
            .iter()
            .find(|a| a.split_once('=').is_some_and(|(_, v)| special(v).is_some()))
        {
            return Some(format!(
                "{program} -n {a} refers to a variable that changes what cd, ~ or programs do"
            ));
        }
    }
    match program {
        "export" | "declare" | "typeset" | "local" | "readonly" | "read" | "printf" | "unset" | "getopts"
        | "mapfile" | "readarray" | "let" | "eval" | "alias" | "hash" => args
            .iter()
            .find_map(|a| special(a).map(|why| format!("{program} {a} changes a variable {why}"))),
        // `enable -n cd` makes `cd` the external program, which changes
        // nothing.
        "enable" => Some("enable changes which builtins later commands run".to_owned()),
        "shopt" if args.iter().any(|a| a == "cdable_vars" || a == "autocd") => {
            Some("shopt changes what cd does".to_owned())
        }
        "set"
            if args
                .iter()
                .any(|a| a == "physical" || (a.starts_with('-') && !a.starts_with("--") && a.contains('P'))) =>
        {
            Some("set -P changes how cd reads `..`".to_owned())
        }
        _ => None,
    }
}

/// Why a word, as written, assigns a [`special_variable`] while it is
/// expanded, if it does: `${CDPATH:=/etc}`, `${HOME=/x}`, `$((PWD=1))`.
pub(crate) fn assigns_in_expansion(word: &str) -> Option<String> {
    let bytes = word.as_bytes();
    let arithmetic = word.contains("((");
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            i += 1;
        }
        if i > start {
            let name = word.get(start..i).unwrap_or_default();
            let before = start.checked_sub(1).and_then(|p| bytes.get(p)).copied();
            let rest = word.get(i..).unwrap_or_default();
            let assigned = (before == Some(b'{') && (rest.starts_with(":=") || rest.starts_with('=')))
                || (arithmetic && rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("=="));
            if assigned {
                if let Some(why) = special_variable(name) {
                    return Some(format!("{word} assigns {name}, {why}"));
                }
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_text() {
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("a", "x"), "a/x");
        assert_eq!(join("a/", "x"), "a/x");
        assert_eq!(join("a", "/etc"), "/etc");
        assert_eq!(join("a", "~/.ssh"), "~/.ssh");
        assert_eq!(join("a", "../b"), "a/../b");
        assert_eq!(join("a", ""), "a");
    }

    #[test]
    fn assignments_inside_expansions() {
        assert!(assigns_in_expansion("${CDPATH:=/etc}").is_some());
        assert!(assigns_in_expansion("x${HOME=/etc}").is_some());
        assert!(assigns_in_expansion("$((PWD = 1))").is_some());
        assert!(assigns_in_expansion("${PATH:-/bin}").is_none());
        assert!(assigns_in_expansion("${X:=1}").is_none());
        assert!(assigns_in_expansion("$((HOME == 1))").is_none());
    }

    #[test]
    fn union_is_bounded() {
        let mut d = Dirs::default();
        for i in 0..MAX_DIRS {
            d = d.union(&Dirs::default().enter(&format!("d{i}")));
        }
        assert!(matches!(d, Dirs::Unknown(_)));
    }
}
