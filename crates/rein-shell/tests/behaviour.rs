//! What the analysis promises a rule, one promise per test. The corpus
//! snapshot pins the splits; these pin the fields the snapshot leaves out
//! and the limits.

use rein_shell::{analyze, Analysis, Part, MAX_DEPTH, MAX_INPUT_BYTES, MAX_PARTS};

fn programs(a: &Analysis) -> Vec<&str> {
    a.parts.iter().map(|p| p.program.as_str()).collect()
}

fn only(a: &Analysis) -> &Part {
    assert_eq!(a.parts.len(), 1, "{a:#?}");
    &a.parts[0]
}

fn assert_consistent(a: &Analysis) {
    assert_eq!(a.understood, a.parts.iter().all(|p| p.understood));
    let reasons: Vec<String> = a.parts.iter().filter_map(|p| p.reason.clone()).collect();
    assert_eq!(a.problems, reasons);
    for p in &a.parts {
        assert_eq!(p.understood, p.reason.is_none(), "{p:#?}");
    }
}

/// `command` is analysed consistently, not understood, and a problem
/// mentions `why`.
fn assert_refused(command: &str, why: &str) {
    let a = analyze(command);
    assert_consistent(&a);
    assert!(!a.understood, "{command}");
    assert!(
        a.problems.iter().any(|p| p.contains(why)),
        "{command}: {:?}",
        a.problems
    );
}

#[test]
fn text_is_the_source_of_each_part() {
    let a = analyze("npm test && rm -rf ~ ; 2>err.log make all");
    let texts: Vec<&str> = a.parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["npm test", "rm -rf ~", "2>err.log make all"]);
}

#[test]
fn text_survives_non_ascii_input() {
    let a = analyze("echo «é» > \"fé.txt\" && ls 日本");
    let texts: Vec<&str> = a.parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["echo «é» > \"fé.txt\"", "ls 日本"]);
    assert_eq!(a.parts[0].writes, ["fé.txt"]);
}

#[test]
fn path_and_program() {
    let p = analyze("/usr/bin/env FOO=1 ./scripts/x.sh a");
    let p = only(&p);
    assert_eq!((p.program.as_str(), p.path.as_str()), ("x.sh", "./scripts/x.sh"));
    assert_eq!(p.via, ["env"]);
    assert_eq!(p.env, ["FOO"]);
    assert_eq!(p.args, ["a"]);
}

#[test]
fn obfuscated_program_names_are_resolved_or_refused() {
    for c in [r"\rm -rf /", r#"r""m -rf /"#, r"$'\x72\x6d' -rf /", "'rm' -rf /"] {
        let a = analyze(c);
        assert_eq!(only(&a).program, "rm", "{c}");
        assert!(a.understood, "{c}");
    }
    for c in [
        "$CMD -rf /",
        "$(echo rm) -rf /",
        "/bin/r? -rf /",
        "{rm,-rf,/}",
        "`echo rm` x",
    ] {
        let a = analyze(c);
        assert!(!a.understood, "{c}");
        assert_consistent(&a);
    }
}

/// brush-parser reads `( ( … ) )` as arithmetic; bash runs the commands.
#[test]
fn spaced_double_parentheses_are_subshells() {
    for c in [
        "( ( rm -rf ~ ) )",
        "( (rm -rf ~) )",
        "((rm -rf ~) )",
        "( ( ( rm -rf ~ ) ) )",
    ] {
        assert_eq!(programs(&analyze(c)), ["rm"], "{c}");
    }
    assert!(analyze("(( i++ ))").parts.is_empty());
    assert_eq!(programs(&analyze("(( $(rm x) ))")), ["rm"]);
}

#[test]
fn pipes_give_stdin_from_and_upstream() {
    let a = analyze("curl -s https://x | tee f | sudo bash -s");
    let sh = &a.parts[2];
    assert_eq!(sh.program, "bash");
    assert_eq!(sh.stdin_from.as_deref(), Some("tee"));
    assert_eq!(sh.upstream, ["curl", "tee"]);
    assert_eq!(sh.via, ["sudo"]);
    assert_eq!(a.parts[0].stdin_from, None);
}

