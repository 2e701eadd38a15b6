//! Programs whose argument grammar the analysis knows: which arguments
//! name files (`operands`), which option values are files, and which uses
//! run other code. Every other program is reported as not known, and its
//! operands are guessed generously.
//!
//! A known program given an option its table does not list is reported as
//! not known (the option may take a value, write a file or run a program).
//! Options that run other code (`sed e`, `awk 'system(…)'`, `git -c
//! core.sshCommand=…`, `tar --to-command`, `sort --compress-program`, `rsync
//! -e`) make the part not understood.

use crate::words::WordInfo;

/// What the grammar of a program says about one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    /// The program is in the table and every option was read.
    pub(crate) known: bool,
    /// Arguments that name files, as written.
    pub(crate) operands: Vec<String>,
    /// Files the program writes by an option (`sort -o F`, `sed 'w F'`).
    pub(crate) writes: Vec<String>,
    /// Files it reads by an option or command (`sed 'r F'`).
    pub(crate) reads: Vec<String>,
    /// It runs code the analysis does not see: why.
    pub(crate) runs: Option<String>,
    /// It runs in this directory (`git -C dir`, `make -C dir`); an error
    /// when the directory is not literal.
    pub(crate) chdir: Option<Result<String, String>>,
}

/// The operands of a program whose grammar is not known: every argument
/// that does not start with `-`, the value of a `--opt=value` or of an
/// attached short option that looks like a path, everything after `--`.
pub(crate) fn generic_operands(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut options_end = false;
    for a in args {
        if options_end || !a.starts_with('-') {
            out.push(a.clone());
        } else if a == "--" {
            options_end = true;
        } else if let Some((_, value)) = a.strip_prefix("--").and_then(|l| l.split_once('=')) {
            if looks_like_path(value) {
                out.push(value.to_owned());
            }
        } else if !a.starts_with("--") && a.len() > 2 {
            // `-o/etc/x`, `-I../include`: a value attached to a letter.
            let value: String = a.chars().skip(2).collect();
            if looks_like_path(&value) {
                out.push(value);
            }
        }
    }
    out
}

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.starts_with('~') || s.starts_with('.')
}

/// The grammar of one program.
struct Grammar {
    /// Short options that take a value (`-n 5`, `-n5`).
    short_value: &'static str,
    /// Short options without a value.
    short_flag: &'static str,
    /// Short options whose value, if any, is attached (`sed -i.bak`).
    short_optional: &'static str,
    /// Long options that take a value (`--lines 5`, `--lines=5`).
    long_value: &'static [&'static str],
    /// Long options without a value, or with an attached one (`--color=auto`).
    long_flag: &'static [&'static str],
    /// Options (a letter, or a long name) whose value names a file read.
    file_values: &'static [&'static str],
    /// Options whose value names a file written.
    write_values: &'static [&'static str],
    /// Options that run a program or code given on the line.
    runs: &'static [&'static str],
    /// Options after which the analysis cannot tell what happens (`sed -f
    /// script`, `date -s`): the program is not known then.
    unknowable: &'static [&'static str],
    /// Non-option words before the files that are not files (`grep PATTERN`,
    /// `chmod MODE`).
    leading: usize,
    /// Options that give the leading word instead (`grep -e`, `sed -e`).
    leading_given_by: &'static [&'static str],
    /// `-5` is an option (`head -5`).
    numeric: bool,
    /// No argument names a file (`echo`, `tr`).
    no_files: bool,
    /// Without operands, the program works on `.` (`ls`, `du`, `grep -r`).
    default_dot: bool,
    /// Options end at the first operand (POSIX), instead of GNU's
    /// permutation.
    posix_order: bool,
}

const BASE: Grammar = Grammar {
    short_value: "",
    short_flag: "",
    short_optional: "",
    long_value: &[],
    long_flag: &["help", "version"],
    file_values: &[],
    write_values: &[],
    runs: &[],
    unknowable: &[],
    leading: 0,
    leading_given_by: &[],
    numeric: false,
    no_files: false,
    default_dot: false,
    posix_order: false,
};

const LS: Grammar = Grammar {
    short_value: "ITw",
    short_flag: "aAbBcCdDfFgGhHiklLmnNopqQrRsStuUvxXZ1",
    long_value: &[
        "block-size",
        "format",
        "hide",
        "ignore",
        "indicator-style",
        "quoting-style",
        "sort",
        "tabsize",
        "time",
        "time-style",
        "width",
    ],
    long_flag: &[
        "all",
        "almost-all",
        "author",
        "escape",
        "ignore-backups",
        "directory",
        "dired",
        "classify",
        "file-type",
        "full-time",
        "group-directories-first",
        "no-group",
        "human-readable",
        "si",
        "dereference-command-line",
        "dereference-command-line-symlink-to-dir",
        "inode",
        "kibibytes",
        "dereference",
        "numeric-uid-gid",
        "literal",
        "hide-control-chars",
        "show-control-chars",
        "quote-name",
        "recursive",
        "reverse",
        "size",
        "context",
        "zero",
        "color",
        "hyperlink",
        "help",
        "version",
    ],
    default_dot: true,
    ..BASE
};

const CAT: Grammar = Grammar {
    short_flag: "AbeEnstTuv",
    long_flag: &[
        "show-all",
        "number-nonblank",
        "show-ends",
        "number",
        "squeeze-blank",
        "show-tabs",
        "show-nonprinting",
        "help",
        "version",
    ],
    ..BASE
};

const HEAD_TAIL: Grammar = Grammar {
    short_value: "ncs",
    short_flag: "qvzfF",
    long_value: &["lines", "bytes", "sleep-interval", "pid", "max-unchanged-stats"],
    long_flag: &[
        "quiet",
        "silent",
        "verbose",
        "zero-terminated",
        "follow",
        "retry",
        "help",
        "version",
    ],
    numeric: true,
    ..BASE
};

const WC: Grammar = Grammar {
    short_flag: "clmwL",
    long_value: &["files0-from"],
    long_flag: &[
        "bytes",
        "chars",
        "lines",
        "words",
        "max-line-length",
        "total",
        "help",
        "version",
    ],
    file_values: &["files0-from"],
    ..BASE
};

const GREP: Grammar = Grammar {
    short_value: "efmABCDd",
    short_flag: "EFGPiyvwxcLloqsbHhnTZzraIRUuV",
    long_value: &[
        "regexp",
        "file",
        "max-count",
        "after-context",
        "before-context",
        "context",
        "devices",
        "directories",
        "label",
        "binary-files",
        "include",
        "exclude",
        "exclude-from",
        "exclude-dir",
        "group-separator",
    ],
    long_flag: &[
        "extended-regexp",
        "fixed-strings",
        "basic-regexp",
        "perl-regexp",
        "ignore-case",
        "no-ignore-case",
        "invert-match",
        "word-regexp",
        "line-regexp",
        "count",
        "color",
        "colour",
        "files-without-match",
        "files-with-matches",
        "only-matching",
        "quiet",
        "silent",
        "no-messages",
        "byte-offset",
        "with-filename",
        "no-filename",
        "line-number",
        "initial-tab",
        "null",
        "null-data",
        "text",
        "recursive",
        "dereference-recursive",
        "line-buffered",
        "binary",
        "no-group-separator",
        "help",
        "version",
    ],
    file_values: &["f", "file", "exclude-from"],
    leading: 1,
    leading_given_by: &["e", "f", "regexp", "file"],
    numeric: true,
    ..BASE
};

const RG: Grammar = Grammar {
    short_value: "efgmABCtTjMdEr",
    short_flag: "abcFHhiIlLnNoOpPqsSuUvVwxz0.",
    long_value: &[
        "regexp",
        "file",
        "glob",
        "iglob",
        "max-count",
        "after-context",
        "before-context",
        "context",
        "type",
        "type-not",
        "threads",
        "max-columns",
        "max-depth",
        "encoding",
        "replace",
        "sort",
        "sortr",
        "colors",
        "type-add",
        "type-clear",
        "max-filesize",
        "path-separator",
        "context-separator",
        "field-match-separator",
        "field-context-separator",
        "ignore-file",
        "engine",
        "hyperlink-format",
        "dfa-size-limit",
        "regex-size-limit",
    ],
    long_flag: &[
        "files",
        "files-with-matches",
        "files-without-match",
        "count",
        "count-matches",
        "fixed-strings",
        "ignore-case",
        "case-sensitive",
        "smart-case",
        "hidden",
        "no-hidden",
        "no-ignore",
        "no-ignore-vcs",
        "no-ignore-dot",
        "no-ignore-parent",
        "no-ignore-global",
        "no-ignore-exclude",
        "no-ignore-files",
        "follow",
        "line-number",
        "no-line-number",
        "only-matching",
        "invert-match",
        "word-regexp",
        "line-regexp",
        "json",
        "vimgrep",
        "heading",
        "no-heading",
        "with-filename",
        "no-filename",
        "null",
        "null-data",
        "multiline",
        "multiline-dotall",
        "pcre2",
        "text",
        "binary",
        "unrestricted",
        "quiet",
        "stats",
        "trim",
        "type-list",
        "column",
        "byte-offset",
        "passthru",
        "no-messages",
        "one-file-system",
        "max-columns-preview",
        "no-config",
        "crlf",
        "glob-case-insensitive",
        "color",
        "debug",
        "help",
        "version",
    ],
    file_values: &["f", "file", "ignore-file"],
    // `--pre` runs a program on every file searched.
    runs: &["pre"],
    leading: 1,
    leading_given_by: &["e", "f", "regexp", "file", "files", "type-list"],
    default_dot: true,
    ..BASE
};

const STAT: Grammar = Grammar {
    short_value: "c",
    short_flag: "Lft",
    long_value: &["format", "printf", "cached"],
    long_flag: &["dereference", "file-system", "terse", "help", "version"],
    ..BASE
};

const FILE: Grammar = Grammar {
    short_value: "efFmP",
    short_flag: "bcEhiklLNnprsSvzZ0",
    long_value: &["exclude", "files-from", "separator", "magic-file", "parameter"],
    long_flag: &[
        "brief",
        "checking-printout",
        "no-dereference",
        "dereference",
        "mime",
        "mime-type",
        "mime-encoding",
        "keep-going",
        "list",
        "no-pad",
        "no-buffer",
        "preserve-date",
        "raw",
        "special-files",
        "uncompress",
        "uncompress-noreport",
        "print0",
        "extension",
        "apple",
        "help",
        "version",
    ],
    file_values: &["f", "m", "files-from", "magic-file"],
    ..BASE
};

