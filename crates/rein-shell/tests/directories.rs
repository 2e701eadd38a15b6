//! `dirs`: the directory each part runs in, after `cd`, `pushd`, `popd` and
//! wrappers that change it; and every case where it cannot be known.

use rein_shell::{analyze, Analysis, Part};

/// The part whose text is `text`.
fn part<'a>(a: &'a Analysis, text: &str) -> &'a Part {
    let found = a.parts.iter().position(|p| p.text == text);
    assert!(found.is_some(), "no part {text:?} in {a:#?}");
    &a.parts[found.unwrap_or_default()]
}

/// The `dirs` of the part `text` in the analysis of `command`, sorted; the
/// part must be understood.
fn dirs_of(command: &str, text: &str) -> Vec<String> {
    let a = analyze(command);
    let p = part(&a, text);
    assert!(p.understood, "{command}: {p:#?}");
    let mut dirs = p.dirs.clone();
    dirs.sort();
    dirs
}

/// The part `text` of `command` is not understood, for a reason that
/// mentions `why`, and has no `dirs`.
fn unknown_dir(command: &str, text: &str, why: &str) {
    let a = analyze(command);
    let p = part(&a, text);
    assert!(!p.understood, "{command}: {p:#?}");
    assert!(p.dirs.is_empty(), "{command}: {p:#?}");
    let reason = p.reason.as_deref().unwrap_or_default();
    assert!(reason.contains(why), "{command}: {reason}");
}

#[test]
fn a_command_line_without_cd_runs_where_it_starts() {
    for p in &analyze("ls; cat x | grep y && (echo $(pwd))").parts {
        assert_eq!(p.dirs, [""], "{p:#?}");
    }
}

#[test]
fn the_issue_examples() {
    assert_eq!(dirs_of("cd /etc && echo x > passwd", "echo x > passwd"), ["/etc"]);
    assert_eq!(dirs_of("cd ~/.ssh && cat id_ed25519", "cat id_ed25519"), ["~/.ssh"]);
}

#[test]
fn success_and_failure_of_cd() {
    assert_eq!(dirs_of("cd x && rm y", "rm y"), ["x"]);
    assert_eq!(dirs_of("cd x; rm y", "rm y"), ["", "x"]);
    assert_eq!(dirs_of("cd x\nrm y", "rm y"), ["", "x"]);
    assert_eq!(dirs_of("cd x || rm y", "rm y"), [""]);
    assert_eq!(dirs_of("cd x || cd z && rm y", "rm y"), ["x", "z"]);
    assert_eq!(dirs_of("cd x && cd z; rm y", "rm y"), ["", "x", "x/z"]);
    assert_eq!(dirs_of("! cd x || rm y", "rm y"), ["x"]);
    // The directory text accumulates, unnormalised.
    assert_eq!(dirs_of("cd sub && cd ../x && rm y", "rm y"), ["sub/../x"]);
    assert_eq!(dirs_of("cd /a && cd b && cd /c && rm y", "rm y"), ["/c"]);
}

#[test]
fn cd_forms() {
    assert_eq!(dirs_of("cd && cat .bashrc", "cat .bashrc"), ["~"]);
    assert_eq!(dirs_of("cd ~ && cat .bashrc", "cat .bashrc"), ["~"]);
    assert_eq!(dirs_of("cd -- /etc && cat passwd", "cat passwd"), ["/etc"]);
    assert_eq!(dirs_of("cd -L /etc && cat passwd", "cat passwd"), ["/etc"]);
    assert_eq!(dirs_of("cd -P /etc && cat passwd", "cat passwd"), ["/etc"]);
    assert_eq!(dirs_of("cd '/e t c' && cat x", "cat x"), ["/e t c"]);
    assert_eq!(dirs_of("builtin cd /etc && cat x", "cat x"), ["/etc"]);
    assert_eq!(dirs_of("command cd /etc && cat x", "cat x"), ["/etc"]);
    assert_eq!(dirs_of("time cd /etc && cat x", "cat x"), ["/etc"]);
    assert_eq!(dirs_of("cd /etc > /dev/null && cat x", "cat x"), ["/etc"]);
}