#[test]
fn substitution_commands_come_before_their_user_and_do_not_feed_pipes() {
    let a = analyze("curl $(cat url) | sh");
    assert_eq!(programs(&a), ["cat", "curl", "sh"]);
    assert_eq!(a.parts[2].stdin_from.as_deref(), Some("curl"));
}

#[test]
fn input_process_substitutions_are_upstream() {
    let a = analyze("bash <(curl -s https://x)");
    assert_eq!(programs(&a), ["curl", "bash"]);
    assert_eq!(a.parts[1].upstream, ["curl"]);
    assert!(a.parts[1].dynamic_args);
}

#[test]
fn redirections_of_a_group_reach_every_part() {
    let a = analyze("{ date; uname -a; } >> /var/log/x 2>/dev/null < in");
    for p in &a.parts {
        assert_eq!(p.writes, ["/var/log/x"]);
        assert_eq!(p.reads, ["in"]);
    }
}

#[test]
fn fd_duplications_and_dev_null_are_not_files() {
    let p = analyze("make 2>&1 >/dev/null 3>&- 1>&2");
    let p = only(&p);
    assert!(p.writes.is_empty() && p.reads.is_empty(), "{p:#?}");
}

#[test]
fn dynamic_redirect_targets_are_flagged() {
    let p = analyze("echo x > \"$HOME/.bashrc\"");
    let p = only(&p);
    assert_eq!(p.writes, ["$HOME/.bashrc"]);
    assert!(p.dynamic_redirects);
    assert!(!p.dynamic_args);
}

#[test]
fn literal_arguments_are_not_dynamic() {
    let p = analyze("git commit -m 'a \"b\" c' --author=\"A <a@b>\"");
    let p = only(&p);
    assert_eq!(p.args, ["commit", "-m", "a \"b\" c", "--author=A <a@b>"]);
    assert!(!p.dynamic_args);
}

#[test]
fn shell_strings_are_analysed_recursively() {
    let a = analyze("sudo -u app bash -lc 'cd /srv && FOO=1 make deploy' > log");
    assert_eq!(programs(&a), ["cd", "make"]);
    let make = &a.parts[1];
    assert_eq!(make.via, ["sudo", "bash -c"]);
    assert_eq!(make.env, ["FOO"]);
    assert_eq!(make.writes, ["log"]);
    assert_eq!(make.text, "FOO=1 make deploy");
}

#[test]
fn heredoc_fed_to_a_shell_is_analysed() {
    let a = analyze("bash <<'EOF'\nrm -rf /\nEOF");
    assert_eq!(only(&a).via, ["bash <<"]);
    assert_eq!(only(&a).program, "rm");
    let a = analyze("bash <<EOF\nrm -rf $DIR\nEOF");
    assert!(!a.understood);
    let a = analyze("cat <<EOF\nrm -rf $DIR\nEOF");
    assert!(a.understood);
}

#[test]
fn xargs_and_find_exec_add_arguments() {
    let a = analyze("find . -name '*.o' -exec rm -f {} + && xargs -a list chmod +x");
    assert_eq!(programs(&a), ["find", "rm", "chmod"]);
    assert!(!a.parts[0].dynamic_args);
    assert!(a.parts[1].dynamic_args);
    assert_eq!(a.parts[1].via, ["find -exec"]);
    assert!(a.parts[2].dynamic_args);
    assert_eq!(a.parts[2].reads, ["list"]);
}

#[test]
fn input_substituted_into_a_shell_string_is_not_understood() {
    assert!(!analyze("xargs -I % sh -c 'rm %'").understood);
    assert!(!analyze("find . -exec bash -c 'cat {}' \\;").understood);
    assert!(analyze("find . -exec bash -c 'cat \"$1\"' _ {} \\;").understood);
}