const DIFF: Grammar = Grammar {
    short_value: "CUIxXSFWDL",
    short_flag: "abBcdeEfilnNpPqrsStTuvwWyZ",
    long_value: &[
        "width",
        "show-function-line",
        "label",
        "tabsize",
        "ignore-matching-lines",
        "exclude",
        "exclude-from",
        "starting-file",
        "from-file",
        "to-file",
        "horizon-lines",
        "line-format",
        "old-line-format",
        "new-line-format",
        "unchanged-line-format",
        "palette",
        "ifdef",
        "old-group-format",
        "new-group-format",
        "changed-group-format",
        "unchanged-group-format",
    ],
    long_flag: &[
        "normal",
        "brief",
        "report-identical-files",
        "context",
        "unified",
        "ed",
        "rcs",
        "side-by-side",
        "left-column",
        "suppress-common-lines",
        "show-c-function",
        "expand-tabs",
        "initial-tab",
        "suppress-blank-empty",
        "new-file",
        "unidirectional-new-file",
        "ignore-case",
        "ignore-tab-expansion",
        "ignore-trailing-space",
        "ignore-space-change",
        "ignore-all-space",
        "ignore-blank-lines",
        "ignore-file-name-case",
        "no-ignore-file-name-case",
        "text",
        "strip-trailing-cr",
        "recursive",
        "no-dereference",
        "color",
        "minimal",
        "speed-large-files",
        "help",
        "version",
    ],
    file_values: &["X", "exclude-from", "from-file", "to-file"],
    ..BASE
};

const SORT: Grammar = Grammar {
    short_value: "ktSTo",
    short_flag: "bdfgiMhnRrVcCsmuz",
    long_value: &[
        "key",
        "field-separator",
        "buffer-size",
        "temporary-directory",
        "output",
        "files0-from",
        "parallel",
        "batch-size",
        "random-source",
        "sort",
    ],
    long_flag: &[
        "ignore-leading-blanks",
        "dictionary-order",
        "ignore-case",
        "general-numeric-sort",
        "ignore-nonprinting",
        "month-sort",
        "human-numeric-sort",
        "numeric-sort",
        "random-sort",
        "reverse",
        "version-sort",
        "check",
        "merge",
        "stable",
        "unique",
        "zero-terminated",
        "debug",
        "help",
        "version",
    ],
    file_values: &["files0-from", "random-source"],
    write_values: &["o", "output"],
    runs: &["compress-program"],
    ..BASE
};

const UNIQ: Grammar = Grammar {
    short_value: "fsw",
    short_flag: "cdDiuz",
    long_value: &["skip-fields", "skip-chars", "check-chars"],
    long_flag: &[
        "count",
        "repeated",
        "all-repeated",
        "group",
        "ignore-case",
        "unique",
        "zero-terminated",
        "help",
        "version",
    ],
    ..BASE
};

const CUT: Grammar = Grammar {
    short_value: "bcdf",
    short_flag: "nsz",
    long_value: &["bytes", "characters", "delimiter", "fields", "output-delimiter"],
    long_flag: &["complement", "only-delimited", "zero-terminated", "help", "version"],
    ..BASE
};

const TEXT_ONLY: Grammar = Grammar {
    no_files: true,
    posix_order: true,
    ..BASE
};

const ECHO: Grammar = Grammar {
    short_flag: "neE",
    ..TEXT_ONLY
};

const PRINTF: Grammar = Grammar {
    short_value: "v",
    ..TEXT_ONLY
};

const UNAME: Grammar = Grammar {
    short_flag: "asnrvmpio",
    long_flag: &[
        "all",
        "kernel-name",
        "nodename",
        "kernel-release",
        "kernel-version",
        "machine",
        "processor",
        "hardware-platform",
        "operating-system",
        "help",
        "version",
    ],
    ..TEXT_ONLY
};

const SEQ: Grammar = Grammar {
    short_value: "fs",
    short_flag: "w",
    long_value: &["format", "separator"],
    long_flag: &["equal-width", "help", "version"],
    numeric: true,
    ..TEXT_ONLY
};

const BASENAME: Grammar = Grammar {
    short_value: "s",
    short_flag: "az",
    long_value: &["suffix"],
    long_flag: &["multiple", "zero", "help", "version"],
    ..TEXT_ONLY
};

const TR: Grammar = Grammar {
    short_flag: "cCdst",
    long_flag: &[
        "complement",
        "delete",
        "squeeze-repeats",
        "truncate-set1",
        "help",
        "version",
    ],
    no_files: true,
    ..BASE
};

const PWD: Grammar = Grammar {
    short_flag: "LP",
    no_files: true,
    ..BASE
};

const WHICH: Grammar = Grammar {
    short_flag: "as",
    no_files: true,
    ..BASE
};

const DATE: Grammar = Grammar {
    short_value: "dfr",
    short_flag: "uR",
    short_optional: "I",
    long_value: &["date", "file", "reference", "rfc-3339", "resolution"],
    long_flag: &[
        "iso-8601",
        "rfc-email",
        "rfc-822",
        "rfc-2822",
        "universal",
        "utc",
        "debug",
        "help",
        "version",
    ],
    file_values: &["f", "r", "file", "reference"],
    // Sets the system clock.
    unknowable: &["s", "set"],
    no_files: true,
    ..BASE
};

const DU: Grammar = Grammar {
    short_value: "BdtX",
    short_flag: "0abcDhHklLmsSxP",
    long_value: &[
        "max-depth",
        "threshold",
        "time-style",
        "exclude",
        "exclude-from",
        "files0-from",
        "block-size",
    ],
    long_flag: &[
        "apparent-size",
        "all",
        "bytes",
        "total",
        "dereference-args",
        "human-readable",
        "inodes",
        "count-links",
        "dereference",
        "no-dereference",
        "null",
        "separate-dirs",
        "si",
        "summarize",
        "one-file-system",
        "time",
        "help",
        "version",
    ],
    file_values: &["X", "exclude-from", "files0-from"],
    default_dot: true,
    ..BASE
};

const DF: Grammar = Grammar {
    short_value: "Btx",
    short_flag: "ahHiklPTv",
    long_value: &["block-size", "type", "exclude-type"],
    long_flag: &[
        "all",
        "human-readable",
        "si",
        "inodes",
        "local",
        "output",
        "portability",
        "print-type",
        "total",
        "sync",
        "no-sync",
        "help",
        "version",
    ],
    ..BASE
};

const TREE: Grammar = Grammar {
    short_value: "LPIoHT",
    short_flag: "adlfxpsugDFqNQrtvUcCAShinJX",
    long_value: &[
        "charset",
        "filelimit",
        "timefmt",
        "sort",
        "gitfile",
        "infile",
        "hintro",
        "houtro",
    ],
    long_flag: &[
        "noreport",
        "inodes",
        "device",
        "dirsfirst",
        "filesfirst",
        "du",
        "prune",
        "matchdirs",
        "ignore-case",
        "nolinks",
        "gitignore",
        "info",
        "metafirst",
        "fromfile",
        "fromtabfile",
        "fflinks",
        "help",
        "version",
    ],
    file_values: &["gitfile", "infile"],
    write_values: &["o"],
    default_dot: true,
    ..BASE
};

const RM: Grammar = Grammar {
    short_flag: "fiIrRdv",
    long_flag: &[
        "force",
        "interactive",
        "one-file-system",
        "no-preserve-root",
        "preserve-root",
        "recursive",
        "dir",
        "verbose",
        "help",
        "version",
    ],
    ..BASE
};

const RMDIR: Grammar = Grammar {
    short_flag: "pv",
    long_flag: &["ignore-fail-on-non-empty", "parents", "verbose", "help", "version"],
    ..BASE
};

const CP_MV_LN: Grammar = Grammar {
    short_value: "tS",
    short_flag: "aAbdfFHiLlnPpRrsTuvxZ",
    long_value: &["target-directory", "suffix", "sparse", "reflink", "no-preserve"],
    long_flag: &[
        "archive",
        "attributes-only",
        "backup",
        "copy-contents",
        "force",
        "interactive",
        "link",
        "dereference",
        "no-clobber",
        "no-dereference",
        "preserve",
        "parents",
        "recursive",
        "remove-destination",
        "strip-trailing-slashes",
        "symbolic-link",
        "symbolic",
        "no-target-directory",
        "update",
        "verbose",
        "one-file-system",
        "context",
        "debug",
        "keep-directory-symlink",
        "exchange",
        "no-copy",
        "directory",
        "logical",
        "physical",
        "relative",
        "help",
        "version",
    ],
    file_values: &["t", "target-directory"],
    ..BASE
};

const MKDIR: Grammar = Grammar {
    short_value: "m",
    short_flag: "pvZ",
    long_value: &["mode"],
    long_flag: &["parents", "verbose", "context", "help", "version"],
    ..BASE
};

const TOUCH: Grammar = Grammar {
    short_value: "drt",
    short_flag: "acfhm",
    long_value: &["date", "reference", "time"],
    long_flag: &["no-create", "no-dereference", "help", "version"],
    file_values: &["r", "reference"],
    ..BASE
};

const TEE: Grammar = Grammar {
    short_flag: "aip",
    long_flag: &["append", "ignore-interrupts", "output-error", "help", "version"],
    ..BASE
};

const CHMOD: Grammar = Grammar {
    short_flag: "cfvR",
    long_value: &["reference"],
    long_flag: &[
        "changes",
        "silent",
        "quiet",
        "verbose",
        "no-preserve-root",
        "preserve-root",
        "recursive",
        "help",
        "version",
    ],
    file_values: &["reference"],
    leading: 1,
    leading_given_by: &["reference"],
    ..BASE
};

const CHOWN: Grammar = Grammar {
    short_flag: "cfvRhHLP",
    long_value: &["reference", "from"],
    long_flag: &[
        "changes",
        "silent",
        "quiet",
        "verbose",
        "dereference",
        "no-dereference",
        "no-preserve-root",
        "preserve-root",
        "recursive",
        "help",
        "version",
    ],
    file_values: &["reference"],
    leading: 1,
    leading_given_by: &["reference"],
    ..BASE
};

const TRUNCATE: Grammar = Grammar {
    short_value: "rs",
    short_flag: "co",
    long_value: &["reference", "size"],
    long_flag: &["no-create", "io-blocks", "help", "version"],
    file_values: &["r", "reference"],
    ..BASE
};

const INSTALL: Grammar = Grammar {
    short_value: "gmotST",
    short_flag: "bcCdDpsvZ",
    long_value: &["group", "mode", "owner", "target-directory", "suffix"],
    long_flag: &[
        "backup",
        "compare",
        "directory",
        "preserve-timestamps",
        "strip",
        "no-target-directory",
        "verbose",
        "preserve-context",
        "context",
        "debug",
        "help",
        "version",
    ],
    file_values: &["t", "target-directory"],
    runs: &["strip-program"],
    ..BASE
};

const SED: Grammar = Grammar {
    short_value: "efl",
    short_flag: "nErsuz",
    short_optional: "i",
    long_value: &["expression", "file", "line-length"],
    long_flag: &[
        "quiet",
        "silent",
        "regexp-extended",
        "separate",
        "unbuffered",
        "null-data",
        "in-place",
        "posix",
        "debug",
        "sandbox",
        "follow-symlinks",
        "help",
        "version",
    ],
    // A script file may hold `e` and `w` commands the analysis cannot read.
    unknowable: &["f", "file"],
    leading: 1,
    leading_given_by: &["e", "f", "expression", "file"],
    ..BASE
};