#[test]
fn pushd_and_popd() {
    let c = "pushd /etc && rm a && popd && rm b";
    assert_eq!(dirs_of(c, "rm a"), ["/etc"]);
    assert_eq!(dirs_of(c, "rm b"), [""]);
    assert_eq!(dirs_of("pushd a && pushd /b && pushd && rm x", "rm x"), ["a"]);
    assert_eq!(dirs_of("pushd a && pushd /b && popd && popd && rm x", "rm x"), [""]);
    unknown_dir("popd; rm x", "rm x", "popd");
    unknown_dir("pushd a && popd && popd; rm x", "rm x", "popd");
    unknown_dir("pushd; rm x", "rm x", "pushd");
    unknown_dir("pushd +1; rm x", "rm x", "rotates");
    unknown_dir("pushd a && popd -1; rm x", "rm x", "popd -1");
    assert_eq!(dirs_of("pushd a && dirs -c && rm x", "rm x"), ["a"]);
    unknown_dir("pushd a && dirs -c && popd; rm x", "rm x", "popd");
}

#[test]
fn directories_that_cannot_be_known() {
    unknown_dir("cd \"$X\"; rm y", "rm y", "not literal");
    unknown_dir("cd $(mktemp -d) && rm y", "rm y", "not literal");
    unknown_dir("cd -; rm y", "rm y", "OLDPWD");
    unknown_dir("cd ~root && rm y", "rm y", "~root");
    unknown_dir("cd ~+ && rm y", "rm y", "~+");
    unknown_dir("cd /et? && rm y", "rm y", "not literal");
    unknown_dir("cd {a,b} && rm y", "rm y", "not literal");
    unknown_dir("cd -Q x && rm y", "rm y", "unknown option");
    unknown_dir("cd -P a/.. && rm y", "rm y", "symlinks");
    // Every later part, however far.
    unknown_dir("cd \"$X\"; ls; (true); echo $(rm y)", "rm y", "cd \"$X\"");
    // `cd "$X" || …` runs where cd failed: the start.
    assert_eq!(dirs_of("cd \"$X\" || rm y", "rm y"), [""]);
}

#[test]
fn variables_and_options_that_change_cd() {
    unknown_dir("HOME=/etc; cd; rm passwd", "rm passwd", "HOME");
    unknown_dir("export HOME=/etc; cat ~/passwd", "cat ~/passwd", "HOME");
    unknown_dir("HOME=/etc cd && rm passwd", "rm passwd", "HOME");
    unknown_dir("CDPATH=/etc; cd ssh; cat x", "cat x", "CDPATH");
    unknown_dir("export CDPATH=/; cd etc; cat passwd", "cat passwd", "CDPATH");
    unknown_dir("read -r HOME <<< /etc; cat ~/passwd", "cat ~/passwd", "HOME");
    unknown_dir("printf -v HOME /etc; cat ~/passwd", "cat ~/passwd", "HOME");
    unknown_dir("for HOME in /etc; do cat ~/passwd; done", "cat ~/passwd", "HOME");
    unknown_dir("declare -x PWD=/etc; cd .; cat passwd", "cat passwd", "PWD");
    unknown_dir("shopt -s cdable_vars; cd x; cat y", "cat y", "shopt");
    unknown_dir("set -P; cd x; cat y", "cat y", "set -P");
    unknown_dir("set -o physical; cd x; cat y", "cat y", "set -P");
    unknown_dir(": ${CDPATH:=/etc}; cd ssh; cat x", "cat x", "CDPATH");
    unknown_dir("echo $((PWD=1)); cd .; cat x", "cat x", "PWD");
    unknown_dir("declare -n r=HOME; r=/etc; cat ~/passwd", "cat ~/passwd", "HOME");
    unknown_dir("cat <<EOF\n${HOME:=/x}\nEOF\ncat ~/y", "cat ~/y", "HOME");
}

