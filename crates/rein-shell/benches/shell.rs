//! Analysing a typical one-part command line, a ten-part one, one with
//! enough nesting constructs (more than 16) to be parsed on a helper thread,
//! a 63 KB `ls;ls;…` (21,000 commands: not parsed, as more than 1024
//! commands), and 300 `ls;` (parsed, the parts cut at `MAX_PARTS`).

use criterion::{criterion_group, criterion_main, Criterion};
use rein_shell::analyze;
use std::hint::black_box;

const ONE: &str = r#"git commit -m "fix: handle empty input""#;

const TEN: &str = "cd /srv/app && git pull --rebase && FOO=1 npm ci \
    && npm run build 2>&1 | tee build.log && rm -rf dist/tmp; \
    sudo systemctl restart app; curl -fsS http://localhost:8080/health > /dev/null \
    || echo \"down at $(date)\" >> alerts.log";

const NESTED: &str =
    "for f in $(ls *.log); do if [ -s \"$f\" ]; then (gzip \"$f\" && echo \"$(date): $f\") >> done.txt; \
    elif [[ -f \"$f.bak\" ]]; then { rm -f \"$f.bak\"; }; fi; done; \
    [ -d out ] || (mkdir -p out && cp -r build/. out/); echo \"$(wc -l < done.txt)\" `whoami`";

fn shell(c: &mut Criterion) {
    assert_eq!(analyze(ONE).parts.len(), 1);
    assert_eq!(analyze(TEN).parts.len(), 10);
    assert!(analyze(NESTED).understood);
    let mut g = c.benchmark_group("analyze");
    g.bench_function("one_part", |b| b.iter(|| black_box(analyze(black_box(ONE)))));
    g.bench_function("ten_parts", |b| b.iter(|| black_box(analyze(black_box(TEN)))));
    g.bench_function("nested_thread", |b| b.iter(|| black_box(analyze(black_box(NESTED)))));
    let many = vec!["ls"; 21_000].join(";");
    g.bench_function("ls_21000_times", |b| b.iter(|| black_box(analyze(black_box(&many)))));
    let cut = vec!["ls"; 300].join(";");
    g.bench_function("ls_300_times", |b| b.iter(|| black_box(analyze(black_box(&cut)))));
    g.finish();
}

criterion_group!(benches, shell);
criterion_main!(benches);