const AWK: Grammar = Grammar {
    short_value: "fvFiEe",
    short_flag: "bcCdDghkMNOPpr",
    long_value: &["file", "assign", "field-separator", "include", "exec", "source"],
    long_flag: &[
        "characters-as-bytes",
        "traditional",
        "copyright",
        "dump-variables",
        "debug",
        "gen-pot",
        "csv",
        "bignum",
        "use-lc-numeric",
        "non-decimal-data",
        "optimize",
        "no-optimize",
        "posix",
        "re-interval",
        "sandbox",
        "lint",
        "profile",
        "pretty-print",
        "help",
        "version",
    ],
    // Programs from a file, and extensions (`-l`), are not read.
    unknowable: &["f", "file", "E", "exec", "i", "include"],
    runs: &["l", "load"],
    leading: 1,
    leading_given_by: &["f", "file", "e", "source", "E", "exec"],
    posix_order: true,
    ..BASE
};

const JQ: Grammar = Grammar {
    short_value: "fL",
    short_flag: "cnrjaSCMesRhV0",
    long_value: &["indent", "from-file"],
    long_flag: &[
        "compact-output",
        "null-input",
        "raw-input",
        "slurp",
        "raw-output",
        "raw-output0",
        "join-output",
        "ascii-output",
        "sort-keys",
        "color-output",
        "monochrome-output",
        "tab",
        "stream",
        "stream-errors",
        "seq",
        "exit-status",
        "unbuffered",
        "help",
        "version",
        "build-configuration",
    ],
    file_values: &["f", "from-file"],
    leading: 1,
    leading_given_by: &["f", "from-file"],
    ..BASE
};

const CURL: Grammar = Grammar {
    short_value: "AbcCdDeEFHKmoPQrtTuUwxXYyz",
    short_flag: "0123456aBfgGiIjJklLMnNOpqRsSvVZ#:",
    long_value: &[
        "user-agent",
        "cookie",
        "cookie-jar",
        "continue-at",
        "data",
        "data-ascii",
        "data-binary",
        "data-raw",
        "data-urlencode",
        "json",
        "dump-header",
        "referer",
        "cert",
        "key",
        "cacert",
        "capath",
        "form",
        "form-string",
        "header",
        "max-time",
        "connect-timeout",
        "output",
        "output-dir",
        "ftp-port",
        "quote",
        "range",
        "time-cond",
        "upload-file",
        "user",
        "proxy-user",
        "write-out",
        "proxy",
        "request",
        "speed-limit",
        "speed-time",
        "max-filesize",
        "limit-rate",
        "retry",
        "retry-delay",
        "retry-max-time",
        "resolve",
        "connect-to",
        "url",
        "interface",
        "netrc-file",
        "trace",
        "trace-ascii",
        "stderr",
        "libcurl",
        "oauth2-bearer",
        "proto",
        "proto-redir",
        "max-redirs",
        "expect100-timeout",
        "keepalive-time",
        "cert-type",
        "key-type",
        "pass",
        "ciphers",
        "tls-max",
        "dns-servers",
        "aws-sigv4",
        "variable",
        "url-query",
        "etag-save",
        "etag-compare",
        "hsts",
        "alt-svc",
        "unix-socket",
        "abstract-unix-socket",
        "local-port",
        "noproxy",
        "preproxy",
        "socks5",
        "socks5-hostname",
        "happy-eyeballs-timeout-ms",
    ],
    long_flag: &[
        "fail",
        "fail-with-body",
        "silent",
        "show-error",
        "location",
        "location-trusted",
        "insecure",
        "verbose",
        "include",
        "head",
        "remote-name",
        "remote-name-all",
        "remote-header-name",
        "remote-time",
        "compressed",
        "create-dirs",
        "globoff",
        "get",
        "http1.0",
        "http1.1",
        "http2",
        "http3",
        "ipv4",
        "ipv6",
        "no-buffer",
        "no-keepalive",
        "no-progress-meter",
        "progress-bar",
        "netrc",
        "netrc-optional",
        "list-only",
        "append",
        "junk-session-cookies",
        "tcp-nodelay",
        "tcp-fastopen",
        "path-as-is",
        "ssl",
        "ssl-reqd",
        "tlsv1.2",
        "tlsv1.3",
        "raw",
        "parallel",
        "parallel-immediate",
        "styled-output",
        "no-styled-output",
        "fail-early",
        "retry-connrefused",
        "retry-all-errors",
        "manual",
        "digest",
        "basic",
        "ntlm",
        "negotiate",
        "anyauth",
        "proxy-insecure",
        "post301",
        "post302",
        "post303",
        "disable",
        "disable-eprt",
        "disable-epsv",
        "crlf",
        "xattr",
        "skip-existing",
        "remove-on-error",
        "help",
        "version",
    ],
    file_values: &["T", "upload-file", "E", "cert", "key", "cacert", "capath", "netrc-file"],
    write_values: &[
        "o",
        "output",
        "output-dir",
        "c",
        "cookie-jar",
        "D",
        "dump-header",
        "trace",
        "trace-ascii",
        "stderr",
        "libcurl",
        "etag-save",
        // The HSTS and Alt-Svc caches are read and rewritten.
        "hsts",
        "alt-svc",
    ],
    // A config file can hold any option, among them `--output`.
    unknowable: &["K", "config"],
    ..BASE
};

const WGET: Grammar = Grammar {
    short_value: "OoaPiteTwUlARDQIXB",
    short_flag: "hVbdqvnNcSrkKmpHLEFx46",
    long_value: &[
        "output-document",
        "output-file",
        "append-output",
        "directory-prefix",
        "input-file",
        "tries",
        "timeout",
        "dns-timeout",
        "connect-timeout",
        "read-timeout",
        "wait",
        "waitretry",
        "user-agent",
        "header",
        "user",
        "password",
        "http-user",
        "http-password",
        "level",
        "accept",
        "reject",
        "domains",
        "exclude-domains",
        "quota",
        "limit-rate",
        "post-data",
        "post-file",
        "body-data",
        "body-file",
        "method",
        "load-cookies",
        "save-cookies",
        "ca-certificate",
        "certificate",
        "private-key",
        "referer",
        "include-directories",
        "exclude-directories",
        "base",
        "bind-address",
        "restrict-file-names",
        "progress",
        "max-redirect",
        "secure-protocol",
        "cut-dirs",
        "default-page",
        "adjust-extension",
        "report-speed",
        "compression",
    ],
    long_flag: &[
        "quiet",
        "verbose",
        "no-verbose",
        "debug",
        "background",
        "continue",
        "timestamping",
        "no-clobber",
        "server-response",
        "spider",
        "recursive",
        "convert-links",
        "backup-converted",
        "mirror",
        "page-requisites",
        "no-parent",
        "span-hosts",
        "relative",
        "force-directories",
        "no-directories",
        "no-host-directories",
        "protocol-directories",
        "no-check-certificate",
        "keep-session-cookies",
        "content-disposition",
        "trust-server-names",
        "inet4-only",
        "inet6-only",
        "no-cache",
        "no-cookies",
        "ignore-length",
        "show-progress",
        "no-proxy",
        "https-only",
        "auth-no-challenge",
        "retry-connrefused",
        "help",
        "version",
    ],
    file_values: &[
        "i",
        "input-file",
        "post-file",
        "body-file",
        "load-cookies",
        "ca-certificate",
        "certificate",
        "private-key",
    ],
    write_values: &[
        "O",
        "output-document",
        "o",
        "output-file",
        "a",
        "append-output",
        "P",
        "directory-prefix",
        "save-cookies",
    ],
    runs: &["use-askpass"],
    // `-e` runs a wgetrc command (`-e output_document=…`).
    unknowable: &["e", "execute", "config"],
    ..BASE
};

const RSYNC: Grammar = Grammar {
    short_value: "efBTM",
    short_flag: "vqcarlpogDtHAXSxRnuWbdkKLzhPiIOJmUNEy0Cs8",
    long_value: &[
        "filter",
        "exclude",
        "include",
        "exclude-from",
        "include-from",
        "files-from",
        "log-file",
        "password-file",
        "backup-dir",
        "suffix",
        "chmod",
        "chown",
        "timeout",
        "bwlimit",
        "compare-dest",
        "link-dest",
        "copy-dest",
        "partial-dir",
        "port",
        "max-size",
        "min-size",
        "out-format",
        "info",
        "debug",
        "temp-dir",
        "block-size",
        "max-delete",
        "modify-window",
        "compress-level",
        "skip-compress",
        "usermap",
        "groupmap",
        "contimeout",
        "log-file-format",
        "iconv",
    ],
    long_flag: &[
        "verbose",
        "quiet",
        "checksum",
        "archive",
        "recursive",
        "relative",
        "update",
        "inplace",
        "append",
        "append-verify",
        "dirs",
        "links",
        "copy-links",
        "copy-unsafe-links",
        "safe-links",
        "hard-links",
        "perms",
        "executability",
        "acls",
        "xattrs",
        "owner",
        "group",
        "devices",
        "specials",
        "times",
        "omit-dir-times",
        "super",
        "fake-super",
        "sparse",
        "dry-run",
        "whole-file",
        "one-file-system",
        "existing",
        "ignore-existing",
        "remove-source-files",
        "delete",
        "delete-before",
        "delete-during",
        "delete-delay",
        "delete-after",
        "delete-excluded",
        "ignore-errors",
        "force",
        "partial",
        "delay-updates",
        "prune-empty-dirs",
        "numeric-ids",
        "ignore-times",
        "size-only",
        "compress",
        "cvs-exclude",
        "from0",
        "protect-args",
        "secluded-args",
        "stats",
        "human-readable",
        "progress",
        "itemize-changes",
        "list-only",
        "mkpath",
        "no-motd",
        "help",
        "version",
    ],
    file_values: &[
        "exclude-from",
        "include-from",
        "files-from",
        "password-file",
        "backup-dir",
        "compare-dest",
        "link-dest",
        "copy-dest",
        "T",
        "temp-dir",
    ],
    write_values: &["log-file"],
    // `-e` gives the remote shell, `--rsync-path` the program run remotely.
    runs: &["e", "rsh", "rsync-path", "M", "remote-option"],
    ..BASE
};

const UNZIP: Grammar = Grammar {
    short_value: "dP",
    short_flag: "abcCfhjKlLMnNoOpqstTuUvVWxXzZ",
    write_values: &["d"],
    ..BASE
};

/// Build and test tools: the policy decides their subcommands; their
/// options are too many to list, so every word that may be a path is an
/// operand (the generic reading).
const BUILD_TOOLS: &[&str] = &["cargo", "npm", "npx", "pnpm", "yarn", "make", "go", "pytest"];

/// Shell builtins that name no files: they set shell state (variables,
/// options; assignments that change how later commands read are followed
/// by the walk) or test and exit.
const SHELL_BUILTINS: &[&str] = &[
    ":", "exit", "return", "wait", "shift", "set", "export", "unset", "local", "declare", "typeset", "readonly",
    "test", "[", "read", "type", "getopts", "break", "continue", "let", "umask",
];