#[test]
fn variables_that_change_what_programs_run() {
    unknown_dir("PATH=.:$PATH; ls", "ls", "PATH");
    unknown_dir("export PATH=/tmp/x; git status", "git status", "PATH");
    unknown_dir("export LD_PRELOAD=./x.so; cat f", "cat f", "LD_PRELOAD");
    unknown_dir(
        "export GIT_SSH_COMMAND='sh -c id'; git fetch",
        "git fetch",
        "GIT_SSH_COMMAND",
    );
    let a = analyze("PATH=/tmp ls");
    assert!(!a.understood);
    let a = analyze("GIT_AUTHOR_NAME=x git commit -m y");
    assert!(a.understood, "{a:#?}");
}

#[test]
fn subshells_substitutions_pipes_and_background_jobs_keep_their_cd() {
    assert_eq!(dirs_of("(cd /etc; rm a); rm b", "rm a"), ["", "/etc"]);
    assert_eq!(dirs_of("(cd /etc; rm a); rm b", "rm b"), [""]);
    assert_eq!(dirs_of("echo $(cd /etc && rm a); rm b", "rm a"), ["/etc"]);
    assert_eq!(dirs_of("echo $(cd /etc && rm a); rm b", "rm b"), [""]);
    assert_eq!(dirs_of("echo `cd /etc`; rm b", "rm b"), [""]);
    assert_eq!(dirs_of("cat <(cd /etc && cat passwd); rm b", "rm b"), [""]);
    assert_eq!(dirs_of("cd a & rm b", "rm b"), [""]);
    assert_eq!(dirs_of("cd a | cat; rm b", "rm b"), [""]);
    assert_eq!(dirs_of("bash -c 'cd /etc'; rm b", "rm b"), [""]);
    assert_eq!(dirs_of("bash -c 'cd /etc && rm a'", "rm a"), ["/etc"]);
    assert_eq!(dirs_of("cd /srv && bash -c 'rm a'", "rm a"), ["/srv"]);
    assert_eq!(dirs_of("coproc cd /etc; rm b", "rm b"), [""]);
    // `shopt -s lastpipe` may run the last stage in this shell.
    assert_eq!(dirs_of("echo | cd /etc; rm b", "rm b"), ["", "/etc"]);
}

#[test]
fn groups_conditionals_and_eval_share_the_shell() {
    assert_eq!(dirs_of("{ cd /etc; }; rm b", "rm b"), ["", "/etc"]);
    assert_eq!(dirs_of("{ cd /etc && rm a; }", "rm a"), ["/etc"]);
    let c = "if cd /etc; then rm a; else rm b; fi; rm c";
    assert_eq!(dirs_of(c, "rm a"), ["/etc"]);
    assert_eq!(dirs_of(c, "rm b"), [""]);
    assert_eq!(dirs_of(c, "rm c"), ["", "/etc"]);
    assert_eq!(dirs_of("if true; then cd /etc; fi; rm c", "rm c"), ["", "/etc"]);
    assert_eq!(dirs_of("case x in x) cd /etc;; esac; rm c", "rm c"), ["", "/etc"]);
    assert_eq!(dirs_of("eval 'cd /etc'; rm c", "rm c"), ["", "/etc"]);
    assert_eq!(dirs_of("eval cd /etc && rm c", "rm c"), ["", "/etc"]);
    unknown_dir("eval \"cd $X\"; rm c", "rm c", "eval");
    unknown_dir("source x.sh; rm c", "rm c", "x.sh");
    unknown_dir("$CD /etc; rm c", "rm c", "not literal");
}

#[test]
fn loops_move_later_iterations() {
    // An absolute cd: the second iteration starts in it.
    let c = "for i in 1 2; do rm x; cd /etc; done; rm y";
    assert_eq!(dirs_of(c, "rm x"), ["", "/etc"]);
    assert_eq!(dirs_of(c, "rm y"), ["", "/etc"]);
    // A relative one goes deeper each time: unknown.
    unknown_dir("for i in 1 2; do rm x; cd sub; done", "rm x", "loop");
    unknown_dir("while true; do cd ..; done; rm y", "rm y", "loop");
    unknown_dir("until false; do rm x; cd a; done", "rm x", "loop");
    unknown_dir("for ((i=0; i<3; i++)); do cd a; rm x; done", "rm x", "loop");
    // A cd in a subshell of the body leaves the loop where it was.
    assert_eq!(dirs_of("for i in 1 2; do (cd a; rm x); rm y; done", "rm y"), [""]);
    // Nested loops, and a while condition that moves.
    assert_eq!(
        dirs_of("for i in 1; do for j in 2; do cd /a; done; cd /b; done; rm y", "rm y"),
        ["", "/a", "/b"]
    );
    unknown_dir("while cd sub; do :; done; rm y", "rm y", "loop");
}