#[test]
fn functions_bodies_are_parts_and_calls_stay() {
    let a = analyze("cleanup() { rm -rf /tmp/w; }; trap cleanup EXIT; cleanup");
    assert_eq!(programs(&a), ["rm", "trap", "cleanup", "cleanup"]);
    assert_eq!(a.parts[0].via, ["function cleanup"]);
    assert_eq!(a.parts[2].via, ["trap"]);
}

#[test]
fn not_understood_cases_have_reasons() {
    for c in [
        "eval \"$X\"",
        "source ./env.sh",
        ". env.sh",
        "bash -c \"$SCRIPT\"",
        "sudo --bogus rm",
        "alias ll='ls -l'",
        "echo 'unterminated",
        "env -S 'a b'",
        "sudo -e /etc/hosts",
        "trap \"$X\" EXIT",
    ] {
        let a = analyze(c);
        assert!(!a.understood, "{c}: {a:#?}");
        assert!(!a.problems.is_empty(), "{c}");
        assert_consistent(&a);
    }
}

#[test]
fn empty_and_comment_only_commands_run_nothing() {
    for c in ["", "  ", "# only a comment", "\n\n"] {
        let a = analyze(c);
        assert!(a.parts.is_empty() && a.understood, "{c:?}");
    }
}

#[test]
fn serialises_for_a_contract() {
    let a = analyze("curl x | grep -e y f");
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["parts"][1]["stdin_from"], "curl");
    assert!(json["parts"][0].get("stdin_from").is_none());
    assert!(json["parts"][0].get("reason").is_none());
    assert_eq!(json["parts"][1]["operands"], serde_json::json!(["f"]));
    assert_eq!(json["parts"][1]["known"], true);
    assert_eq!(json["parts"][1]["dirs"], serde_json::json!([""]));
    assert_eq!(json["understood"], true);
}

// --- limits

#[test]
fn too_long_input_is_not_understood() {
    let long = "a".repeat(MAX_INPUT_BYTES + 1);
    let a = analyze(&long);
    assert!(!a.understood);
    assert_eq!(a.parts.len(), 1);
    assert!(a.parts[0].text.len() < 2048);
    let fits = format!("echo {}", "a".repeat(MAX_INPUT_BYTES - 5));
    assert!(analyze(&fits).understood);
}

#[test]
fn nesting_deeper_than_the_limit_is_not_understood() {
    let ok = format!("{}true{}", "{ ".repeat(MAX_DEPTH - 1), "; }".repeat(MAX_DEPTH - 1));
    assert!(analyze(&ok).understood, "{ok}");
    for (open, close) in [
        ("{ ", "; }"),
        ("( a; ", " )"),
        ("if true; then ", "; fi"),
        ("echo $(", ")"),
    ] {
        let n = MAX_DEPTH + 1;
        let deep = format!("{}true{}", open.repeat(n), close.repeat(n));
        let a = analyze(&deep);
        assert!(!a.understood, "{deep}");
        assert_consistent(&a);
    }
}

#[test]
fn wrapper_chains_are_bounded() {
    let a = analyze(&format!("{}id", "sudo ".repeat(MAX_DEPTH + 5)));
    assert!(!a.understood);
    let a = analyze(&format!("{}id", "eval ".repeat(MAX_DEPTH + 5)));
    assert!(!a.understood);
    let a = analyze(&format!("{}id", "nice ".repeat(10)));
    assert!(a.understood);
}

/// Inputs that make brush-parser recurse thousands of levels deep run on a
/// thread with a stack sized for them: none of these may overflow, in a
/// debug build, on the test harness's 2 MiB thread.
#[test]
fn pathological_nesting_does_not_overflow_the_stack() {
    let n = 2000;
    let inputs = [
        format!("{}true{}", "{ ".repeat(n), "; }".repeat(n)),
        format!("{}true{}", "if true; then ".repeat(n), "; fi".repeat(n)),
        format!("echo {}x{}", "$(".repeat(n), ")".repeat(n)),
        format!("echo {}x{}", "\"$(echo ".repeat(n), ")\"".repeat(n)),
        format!("echo {}x{}", "${x:-".repeat(n), "}".repeat(n)),
        format!("[[ {}a{} ]]", "( ".repeat(n), " )".repeat(n)),
        format!("{}true", "coproc ".repeat(n)),
        format!("[[ {}a ]]", "a && ".repeat(10_000)),
        format!("bash -c $'{}true{}'", "\\x28".repeat(n), "\\x29".repeat(n)),
        format!("echo {}x", "`".repeat(4000)),
        format!("{}true{}", "(".repeat(30_000), ")".repeat(30_000)),
    ];
    for input in &inputs {
        let a = analyze(input);
        assert_consistent(&a);
    }
}