/// Programs that only print their arguments or information.
const TEXT_ONLY_PROGRAMS: &[&str] = &[
    "echo", "printf", "true", "false", "sleep", "whoami", "uname", "seq", "basename", "dirname",
];

fn grammar(program: &str) -> Option<&'static Grammar> {
    Some(match program {
        "ls" => &LS,
        "cat" | "tac" | "nl" => &CAT,
        "head" | "tail" => &HEAD_TAIL,
        "wc" => &WC,
        "grep" | "egrep" | "fgrep" => &GREP,
        "rg" => &RG,
        "stat" => &STAT,
        "file" => &FILE,
        "diff" => &DIFF,
        "sort" => &SORT,
        "uniq" => &UNIQ,
        "cut" => &CUT,
        "tr" => &TR,
        "pwd" => &PWD,
        "which" => &WHICH,
        "date" => &DATE,
        "du" => &DU,
        "df" => &DF,
        "tree" => &TREE,
        "rm" => &RM,
        "rmdir" => &RMDIR,
        "cp" | "mv" | "ln" => &CP_MV_LN,
        "mkdir" => &MKDIR,
        "touch" => &TOUCH,
        "tee" => &TEE,
        "chmod" => &CHMOD,
        "chown" | "chgrp" => &CHOWN,
        "truncate" => &TRUNCATE,
        "install" => &INSTALL,
        "sed" => &SED,
        "awk" | "gawk" | "mawk" | "nawk" => &AWK,
        "jq" => &JQ,
        "curl" => &CURL,
        "wget" => &WGET,
        "rsync" => &RSYNC,
        "unzip" => &UNZIP,
        "echo" => &ECHO,
        "printf" => &PRINTF,
        "uname" => &UNAME,
        "seq" => &SEQ,
        "basename" | "dirname" => &BASENAME,
        p if TEXT_ONLY_PROGRAMS.contains(&p) => &TEXT_ONLY,
        _ => return None,
    })
}

/// The names of the programs the analysis knows (for the documentation
/// and tests): those with a grammar, `find`, `dd`, `tar`, `git`, the build
/// tools and `python -m pytest`-like modules.
pub const KNOWN_PROGRAMS: &[&str] = &[
    "ls", "cat", "tac", "nl", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "stat", "file", "diff", "sort",
    "uniq", "cut", "tr", "pwd", "which", "date", "du", "df", "tree", "echo", "printf", "true", "false", "sleep",
    "whoami", "uname", "seq", "basename", "dirname", "find", "jq", "rm", "rmdir", "cp", "mv", "ln", "mkdir", "touch",
    "tee", "chmod", "chown", "chgrp", "truncate", "install", "sed", "awk", "gawk", "mawk", "nawk", "dd", "tar",
    "unzip", "curl", "wget", "rsync", "git", "cargo", "npm", "npx", "pnpm", "yarn", "make", "go", "pytest", "cd",
    "pushd", "popd", "dirs", ":", "exit", "return", "wait", "shift", "set", "export", "unset", "local", "declare",
    "typeset", "readonly", "test", "[", "read", "type", "getopts", "break", "continue", "let", "umask",
];

/// Reads `words` (`words[0]` is the program, named `program`) by the
/// program's grammar.
pub(crate) fn read(program: &str, words: &[WordInfo]) -> Reading {
    let args: Vec<String> = words.iter().skip(1).map(|w| w.literal.clone()).collect();
    let unknown = || Reading {
        operands: generic_operands(&args),
        ..Reading::default()
    };
    match program {
        "cd" | "pushd" | "popd" | "dirs" => {
            // The directory change itself is followed by the walk.
            return Reading {
                known: true,
                operands: args.iter().filter(|a| !a.starts_with(['-', '+'])).cloned().collect(),
                ..Reading::default()
            };
        }
        "hash" if args.iter().any(|a| a.starts_with('-') && a.contains('p')) => {
            return Reading {
                runs: Some("hash -p binds a command name to another program".to_owned()),
                ..unknown()
            }
        }
        "enable" if args.iter().any(|a| a.starts_with('-') && a.contains('f')) => {
            return Reading {
                runs: Some("enable -f loads a builtin from a shared library".to_owned()),
                ..unknown()
            }
        }
        p if SHELL_BUILTINS.contains(&p) => {
            return Reading {
                known: true,
                ..Reading::default()
            }
        }
        "find" => return find(words),
        "dd" => return dd(words),
        "tar" => return tar(words),
        "git" => return git(words),
        "make" => return make(words),
        p if BUILD_TOOLS.contains(&p) => {
            return Reading {
                known: true,
                ..unknown()
            }
        }
        p if is_python(p) => return python_module(words).unwrap_or_else(unknown),
        _ => {}
    }
    let Some(g) = grammar(program) else {
        return unknown();
    };
    let (words, extra_files) = if program == "jq" {
        jq_named_arguments(words)
    } else {
        (words.to_vec(), Vec::new())
    };
    let parsed = parse(g, &words);
    let mut r = Reading {
        known: parsed.known,
        ..Reading::default()
    };
    if !parsed.known {
        r.operands = generic_operands(&args);
    }
    for (name, value) in &parsed.options {
        // `-` is standard input or output, not a file.
        let Some(value) = value.as_ref().filter(|v| *v != "-") else {
            continue;
        };
        if g.write_values.contains(&name.as_str()) {
            r.writes.push(value.clone());
            r.operands.push(value.clone());
        } else if g.file_values.contains(&name.as_str()) {
            r.operands.push(value.clone());
        }
    }
    if let Some((name, _)) = parsed.options.iter().find(|(n, _)| g.runs.contains(&n.as_str())) {
        r.runs = Some(format!("{program} {} runs another program", option_text(name)));
    }
    if parsed.options.iter().any(|(n, _)| g.unknowable.contains(&n.as_str())) {
        r.known = false;
    }
    if let Some(name) = parsed.options.iter().find_map(|(n, v)| {
        let from_stdin = matches!(n.as_str(), "f" | "file" | "from-file") && v.as_deref().is_some_and(is_stdin_name);
        from_stdin.then_some(n)
    }) {
        if matches!(program, "sed" | "awk" | "gawk" | "mawk" | "nawk") {
            r.runs = Some(format!(
                "{program} {} reads its program from standard input, which the analysis does not see",
                option_text(name)
            ));
        }
    }
    let given = parsed
        .options
        .iter()
        .any(|(n, _)| g.leading_given_by.contains(&n.as_str()));
    let skip = if given { 0 } else { g.leading };
    let leading: Vec<&String> = parsed.positional.iter().take(skip).collect();
    let files: Vec<String> = parsed.positional.iter().skip(skip).cloned().collect();
    if parsed.known && !g.no_files {
        if files.is_empty() && g.default_dot {
            r.operands.push(".".to_owned());
        }
        r.operands.extend(files.iter().cloned());
    }
    match program {
        "grep" | "egrep" | "fgrep"
            if files.is_empty()
                && parsed.options.iter().any(|(n, v)| {
                    matches!(n.as_str(), "r" | "R" | "recursive" | "dereference-recursive")
                        || (matches!(n.as_str(), "d" | "directories") && v.as_deref() == Some("recurse"))
                }) =>
        {
            r.operands.push(".".to_owned());
        }
        "uniq" => {
            // `uniq INPUT OUTPUT` writes OUTPUT.
            if let Some(out) = files.get(1) {
                r.writes.push(out.clone());
            }
        }
        "sed" => {
            // `-i`, `-ni`, `-i.bak`, `--in-place=.bak`: the files are rewritten.
            if parsed.options.iter().any(|(n, _)| n == "i" || n == "in-place") {
                r.writes.extend(files.iter().cloned());
            }
            let scripts: Vec<&str> = leading
                .iter()
                .map(|s| s.as_str())
                .chain(
                    parsed
                        .options
                        .iter()
                        .filter(|(n, _)| n == "e" || n == "expression")
                        .filter_map(|(_, v)| v.as_deref()),
                )
                .collect();
            for script in scripts {
                match sed_script(script) {
                    Ok(files) => {
                        r.writes.extend(files.writes.iter().cloned());
                        r.operands.extend(files.writes);
                        r.reads.extend(files.reads.iter().cloned());
                        r.operands.extend(files.reads);
                    }
                    Err(SedProblem::Runs(why)) => r.runs = Some(why),
                    Err(SedProblem::Unreadable) => r.known = false,
                }
            }
        }
        "awk" | "gawk" | "mawk" | "nawk" => {
            let programs = leading.iter().map(|s| s.as_str()).chain(
                parsed
                    .options
                    .iter()
                    .filter(|(n, _)| n == "e" || n == "source")
                    .filter_map(|(_, v)| v.as_deref()),
            );
            for text in programs {
                if let Some(why) = awk_runs(text) {
                    r.runs = Some(format!("{program}: {why}"));
                }
            }
            // `-v name=value` and `name=value` operands are assignments.
            r.operands.retain(|o| !is_assignment(o));
        }
        "curl" => {
            for (name, value) in &parsed.options {
                let Some(value) = value else { continue };
                // Options whose value may name a file to upload: `-d @f`,
                // `--data-urlencode name@f`, `-F x=@f`, `-F x=<f`, `-H @f`,
                // `-b f` (a cookie file when it holds no `=`).
                let file = match name.as_str() {
                    "d" | "data" | "data-binary" | "data-ascii" | "json" | "H" | "header" => value.strip_prefix('@'),
                    "data-urlencode" => value
                        .split_once('@')
                        .filter(|(before, _)| !before.contains('='))
                        .map(|(_, f)| f),
                    "F" | "form" => value
                        .split_once("=@")
                        .or_else(|| value.split_once("=<"))
                        .map(|(_, f)| f.split(';').next().unwrap_or_default()),
                    "b" | "cookie" if !value.contains('=') => Some(value.as_str()),
                    // `-w @file` reads the format from a file; `%output{f}`
                    // in it writes f, which may itself be a variable.
                    "w" | "write-out" if value.contains("%output{") => {
                        r.known = false;
                        value.strip_prefix('@')
                    }
                    "w" | "write-out" => value.strip_prefix('@'),
                    "variable" | "url-query" => value.split_once('@').map(|(_, f)| f),
                    _ => None,
                };
                if let Some(f) = file.filter(|f| !f.is_empty() && *f != "-") {
                    r.operands.push(f.to_owned());
                }
            }
            // `-O` writes a file named after the URL in the directory.
            if parsed
                .options
                .iter()
                .any(|(n, _)| matches!(n.as_str(), "O" | "remote-name" | "remote-name-all"))
            {
                r.operands.push(".".to_owned());
            }
            // URLs are not files, except `file:` ones.
            r.operands
                .retain(|o| parsed.positional.iter().all(|p| p != o) || !parsed.known);
            r.operands.retain(|o| !o.contains("://"));
            let urls = parsed.positional.iter().map(String::as_str).chain(
                parsed
                    .options
                    .iter()
                    .filter(|(n, _)| n == "url")
                    .filter_map(|(_, v)| v.as_deref()),
            );
            for url in urls {
                if let Some(rest) = url
                    .get(..7)
                    .filter(|s| s.eq_ignore_ascii_case("file://"))
                    .map(|_| &url[7..])
                {
                    let path = rest.find('/').map_or(rest, |i| &rest[i..]);
                    r.operands.push(path.to_owned());
                } else if !url.contains("://") && url.contains("file:") {
                    r.known = false;
                }
            }
        }
        "wget" => {
            if !parsed.options.iter().any(|(n, _)| {
                matches!(
                    n.as_str(),
                    "O" | "output-document" | "P" | "directory-prefix" | "spider"
                )
            }) {
                r.operands.push(".".to_owned());
            }
            r.operands
                .retain(|o| parsed.positional.iter().all(|p| p != o) || !parsed.known);
        }
        // A relative symlink target is read from the link's folder, not
        // from where `ln` runs: `cd src && ln -s ../.bashrc ../l` makes
        // `l` point at `~/.bashrc` beside the project. The target joined to
        // the link's folder (and to the link, which may be a folder) is an
        // operand too.
        "ln" if parsed.options.iter().any(|(n, _)| n == "s" || n == "symbolic") => {
            let into = parsed
                .options
                .iter()
                .find(|(n, _)| n == "t" || n == "target-directory")
                .and_then(|(_, v)| v.clone());
            let (targets, link_dirs): (&[String], Vec<String>) = match (into, files.split_last()) {
                (Some(dir), _) => (&files[..], vec![dir]),
                (None, Some((link, targets))) if !targets.is_empty() => {
                    let parent = link.trim_end_matches('/').rsplit_once('/').map_or("", |(p, _)| p);
                    let parent = if parent.is_empty() && link.starts_with('/') {
                        "/"
                    } else {
                        parent
                    };
                    (targets, vec![link.clone(), parent.to_owned()])
                }
                _ => (&[], Vec::new()),
            };
            for t in targets.iter().filter(|t| !t.starts_with('/') && !t.starts_with('~')) {
                for d in &link_dirs {
                    let joined = crate::dirs::join(d, t);
                    if !r.operands.contains(&joined) {
                        r.operands.push(joined);
                    }
                }
            }
        }
        // `$ENV` and `env` give jq the environment (tokens, keys) to print.
        "jq" if leading.iter().any(|f| f.contains("$ENV") || jq_calls_env(f)) => {
            r.runs = Some("jq reads the environment ($ENV, env)".to_owned());
        }
        // Extracting writes into the directory unless `-d` names another.
        "unzip"
            if !parsed
                .options
                .iter()
                .any(|(n, _)| matches!(n.as_str(), "d" | "l" | "t" | "v" | "p" | "c" | "Z")) =>
        {
            r.operands.push(".".to_owned());
        }
        _ => {}
    }
    if parsed.dynamic_option {
        r.known = false;
    }
    r.operands.extend(extra_files);
    r
}