#[test]
fn loop_rewalks_are_bounded() {
    let nested = format!("{}cd /x; rm y{}", "for i in 1; do ".repeat(30), "; done".repeat(30));
    let start = std::time::Instant::now();
    let a = analyze(&nested);
    assert!(start.elapsed().as_secs() < 5);
    assert!(a.parts.iter().any(|p| p.program == "rm"));
}

#[test]
fn functions_and_traps() {
    unknown_dir("f() { cd /etc; }; f; rm passwd", "rm passwd", "function f");
    unknown_dir("f() { cd /etc; }; rm passwd", "rm passwd", "function f");
    // The body runs where it is called from.
    unknown_dir("f() { rm passwd; }; cd /etc; f", "rm passwd", "function f");
    assert_eq!(dirs_of("f() { rm x; }; f", "rm x"), [""]);
    assert_eq!(dirs_of("cd /srv; f() { rm x; }; f", "rm x"), ["", "/srv"]);
    assert_eq!(dirs_of("f() { (cd /etc; rm a); }; f; rm b", "rm b"), [""]);
    unknown_dir(
        "function cd { :; }; cd /tmp && rm -rf .git",
        "rm -rf .git",
        "function named cd",
    );
    unknown_dir(
        "popd() { :; }; pushd /tmp && popd && rm x",
        "rm x",
        "function named popd",
    );
    unknown_dir("enable -n cd; cd /tmp && rm -rf .git", "rm -rf .git", "enable");
    unknown_dir("trap 'rm x' EXIT; cd /etc", "rm x", "trap handler");
    unknown_dir("trap 'cd /etc' DEBUG; rm passwd", "rm passwd", "trap handler");
}

#[test]
fn wrappers_that_change_the_directory() {
    assert_eq!(dirs_of("env -C /etc rm passwd", "env -C /etc rm passwd"), ["/etc"]);
    assert_eq!(
        dirs_of("env --chdir=/etc rm passwd", "env --chdir=/etc rm passwd"),
        ["/etc"]
    );
    assert_eq!(dirs_of("sudo -D /etc rm passwd", "sudo -D /etc rm passwd"), ["/etc"]);
    assert_eq!(dirs_of("cd /srv && env -C app rm x", "env -C app rm x"), ["/srv/app"]);
    assert_eq!(dirs_of("env -C /etc bash -c 'rm a'", "rm a"), ["/etc"]);
    // The child process's cd stays in it.
    assert_eq!(dirs_of("env -C /etc bash -c 'cd /x'; rm b", "rm b"), [""]);
    assert_eq!(dirs_of("git -C /etc status", "git -C /etc status"), ["/etc"]);
    assert_eq!(dirs_of("make -C sub test", "make -C sub test"), ["sub"]);
    assert_eq!(dirs_of("unshare -w /etc rm x", "unshare -w /etc rm x"), ["/etc"]);
    unknown_dir("env -C \"$D\" rm x", "env -C \"$D\" rm x", "not literal");
    unknown_dir("sudo -i rm x", "sudo -i rm x", "home directory");
    unknown_dir("chroot /mnt rm -rf /etc", "chroot /mnt rm -rf /etc", "new root");
    unknown_dir("su - root -c 'rm x'", "rm x", "home directory");
    let a = analyze("find / -name x -execdir rm {} \\;");
    let rm = a.parts.iter().find(|p| p.program == "rm").unwrap();
    assert!(!rm.understood && rm.reason.as_deref().unwrap_or_default().contains("each file"));
    assert!(a.parts[0].understood);
}

#[test]
fn alternatives_are_bounded() {
    let many: String = (0..20).map(|i| format!("cd /d{i}; ")).collect();
    unknown_dir(&format!("{many}rm x"), "rm x", "more than");
}