/// A panic inside brush-parser that no pre-check foresees (this one, an
/// `unwrap` in its tokenizer, was found by fuzzing) is text not understood,
/// not a crash.
#[test]
fn a_panic_in_the_parser_is_a_part_not_understood() {
    assert_refused(
        "echo $<<-{HOME:-$(\x0c $(( $(date s) - 10 )) `hohostnacme`",
        "cannot parse",
    );
}

/// Inputs on which brush-parser's grammar backtracked exponentially (one
/// found by fuzzing took minutes with 40 parentheses) now take
/// milliseconds; the bound here is loose for slow machines.
#[test]
fn backtracking_inputs_are_fast() {
    let inputs = [
        "( ( (((((((((((( @ + [e)h)( @-rf ~(( @ + [e)h)((((((((((((( @-rf ".to_owned(),
        format!("{}x y", "(".repeat(60)),
        format!("{}x y", "((((((( { ".repeat(8)),
        format!("{} a; {}", "(".repeat(60), ")".repeat(60)),
        format!("{} a; {}", "( ".repeat(60), ") ".repeat(60)),
        format!("echo $({}x y", "(".repeat(60)),
        format!("for (({}i=0;;{})); do :; done", "(".repeat(40), ")".repeat(40)),
        format!("[[ {}a ]]", "( ".repeat(60)),
        // A word brush-parser tries as an array-element assignment: took
        // 27 s at 175 bytes, and doubled with each repetition of the tail.
        format!(
            "(f[i[i[n[{}{}",
            "f[".repeat(50),
            "${f[2(f[i[f[${\\&B[f[[2\x02{} ${}\u{154} }".repeat(4)
        ),
        "echo f[${f[${f[}}${f[${x[f[}${}}".to_owned(),
    ];
    for input in &inputs {
        let start = std::time::Instant::now();
        let a = analyze(input);
        assert_consistent(&a);
        assert!(start.elapsed().as_secs() < 5, "{input}: {:?}", start.elapsed());
    }
}

/// Words that start like an array element (`name[`) and nest many
/// brackets are not given to brush-parser (see `parse.rs`); real element
/// assignments are read as before.
#[test]
fn intricate_array_element_words_are_refused() {
    assert_refused("x=1 f[${f[${f[}}${f[${x[f[}${}}", "starts like an array element");
    for ok in ["arr[${i}]=x echo ok", "a[$((i+1))]=${b[0]} cmd", "m[k]=v declare -A n"] {
        let a = analyze(ok);
        assert!(a.understood, "{ok}: {:?}", a.problems);
    }
}

#[test]
fn output_is_bounded_for_long_pipelines() {
    // Each part's `upstream` lists every earlier stage: 255 stages with
    // long names would be 8 MiB of parts.
    let long: Vec<String> = (0..255).map(|i| format!("p{i:0>248}")).collect();
    let line = long.join("|");
    assert!(line.len() <= MAX_INPUT_BYTES);
    let a = analyze(&line);
    assert!(!a.understood);
    assert!(a.problems.iter().any(|p| p.contains("too large")), "{:?}", a.problems);
    let pipeline: Vec<String> = (0..8000).map(|i| format!("p{i}")).collect();
    let a = analyze(&pipeline.join("|"));
    assert!(!a.understood);
    assert!(a.parts.len() <= MAX_PARTS);
    // A long but ordinary pipeline is fine.
    let a = analyze(&pipeline[..50].join(" | "));
    assert!(a.understood);
    assert_eq!(a.parts.len(), 50);
    assert_eq!(a.parts[49].upstream.len(), 49);
}