/// jq's options with two values (`--arg NAME VALUE`, `--slurpfile NAME
/// FILE`) taken out of `words`, with the files they name; after `--args`
/// or `--jsonargs` the words are values, not files.
fn jq_named_arguments(words: &[WordInfo]) -> (Vec<WordInfo>, Vec<String>) {
    let mut kept = Vec::new();
    let mut files = Vec::new();
    let mut i = 0;
    while let Some(w) = words.get(i) {
        match w.literal.as_str() {
            "--arg" | "--argjson" => i += 3,
            "--slurpfile" | "--rawfile" => {
                if let Some(f) = words.get(i + 2) {
                    files.push(f.literal.clone());
                }
                i += 3;
            }
            "--args" | "--jsonargs" => {
                // The filter and files may come before; what follows are
                // positional values.
                break;
            }
            _ => {
                kept.push(w.clone());
                i += 1;
            }
        }
    }
    (kept, files)
}

/// A word that is not literal and may expand to something starting with
/// `-`, read by the program as an option: `$X`, `"$f"`, `*` (a file named
/// `--checkpoint-action=exec=sh x` makes `tar cf a.tar *` run it), `{-a,b}`.
/// `./*`, `src/*.rs` and `"./$f"` cannot.
fn may_be_option(w: &WordInfo) -> bool {
    !w.is_literal()
        && !w
            .literal
            .starts_with(|c: char| c.is_alphanumeric() || matches!(c, '.' | '/' | '~' | '_'))
}

fn option_text(name: &str) -> String {
    if name.chars().count() == 1 {
        format!("-{name}")
    } else {
        format!("--{name}")
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| crate::wrappers::is_name(name))
}

/// Options and positional words of one command line.
#[derive(Debug, Default)]
struct Parsed {
    /// Every option was in the grammar.
    known: bool,
    /// `(name, value)`: a letter, or a long name without `--`.
    options: Vec<(String, Option<String>)>,
    positional: Vec<String>,
    /// An option word holds an expansion.
    dynamic_option: bool,
}

fn parse(g: &Grammar, words: &[WordInfo]) -> Parsed {
    let mut p = Parsed {
        known: true,
        ..Parsed::default()
    };
    let mut i = 1;
    let mut options_end = false;
    while let Some(w) = words.get(i) {
        i += 1;
        let text = w.literal.as_str();
        if options_end || !text.starts_with('-') || text == "-" {
            // `echo $X`: only text can come of it.
            let harmless = g.no_files && g.short_value.is_empty() && g.long_value.is_empty();
            if !options_end && !harmless && may_be_option(w) {
                p.dynamic_option = true;
            }
            if text != "-" || options_end {
                p.positional.push(text.to_owned());
            }
            if g.posix_order {
                options_end = true;
            }
            continue;
        }
        if !w.is_literal() {
            p.dynamic_option = true;
        }
        if text == "--" {
            options_end = true;
            continue;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            if g.long_value.contains(&name) || g.runs.contains(&name) || g.unknowable.contains(&name) {
                let value = attached.or_else(|| {
                    let v = words.get(i).map(|w| w.literal.clone());
                    i += 1;
                    v
                });
                p.options.push((name.to_owned(), value));
            } else if g.long_flag.contains(&name) {
                p.options.push((name.to_owned(), attached));
            } else {
                p.known = false;
                p.options.push((name.to_owned(), attached));
            }
            continue;
        }
        let cluster: Vec<char> = text.chars().skip(1).collect();
        if g.numeric && cluster.iter().all(char::is_ascii_digit) {
            p.options.push(("n".to_owned(), Some(cluster.iter().collect())));
            continue;
        }
        let mut k = 0;
        while let Some(&c) = cluster.get(k) {
            let rest: String = cluster.iter().skip(k + 1).collect();
            let name = c.to_string();
            let takes_value = g.short_value.contains(c)
                || (c.is_ascii_alphabetic()
                    && (g.runs.contains(&name.as_str()) || g.unknowable.contains(&name.as_str())));
            if takes_value {
                let value = if rest.is_empty() {
                    let v = words.get(i).map(|w| w.literal.clone());
                    i += 1;
                    v
                } else {
                    Some(rest)
                };
                p.options.push((name, value));
                break;
            } else if g.short_optional.contains(c) {
                p.options.push((name, Some(rest)));
                break;
            } else if g.short_flag.contains(c) {
                p.options.push((name, None));
                k += 1;
            } else {
                p.known = false;
                break;
            }
        }
    }
    p
}

/// `find [-H|-L|-P] [-D opts] [-Olevel] [path…] [expression]`: the paths
/// are operands (`.` when none). Actions that change files or run
/// programs make it not known (`-exec` commands are parts of their own).
fn find(words: &[WordInfo]) -> Reading {
    let mut r = Reading {
        known: true,
        ..Reading::default()
    };
    let mut i = 1;
    while let Some(w) = words.get(i) {
        match w.literal.as_str() {
            "-H" | "-L" | "-P" => i += 1,
            "-D" => i += 2,
            o if o.starts_with("-O") => i += 1,
            _ => break,
        }
    }
    while let Some(w) = words.get(i) {
        let t = w.literal.as_str();
        if t.starts_with('-') || t == "(" || t == "!" || t == ")" || t == "," {
            break;
        }
        if may_be_option(w) {
            r.known = false;
        }
        r.operands.push(t.to_owned());
        i += 1;
    }
    if r.operands.is_empty() {
        r.operands.push(".".to_owned());
    }
    while let Some(w) = words.get(i) {
        i += 1;
        match w.literal.as_str() {
            "-exec" | "-execdir" | "-ok" | "-okdir" | "-delete" => r.known = false,
            "-fprint" | "-fprint0" | "-fls" | "-fprintf" => {
                r.known = false;
                if let Some(f) = words.get(i) {
                    r.writes.push(f.literal.clone());
                    r.operands.push(f.literal.clone());
                }
            }
            "-files0-from" => {
                if let Some(f) = words.get(i) {
                    r.operands.push(f.literal.clone());
                }
            }
            _ => {}
        }
        if !w.is_literal() && w.literal.starts_with('-') {
            r.known = false;
        }
    }
    r
}

/// `dd if=A of=B bs=…`: `if` and `of` name files.
fn dd(words: &[WordInfo]) -> Reading {
    const KEYS: &[&str] = &[
        "bs", "cbs", "conv", "count", "ibs", "iflag", "obs", "oflag", "seek", "skip", "status", "iseek", "oseek",
    ];
    let mut r = Reading {
        known: true,
        ..Reading::default()
    };
    for w in words.iter().skip(1) {
        match w.literal.split_once('=') {
            Some(("if", f)) => r.operands.push(f.to_owned()),
            Some(("of", f)) => {
                r.operands.push(f.to_owned());
                r.writes.push(f.to_owned());
            }
            Some((k, _)) if KEYS.contains(&k) => {}
            _ if matches!(w.literal.as_str(), "--help" | "--version") => {}
            _ => r.known = false,
        }
    }
    r
}

/// `tar` in its three styles (`tar czf a.tgz dir`, `tar -czf a.tgz dir`,
/// `tar --create --file=a.tgz dir`): the archive, `-C` directories and
/// members are operands; options that run programs are not understood.
fn tar(words: &[WordInfo]) -> Reading {
    const SHORT_VALUE: &str = "bCfgHKLNTVX";
    const SHORT_FLAG: &str = "AcdrtuxkmOpsSvwWzjJaZhiBMGlnPRUo";
    const LONG_VALUE: &[&str] = &[
        "file",
        "directory",
        "exclude",
        "exclude-from",
        "files-from",
        "listed-incremental",
        "format",
        "blocking-factor",
        "owner",
        "group",
        "mode",
        "mtime",
        "newer",
        "newer-mtime",
        "label",
        "transform",
        "xform",
        "strip-components",
        "sort",
        "exclude-tag",
        "exclude-tag-all",
        "exclude-tag-under",
        "tape-length",
        "starting-file",
        "suffix",
        "backup",
        "occurrence",
        "checkpoint",
        "quoting-style",
        "warning",
        "record-size",
        "pax-option",
        "after-date",
        "owner-map",
        "group-map",
    ];
    const LONG_FLAG: &[&str] = &[
        "create",
        "extract",
        "get",
        "list",
        "append",
        "update",
        "diff",
        "compare",
        "delete",
        "concatenate",
        "catenate",
        "gzip",
        "gunzip",
        "bzip2",
        "xz",
        "lzma",
        "lzip",
        "lzop",
        "zstd",
        "compress",
        "uncompress",
        "auto-compress",
        "verbose",
        "keep-old-files",
        "keep-newer-files",
        "skip-old-files",
        "overwrite",
        "overwrite-dir",
        "unlink-first",
        "recursive-unlink",
        "preserve-permissions",
        "same-permissions",
        "no-same-permissions",
        "same-owner",
        "no-same-owner",
        "numeric-owner",
        "touch",
        "absolute-names",
        "dereference",
        "hard-dereference",
        "one-file-system",
        "no-recursion",
        "recursion",
        "exclude-vcs",
        "exclude-vcs-ignores",
        "exclude-backups",
        "exclude-caches",
        "ignore-case",
        "no-ignore-case",
        "wildcards",
        "no-wildcards",
        "anchored",
        "no-anchored",
        "null",
        "no-null",
        "totals",
        "show-transformed-names",
        "sparse",
        "ignore-zeros",
        "ignore-failed-read",
        "remove-files",
        "verify",
        "interactive",
        "confirmation",
        "force-local",
        "seek",
        "no-seek",
        "utc",
        "full-time",
        "check-links",
        "acls",
        "no-acls",
        "xattrs",
        "no-xattrs",
        "selinux",
        "no-selinux",
        "delay-directory-restore",
        "no-delay-directory-restore",
        "to-stdout",
        "stdout",
        "show-defaults",
        "show-omitted-dirs",
        "block-number",
        "index-file",
        "level",
        "help",
        "version",
        "usage",
    ];
    // Options that run a program named on the line.
    const RUNS: &[&str] = &[
        "I",
        "F",
        "use-compress-program",
        "to-command",
        "rsh-command",
        "rmt-command",
        "info-script",
        "new-volume-script",
        "checkpoint-action",
    ];
    let mut r = Reading {
        known: true,
        ..Reading::default()
    };
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut positional: Vec<String> = Vec::new();
    let mut i = 1;
    // Old style: the first word is a cluster of letters without `-`, whose
    // values follow in order.
    if let Some(first) = words.get(1).filter(|w| !w.literal.starts_with('-')) {
        i = 2;
        for c in first.literal.chars() {
            if SHORT_VALUE.contains(c) || RUNS.contains(&c.to_string().as_str()) {
                options.push((c.to_string(), words.get(i).map(|w| w.literal.clone())));
                i += 1;
            } else if SHORT_FLAG.contains(c) {
                options.push((c.to_string(), None));
            } else {
                r.known = false;
            }
        }
    }
    let mut options_end = false;
    while let Some(w) = words.get(i) {
        i += 1;
        let t = w.literal.as_str();
        if options_end || !t.starts_with('-') || t == "-" {
            if !options_end && may_be_option(w) {
                r.known = false;
            }
            positional.push(t.to_owned());
            continue;
        }
        if !w.is_literal() {
            r.known = false;
        }
        if t == "--" {
            options_end = true;
        } else if let Some(long) = t.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            if LONG_VALUE.contains(&name) || RUNS.contains(&name) {
                let value = attached.or_else(|| {
                    let v = words.get(i).map(|w| w.literal.clone());
                    i += 1;
                    v
                });
                options.push((name.to_owned(), value));
            } else {
                r.known &= LONG_FLAG.contains(&name);
                options.push((name.to_owned(), attached));
            }
        } else {
            let cluster: Vec<char> = t.chars().skip(1).collect();
            for (k, &c) in cluster.iter().enumerate() {
                if SHORT_VALUE.contains(c) || RUNS.contains(&c.to_string().as_str()) {
                    let rest: String = cluster.iter().skip(k + 1).collect();
                    let value = if rest.is_empty() {
                        let v = words.get(i).map(|w| w.literal.clone());
                        i += 1;
                        v
                    } else {
                        Some(rest)
                    };
                    options.push((c.to_string(), value));
                    break;
                } else if SHORT_FLAG.contains(c) {
                    options.push((c.to_string(), None));
                } else {
                    r.known = false;
                    break;
                }
            }
        }
    }
    for (name, value) in &options {
        if RUNS.contains(&name.as_str()) {
            r.runs = Some(format!("tar {} runs another program", option_text(name)));
        }
        let Some(value) = value else { continue };
        match name.as_str() {
            "f" | "file" => {
                // `host:file` is opened through a remote shell.
                let remote = value
                    .split_once(':')
                    .is_some_and(|(host, _)| !host.contains('/') && !host.is_empty());
                if remote && !options.iter().any(|(n, _)| n == "force-local") {
                    r.runs = Some(format!("tar -f {value} opens the archive through a remote shell"));
                }
                if value != "-" {
                    r.operands.push(value.clone());
                }
            }
            "C" | "directory" | "T" | "files-from" | "X" | "exclude-from" | "g" | "listed-incremental"
            | "index-file" => r.operands.push(value.clone()),
            _ => {}
        }
    }
    // Extracting writes into the directory unless `-C` names another.
    let extracts = options
        .iter()
        .any(|(n, _)| matches!(n.as_str(), "x" | "extract" | "get"));
    if extracts && !options.iter().any(|(n, _)| n == "C" || n == "directory") {
        r.operands.push(".".to_owned());
    }
    r.operands.extend(positional);
    r
}

/// `git -c` keys that change nothing but display or identity: any other
/// key may name a program (`core.sshCommand`, `core.pager`, `alias.x=!…`,
/// `diff.x.textconv`, `core.hooksPath`…).
const GIT_SAFE_CONFIG: &[&str] = &[
    "user.name",
    "user.email",
    "color.ui",
    "color.diff",
    "color.status",
    "color.branch",
    "core.quotepath",
    "core.autocrlf",
    "commit.gpgsign",
    "tag.gpgsign",
    "init.defaultbranch",
    "pull.rebase",
    "push.default",
    "merge.ff",
    "fetch.prune",
    "column.ui",
    "log.decorate",
    "advice.detachedhead",
];

/// Options of git's subcommands that take the next word as a value which
/// names no file.
const GIT_VALUE_OPTIONS: &[&str] = &[
    "-m",
    "--message",
    "--author",
    "--date",
    "-b",
    "-B",
    "--format",
    "--pretty",
    "-n",
    "--max-count",
    "--since",
    "--until",
    "--grep",
    "-S",
    "-G",
    "--branch",
    "--depth",
    "--origin",
    "--onto",
];

/// git subcommands whose options the analysis reads for programs they run.
const GIT_SUBCOMMANDS: &[&str] = &[
    "status",
    "log",
    "diff",
    "show",
    "add",
    "commit",
    "branch",
    "checkout",
    "switch",
    "restore",
    "merge",
    "rebase",
    "fetch",
    "pull",
    "push",
    "clone",
    "init",
    "tag",
    "stash",
    "reset",
    "rm",
    "mv",
    "remote",
    "config",
    "rev-parse",
    "ls-files",
    "blame",
    "grep",
    "describe",
    "cherry-pick",
    "revert",
    "apply",
    "format-patch",
    "worktree",
    "clean",
    "reflog",
    "shortlog",
    "ls-remote",
    "cat-file",
    "show-ref",
    "symbolic-ref",
    "for-each-ref",
    "rev-list",
    "merge-base",
    "name-rev",
    "archive",
    "gc",
    "fsck",
    "version",
    "sparse-checkout",
    "range-diff",
    "count-objects",
    "ls-tree",
    "check-ignore",
    "am",
    "notes",
    "bisect",
    "submodule",
];