#[test]
fn analysis_is_usable_from_many_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || analyze(&format!("echo {i} && {}true{}", "(".repeat(40), ")".repeat(40)))))
        .collect();
    for h in handles {
        assert!(h.join().unwrap().understood);
    }
}

/// Where brush-parser and bash disagreed (`( ( … ) )`), bash itself is the
/// reference: every way of writing one to four parentheses around a
/// command, alone and in a `$(…)`, is run by bash (only `printf` and `echo`
/// run) and compared with the analysis.
#[test]
fn bash_agrees_on_parentheses() {
    if std::process::Command::new("bash")
        .arg("-c")
        .arg("true")
        .status()
        .is_err()
    {
        eprintln!("bash not found; skipped");
        return;
    }
    let opens = ["(", "((", "( (", "(((", "( ( (", "(( (", "( ((", "(((("];
    let closes = [")", "))", ") )", ")))", ") ) )", ")) )", ") ))", "))))"];
    let bodies = ["printf hi", "printf hi;", " printf hi ", "printf hi) | (printf hi"];
    for outer in ["", "echo $", "echo \"$"] {
        for open in opens {
            for close in closes {
                for body in bodies {
                    let quote = if outer.ends_with('"') { "\"" } else { "" };
                    let line = format!("{outer}{open}{body}{close}{quote}");
                    let out = std::process::Command::new("bash")
                        .arg("-c")
                        .arg(&line)
                        .output()
                        .unwrap();
                    let ran = String::from_utf8_lossy(&out.stdout).contains("hi");
                    let a = analyze(&line);
                    let listed = a.parts.iter().any(|p| p.program == "printf");
                    assert!(
                        !ran || listed,
                        "bash ran printf in {line:?} but the analysis does not list it: {a:#?}"
                    );
                    if listed && !ran {
                        // Listing more than runs is safe, but should only
                        // happen for lines bash refuses.
                        assert!(
                            !out.status.success(),
                            "{line:?}: listed but bash ran nothing and succeeded"
                        );
                    }
                }
            }
        }
    }
}

/// brush-parser's word grammar does not know here-documents: inside
/// `"$(cat <<'EOF' … EOF)"` (how coding agents write commit messages) a
/// parenthesis or quote of the document made it stop early or give up, and
/// a command after the document went unseen. Bash is the reference again.
#[test]
fn bash_agrees_on_heredocs_inside_substitutions() {
    if std::process::Command::new("bash")
        .arg("-c")
        .arg("true")
        .status()
        .is_err()
    {
        eprintln!("bash not found; skipped");
        return;
    }
    let lines_of_document = [
        "(",
        ")",
        "'",
        "\"",
        "a) b",
        "((",
        "))",
        "don't (x",
        "1) one\n2) two",
        "`",
        "$(",
    ];
    for doc in lines_of_document {
        for delimiter in ["'EOF'", "EOF", "\"EOF\""] {
            for (open, close) in [("\"$(", ")\""), ("$(", ")")] {
                let line = format!("echo {open}cat <<{delimiter}\n{doc}\nEOF\nprintf HI\n{close}");
                let out = std::process::Command::new("bash")
                    .arg("-c")
                    .arg(&line)
                    .output()
                    .unwrap();
                let ran = String::from_utf8_lossy(&out.stdout).contains("HI");
                let a = analyze(&line);
                let listed = a.parts.iter().any(|p| p.program == "printf");
                assert!(
                    !ran || listed || !a.understood,
                    "bash ran printf in {line:?} but the analysis neither lists it nor says it is not understood: {a:#?}"
                );
                // The form coding agents use is understood. (Unquoted, a
                // document line `)` ends the substitution for brush-parser's
                // tokenizer: not understood, a known limit.)
                if delimiter == "'EOF'" && open == "\"$(" && doc != "`" && doc != "$(" {
                    assert!(ran && listed && a.understood, "{line:?}: {a:#?}");
                }
            }
        }
    }
}