/// `git [global options] subcommand [args]`.
fn git(words: &[WordInfo]) -> Reading {
    let mut r = Reading {
        known: true,
        ..Reading::default()
    };
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let t = w.literal.as_str();
        if !t.starts_with('-') {
            break;
        }
        if !w.is_literal() {
            r.known = false;
            r.runs = Some(format!("git option {t} is not literal"));
            return r;
        }
        i += 1;
        let value = |i: &mut usize| {
            let v = words.get(*i).map(|w| (w.literal.clone(), w.is_literal()));
            *i += 1;
            v
        };
        match t {
            "-C" => match value(&mut i) {
                Some((dir, true)) => {
                    let base = r.chdir.take().and_then(Result::ok).unwrap_or_default();
                    r.chdir = Some(Ok(crate::dirs::join(&base, &dir)));
                }
                Some((dir, false)) => r.chdir = Some(Err(format!("git -C {dir}: the directory is not literal"))),
                None => r.known = false,
            },
            "-c" => match value(&mut i) {
                Some((kv, true)) => {
                    let key = kv.split('=').next().unwrap_or_default().to_ascii_lowercase();
                    if !GIT_SAFE_CONFIG.contains(&key.as_str()) && !key.starts_with("advice.") {
                        r.runs = Some(format!("git -c {key} may name a program git runs"));
                    }
                }
                _ => r.runs = Some("git -c with a value that is not literal".to_owned()),
            },
            "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix" => match value(&mut i) {
                Some((v, _)) => r.operands.push(v),
                None => r.known = false,
            },
            "-p"
            | "--paginate"
            | "-P"
            | "--no-pager"
            | "--bare"
            | "--no-replace-objects"
            | "--literal-pathspecs"
            | "--glob-pathspecs"
            | "--noglob-pathspecs"
            | "--icase-pathspecs"
            | "--no-optional-locks"
            | "--no-advice"
            | "--version"
            | "--help"
            | "--html-path"
            | "--man-path"
            | "--info-path"
            | "--exec-path" => {}
            _ => {
                if let Some((name, v)) = t.split_once('=') {
                    match name {
                        "--git-dir" | "--work-tree" | "--namespace" => r.operands.push(v.to_owned()),
                        "--exec-path" | "--config-env" => {
                            r.runs = Some(format!("git {name} names programs git runs"));
                        }
                        _ => r.known = false,
                    }
                } else if t == "--config-env" {
                    r.runs = Some("git --config-env sets configuration that may name a program".to_owned());
                } else {
                    r.known = false;
                }
            }
        }
    }
    let Some(sub) = words.get(i) else {
        return r;
    };
    let sub_name = sub.literal.as_str();
    if !sub.is_literal() || !GIT_SUBCOMMANDS.contains(&sub_name) {
        // An alias, an external `git-foo`, or a subcommand not read.
        r.known = false;
    }
    let rest = words.get(i + 1..).unwrap_or_default();
    let runs: &[&str] = match sub_name {
        "clone" => &["-u", "--upload-pack", "--template", "-c", "--config"],
        "fetch" | "pull" | "ls-remote" | "archive" => &["--upload-pack", "--exec", "--remote"],
        "push" => &["--receive-pack", "--exec"],
        "rebase" => &["-x", "--exec"],
        "grep" => &["-O", "--open-files-in-pager"],
        "submodule" => &["foreach"],
        "bisect" => &["run"],
        "config" => &[],
        "diff" | "log" | "show" => &["--ext-diff", "--textconv"],
        _ => &[],
    };
    let mut options_end = false;
    let mut k = 0;
    while let Some(w) = rest.get(k) {
        k += 1;
        let t = w.literal.as_str();
        if options_end || !t.starts_with('-') {
            if !options_end && may_be_option(w) {
                r.known = false;
            }
            if sub_name == "submodule" && runs.contains(&t) || sub_name == "bisect" && t == "run" {
                r.runs = Some(format!("git {sub_name} {t} runs a command"));
            }
            r.operands.push(t.to_owned());
            continue;
        }
        if t == "--" {
            options_end = true;
            continue;
        }
        // `--opt=value`, or a short option with its value attached (`-Ocmd`).
        let name = if t.starts_with("--") {
            t.split_once('=').map_or(t, |(n, _)| n)
        } else {
            t.get(..2).unwrap_or(t)
        };
        // `blame -S FILE`, `--contents FILE`, `--ignore-revs-file FILE` read
        // a file (and quote its lines in errors): not `log -S TEXT`.
        if sub_name == "blame" && matches!(name, "-S" | "--contents" | "--ignore-revs-file") {
            let value = match t.split_once('=') {
                Some((_, v)) => Some(v.to_owned()),
                None if t.len() > 2 && !t.starts_with("--") => Some(t[2..].to_owned()),
                None => {
                    k += 1;
                    rest.get(k - 1).map(|w| w.literal.clone())
                }
            };
            r.operands.extend(value);
            continue;
        }
        // Options of the common subcommands whose value is the next word
        // (`commit -m "$(cat <<'EOF' …)"`): text, not files or options.
        let cluster_last = (!t.starts_with("--") && t.len() > 2 && t.chars().skip(1).all(|c| c.is_ascii_alphabetic()))
            .then(|| format!("-{}", t.chars().last().unwrap_or_default()));
        if GIT_VALUE_OPTIONS.contains(&t) || cluster_last.is_some_and(|o| GIT_VALUE_OPTIONS.contains(&o.as_str())) {
            k += 1;
            continue;
        }
        if runs.contains(&name) || (sub_name == "rebase" && t.starts_with("-x")) {
            r.runs = Some(format!("git {sub_name} {name} runs a program"));
        }
        match name {
            "--output" | "-o" if matches!(sub_name, "diff" | "log" | "show" | "format-patch" | "archive") => {
                let value = t.split_once('=').map(|(_, v)| v.to_owned()).or_else(|| {
                    let v = rest.get(k).map(|w| w.literal.clone());
                    k += 1;
                    v
                });
                if let Some(v) = value {
                    r.writes.push(v.clone());
                    r.operands.push(v);
                }
            }
            "-F" | "--file" if matches!(sub_name, "commit" | "tag") => {
                if let Some((_, v)) = t.split_once('=') {
                    r.operands.push(v.to_owned());
                } else if let Some(v) = rest.get(k) {
                    r.operands.push(v.literal.clone());
                    k += 1;
                }
            }
            _ => {}
        }
    }
    if sub_name == "config" {
        // Writing configuration can name programs for later commands.
        let key = rest.iter().find(|w| !w.literal.starts_with('-'));
        let writes = rest.len() > 1
            && !rest.iter().any(|w| {
                matches!(
                    w.literal.as_str(),
                    "--get" | "--get-all" | "--list" | "-l" | "--get-regexp"
                )
            });
        if writes {
            r.known = false;
        }
        let _ = key;
    }
    r
}

/// `make [-C dir] [-f file] [targets]`: runs the recipes of the makefile;
/// `-f -` reads the makefile from standard input.
fn make(words: &[WordInfo]) -> Reading {
    let args: Vec<String> = words.iter().skip(1).map(|w| w.literal.clone()).collect();
    let mut r = Reading {
        known: true,
        operands: generic_operands(&args),
        ..Reading::default()
    };
    let mut i = 1;
    while let Some(w) = words.get(i) {
        i += 1;
        let t = w.literal.as_str();
        let (dir, file) = match t {
            "-C" | "--directory" => (words.get(i).map(|w| (w.literal.clone(), w.is_literal())), None),
            "-f" | "--file" | "--makefile" => (None, words.get(i).map(|w| w.literal.clone())),
            _ if t.starts_with("--directory=") => (Some((t["--directory=".len()..].to_owned(), w.is_literal())), None),
            _ if t.starts_with("-C") && t.len() > 2 => (Some((t[2..].to_owned(), w.is_literal())), None),
            _ if t.starts_with("--file=") || t.starts_with("--makefile=") => {
                (None, t.split_once('=').map(|(_, v)| v.to_owned()))
            }
            _ if t.starts_with("-f") && t.len() > 2 => (None, Some(t[2..].to_owned())),
            _ => (None, None),
        };
        if let Some((dir, literal)) = dir {
            r.chdir = Some(if literal {
                let base = r.chdir.take().and_then(Result::ok).unwrap_or_default();
                Ok(crate::dirs::join(&base, &dir))
            } else {
                Err(format!("make -C {dir}: the directory is not literal"))
            });
            r.operands.push(dir);
        }
        if let Some(f) = file {
            if is_stdin_name(&f) {
                r.runs = Some("make reads its makefile from standard input".to_owned());
            }
            r.operands.push(f);
        }
    }
    r
}

fn is_python(program: &str) -> bool {
    let rest = program.strip_prefix("python").or_else(|| program.strip_prefix("pypy"));
    rest.is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Modules run with `python -m` that are known build and test tools.
const PYTHON_MODULES: &[&str] = &["pytest", "unittest", "pip", "venv", "mypy"];

/// `python3 -m pytest …`: known, with the module's arguments read
/// generically.
fn python_module(words: &[WordInfo]) -> Option<Reading> {
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let t = w.literal.as_str();
        match t {
            "-m" => {
                let module = words.get(i + 1)?;
                if !module.is_literal() || !PYTHON_MODULES.contains(&module.literal.as_str()) {
                    return None;
                }
                let args: Vec<String> = words.iter().skip(i + 2).map(|w| w.literal.clone()).collect();
                return Some(Reading {
                    known: true,
                    operands: generic_operands(&args),
                    ..Reading::default()
                });
            }
            "-B" | "-u" | "-q" | "-O" | "-OO" | "-s" | "-S" | "-E" | "-I" | "-P" => i += 1,
            _ => return None,
        }
    }
    None
}

/// `path` names a program found through `PATH` (no `/`) or in a system
/// directory: `./ls` or `build/ls` is whatever that file is.
pub(crate) fn is_system_path(path: &str) -> bool {
    const SYSTEM: &[&str] = &[
        "/bin/",
        "/usr/bin/",
        "/usr/local/bin/",
        "/sbin/",
        "/usr/sbin/",
        "/usr/local/sbin/",
        "/opt/homebrew/bin/",
    ];
    !path.contains('/')
        || SYSTEM.iter().any(|d| {
            path.strip_prefix(d)
                .is_some_and(|rest| !rest.contains('/') && !rest.is_empty())
        })
}

/// A file name that is standard input or another descriptor of the
/// process: a program read from it is not on the line.
pub(crate) fn is_stdin_name(name: &str) -> bool {
    name == "-"
        || name == "/dev/stdin"
        || name.starts_with("/dev/fd/")
        || name.starts_with("/proc/self/fd/")
        || name.starts_with("/proc/thread-self/fd/")
        || (name.starts_with("/proc/") && name.contains("/fd/"))
        || name == "/dev/tty"
}

/// Interpreters whose program comes from a file, `-c`/`-e` text, or
/// standard input.
pub(crate) fn is_interpreter(program: &str) -> bool {
    is_python(program)
        || matches!(
            program,
            "perl"
                | "ruby"
                | "node"
                | "nodejs"
                | "php"
                | "lua"
                | "luajit"
                | "tclsh"
                | "wish"
                | "Rscript"
                | "julia"
                | "deno"
                | "bun"
                | "osascript"
                | "pwsh"
                | "irb"
                | "jshell"
                | "groovy"
                | "guile"
                | "racket"
                | "sbcl"
                | "elixir"
                | "erl"
        )
}

/// The options of an interpreter: those taking a value, and those giving
/// the program as text (`-c`, `-e`).
fn interpreter_options(program: &str) -> Option<(&'static str, &'static str, &'static [&'static str])> {
    // (short options with a value, short options with inline code, long
    // options with a value)
    Some(match program {
        p if is_python(p) => ("WXQ", "cm", &["check-hash-based-pycs"]),
        "perl" => ("", "eE", &[]),
        "ruby" => (
            "IrCEFKTUWx",
            "e",
            &[
                "encoding",
                "external-encoding",
                "internal-encoding",
                "enable",
                "disable",
                "dump",
            ],
        ),
        "node" | "nodejs" => (
            "r",
            "ep",
            &[
                "require",
                "import",
                "loader",
                "experimental-loader",
                "input-type",
                "eval",
                "print",
                "env-file",
                "conditions",
                "stack-size",
                "max-old-space-size",
                "inspect-port",
                "title",
                "redirect-warnings",
                "test-reporter",
                "test-reporter-destination",
                "test-name-pattern",
                "watch-path",
            ],
        ),
        "php" => ("cdzt", "rBRFE", &["php-ini", "define", "zend-extension"]),
        "lua" | "luajit" => ("l", "e", &[]),
        _ => return None,
    })
}

/// Why `words` (an interpreter) takes its program from standard input or
/// another descriptor, if it does: `python3`, `python3 -`, `node
/// /dev/stdin`, `perl < x.pl`. `None` when the program is a file or text on
/// the line (`-c`, `-e`).
pub(crate) fn interpreter_reads_stdin(program: &str, words: &[WordInfo]) -> Option<String> {
    let from_stdin = Some(format!(
        "{program} reads its program from standard input, which the analysis does not see"
    ));
    let asks_version = words.iter().skip(1).any(|w| {
        matches!(w.literal.as_str(), "--version" | "--help" | "-V" | "-h") || (w.literal == "-v" && !is_python(program))
    });
    if asks_version {
        return None;
    }
    let Some((short_value, inline, long_value)) = interpreter_options(program) else {
        // No option table: a program file is the first word that is no
        // option; without one, or with a standard-input name, stdin.
        let script = words.iter().skip(1).find(|w| !w.literal.starts_with('-'));
        if words.iter().skip(1).any(|w| is_stdin_name(&w.literal)) || script.is_none() {
            return from_stdin;
        }
        return None;
    };
    let mut i = 1;
    while let Some(w) = words.get(i) {
        i += 1;
        let t = w.literal.as_str();
        if t == "--" {
            break;
        }
        if !t.starts_with('-') || t == "-" {
            i -= 1;
            break;
        }
        if let Some(long) = t.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or_default();
            if matches!(name, "eval" | "print" | "command") {
                return None;
            }
            if long_value.contains(&name) && !long.contains('=') {
                i += 1;
            }
            continue;
        }
        // perl clusters (`-lne`, `-pi.bak -e`): code if any letter is an
        // inline-code letter before a letter with an attached value.
        let cluster: Vec<char> = t.chars().skip(1).collect();
        for (k, c) in cluster.iter().enumerate() {
            if inline.contains(*c) {
                return None;
            }
            if short_value.contains(*c) {
                if k + 1 == cluster.len() {
                    i += 1;
                }
                break;
            }
            if program == "perl" && matches!(c, 'i' | 'I' | 'M' | 'm' | 'x' | 'd' | 'D' | 'C' | '0' | 'l' | 'F') {
                // Values attached to these (`-i.bak`, `-MList::Util`).
                break;
            }
        }
    }
    match words.get(i) {
        None => from_stdin,
        Some(w) if is_stdin_name(&w.literal) => from_stdin,
        Some(w) if w.literal.starts_with("<(") && w.dynamic => Some(format!(
            "{program} runs a program from a process substitution, which the analysis does not see"
        )),
        Some(_) => None,
    }
}

/// Files a sed script names, and why it cannot be allowed.
#[derive(Debug, Default)]
struct SedFiles {
    writes: Vec<String>,
    reads: Vec<String>,
}

enum SedProblem {
    /// Runs a command (`e`, `s///e`).
    Runs(String),
    /// Not read to the end.
    Unreadable,
}

/// Reads a sed script for the commands that run programs (`e`, the `e`
/// flag of `s`) and the files it reads (`r`, `R`) and writes (`w`, `W`,
/// the `w` flag of `s`).
fn sed_script(script: &str) -> Result<SedFiles, SedProblem> {
    let chars: Vec<char> = script.chars().collect();
    let mut files = SedFiles::default();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    let rest_of_line = |i: &mut usize| -> String {
        let start = *i;
        while at(*i).is_some_and(|c| c != '\n') {
            *i += 1;
        }
        chars
            .get(start..*i)
            .unwrap_or_default()
            .iter()
            .collect::<String>()
            .trim()
            .to_owned()
    };
    // Skips a delimited part starting after its delimiter; returns false
    // when it does not end.
    let delimited = |i: &mut usize, delim: char| -> bool {
        while let Some(c) = at(*i) {
            *i += 1;
            if c == '\\' {
                *i += 1;
            } else if c == delim {
                return true;
            } else if c == '\n' && delim != '\n' {
                // A newline inside a regex is allowed in GNU sed only escaped.
            }
        }
        false
    };
    while i < chars.len() {
        // Whitespace, separators.
        while at(i).is_some_and(|c| c.is_whitespace() || c == ';') {
            i += 1;
        }
        let Some(_) = at(i) else { break };
        // Addresses.
        for _ in 0..2 {
            match at(i) {
                Some(c) if c.is_ascii_digit() => {
                    while at(i).is_some_and(|c| c.is_ascii_digit() || c == '~') {
                        i += 1;
                    }
                }
                Some('$') => i += 1,
                Some('/') => {
                    i += 1;
                    if !delimited(&mut i, '/') {
                        return Err(SedProblem::Unreadable);
                    }
                    while at(i).is_some_and(|c| c == 'I' || c == 'M') {
                        i += 1;
                    }
                }
                Some('\\') => {
                    let Some(d) = at(i + 1) else {
                        return Err(SedProblem::Unreadable);
                    };
                    i += 2;
                    if !delimited(&mut i, d) {
                        return Err(SedProblem::Unreadable);
                    }
                    while at(i).is_some_and(|c| c == 'I' || c == 'M') {
                        i += 1;
                    }
                }
                Some('+') | Some('~') => {
                    i += 1;
                    while at(i).is_some_and(|c| c.is_ascii_digit()) {
                        i += 1;
                    }
                }
                _ => break,
            }
            if at(i) == Some(',') {
                i += 1;
            } else {
                break;
            }
        }
        while at(i).is_some_and(|c| c == ' ' || c == '\t' || c == '!') {
            i += 1;
        }
        let Some(cmd) = at(i) else { break };
        i += 1;
        match cmd {
            '{' | '}' | '=' | 'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'n' | 'N' | 'p' | 'P' | 'x' | 'z' | 'F' => {}
            '#' => {
                rest_of_line(&mut i);
            }
            // GNU sed ends a label at `;` too (`:a;N;$!ba`).
            ':' | 'b' | 't' | 'T' => {
                while at(i).is_some_and(|c| c != ';' && c != '\n' && c != '}') {
                    i += 1;
                }
            }
            'q' | 'Q' | 'l' | 'L' => {
                while at(i).is_some_and(|c| c == ' ' || c.is_ascii_digit()) {
                    i += 1;
                }
            }
            'a' | 'i' | 'c' => {
                // Text to the end of the line, continued by a backslash.
                loop {
                    let line = rest_of_line(&mut i);
                    if line.ends_with('\\') && at(i).is_some() {
                        i += 1;
                        continue;
                    }
                    break;
                }
            }
            'r' | 'R' => files.reads.push(rest_of_line(&mut i)),
            'w' | 'W' => files.writes.push(rest_of_line(&mut i)),
            'e' => return Err(SedProblem::Runs("sed e runs a command".to_owned())),
            'y' | 's' => {
                let Some(d) = at(i) else {
                    return Err(SedProblem::Unreadable);
                };
                if d == '\n' || d == '\\' {
                    return Err(SedProblem::Unreadable);
                }
                i += 1;
                if !delimited(&mut i, d) || !delimited(&mut i, d) {
                    return Err(SedProblem::Unreadable);
                }
                if cmd == 's' {
                    while let Some(f) = at(i) {
                        match f {
                            'g' | 'p' | 'i' | 'I' | 'm' | 'M' => i += 1,
                            c if c.is_ascii_digit() => i += 1,
                            'e' => {
                                return Err(SedProblem::Runs(
                                    "sed s///e runs the pattern space as a command".to_owned(),
                                ))
                            }
                            'w' => {
                                i += 1;
                                files.writes.push(rest_of_line(&mut i));
                            }
                            _ => break,
                        }
                    }
                }
            }
            _ => return Err(SedProblem::Unreadable),
        }
    }
    files.writes.retain(|f| f != "/dev/stdout" && f != "/dev/stderr");
    Ok(files)
}

/// Why an awk program runs other programs or touches files by itself, if
/// it does: `system(…)`, a pipe to or from a command, `getline` from a
/// file, output redirected to a file, `@load`. Strings are skipped; a `|`
/// or `>` anywhere else counts (a regex alternation too: more caution,
/// never less).
/// Whether a jq filter calls the `env` builtin (a word `env` not part of a
/// longer name or a field: `env.X`, `env | keys`, not `.env` or `$env`).
fn jq_calls_env(filter: &str) -> bool {
    let b = filter.as_bytes();
    filter.match_indices("env").any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| b[i]);
        let after = b.get(at + 3).copied();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        !before.is_some_and(|c| word(c) || c == b'.' || c == b'$') && !after.is_some_and(word)
    })
}

fn awk_runs(text: &str) -> Option<String> {
    let mut code = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                code.push('"');
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        code.push(c);
    }
    if code.contains("system") {
        return Some("the program calls system()".to_owned());
    }
    if code.replace("||", "").contains('|') {
        return Some("the program pipes to or from a command".to_owned());
    }
    if code.contains("getline") {
        return Some("the program reads with getline".to_owned());
    }
    // Assigning `ARGV`/`ARGC` makes awk read files the line does not
    // name; `ENVIRON` prints the environment (tokens, keys).
    if code.contains("ARGV") || code.contains("ARGC") {
        return Some("the program changes the files it reads (ARGV)".to_owned());
    }
    if code.contains("ENVIRON") {
        return Some("the program reads the environment (ENVIRON)".to_owned());
    }
    if code.contains('@') {
        return Some("the program loads an extension or another file, or calls a function by name (@)".to_owned());
    }
    if prints_to_file(&code) {
        return Some("the program prints to a file".to_owned());
    }
    None
}

/// A `>` after `print` or `printf` in the same statement, outside
/// parentheses: output redirected to a file (`print > "f"`), not a
/// comparison (`$3 > 100 { print }`, `print ($1 > 2)`).
fn prints_to_file(code: &str) -> bool {
    code.match_indices("print").any(|(at, _)| {
        let mut depth = 0i32;
        for c in code.get(at..).unwrap_or_default().chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ';' | '}' | '\n' => return false,
                '>' if depth <= 0 => return true,
                _ => {}
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_operands_are_generous() {
        let args: Vec<String> = ["-rf", "a", "--out=/etc/x", "-o/tmp/y", "--", "-z"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(generic_operands(&args), ["a", "/etc/x", "/tmp/y", "-z"]);
    }

    #[test]
    fn sed_scripts() {
        assert!(matches!(sed_script("1e id"), Err(SedProblem::Runs(_))));
        assert!(matches!(sed_script("s/a/b/e"), Err(SedProblem::Runs(_))));
        assert!(matches!(sed_script("/x/ e"), Err(SedProblem::Runs(_))));
        let f = sed_script("s/a/b/w out.txt").ok().unwrap_or_default();
        assert_eq!(f.writes, ["out.txt"]);
        let f = sed_script("1r /etc/passwd").ok().unwrap_or_default();
        assert_eq!(f.reads, ["/etc/passwd"]);
        assert!(sed_script("s/a/b/g; /^#/d; 1,3p").is_ok());
        assert!(sed_script("s|e|x|g").is_ok());
        assert!(sed_script("y/abc/xyz/").is_ok());
        assert!(sed_script(":a;N;$!ba;s/\\n/ /g").is_ok());
        assert!(matches!(sed_script(":a;1e id"), Err(SedProblem::Runs(_))));
        assert!(matches!(sed_script("s/a/b"), Err(SedProblem::Unreadable)));
    }

    #[test]
    fn awk_programs() {
        assert!(awk_runs("{ print $1 }").is_none());
        assert!(awk_runs("$3 > 100 { n++ }").is_none());
        assert!(awk_runs("BEGIN { system(\"id\") }").is_some());
        assert!(awk_runs("{ print | \"sh\" }").is_some());
        assert!(awk_runs("{ \"date\" | getline d }").is_some());
        assert!(awk_runs("{ print > \"/etc/x\" }").is_some());
        assert!(awk_runs("{ print \"|\" }").is_none());
        assert!(awk_runs("BEGIN { f = \"system\"; @f(\"id\") }").is_some());
        assert!(awk_runs("a || b { print }").is_none());
        assert!(awk_runs("$3 > 100 { print $1 }").is_none());
        assert!(awk_runs("{ print ($1 > 2) }").is_none());
        assert!(awk_runs("{ printf \"%s\", $1 >> \"log\" }").is_some());
    }

    #[test]
    fn python_names() {
        for p in ["python", "python3", "python3.12", "pypy3"] {
            assert!(is_python(p), "{p}");
        }
        assert!(!is_python("pythonx"));
    }
}
