//! Open-loop HTTP/1.1 load at a fixed rate, for latency at a given
//! throughput (what `wrk2` does; Debian packages only `wrk`, which is
//! closed-loop).
//!
//! `C` keep-alive connections, one OS thread each (blocking I/O: no async
//! runtime to compete with the server for the CPU). Request `i` of the run
//! is scheduled at `start + i / rate` and belongs to connection `i mod C`.
//! A connection sleeps until its next request's scheduled time, sends it,
//! and reads the answer; **latency is measured from the scheduled time**,
//! not from the actual send, so a server that stalls is charged for every
//! request that should have been sent meanwhile (no coordinated omission).
//! The service time (from the actual send) and the send lag (how late the
//! client sent) are reported too: a large send lag with a small service
//! time means the client or the connection count, not the server, fell
//! behind.
//!
//! ```text
//! loadgen --addr 127.0.0.1:PORT --rate 20000 --duration 30 --connections 64 \
//!         --body FILE [--token T] [--path /v1/decide] [--warmup 5] [--expect allow]
//! loadgen ... --bodies FILE [--rotate SECS]
//! ```
//!
//! `--bodies FILE` sends varied requests: one body per line, request `i`
//! sends line `i mod lines` (so many actors, sessions, buckets). With
//! `--rotate SECS`, the text `{epoch}` in a body is replaced by the number
//! of whole SECS periods since the start of the schedule: session ids such
//! as `s-{epoch}-7` change every SECS seconds, and the old sessions go idle
//! (what a soak with expiring sessions needs).
//!
//! Prints a human summary and one `RESULT key=value ...` line (times in µs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    rate: f64,
    duration: f64,
    warmup: f64,
    connections: usize,
    /// The bodies, sent in turn (one unless `--bodies`).
    bodies: Vec<Vec<u8>>,
    /// `--rotate SECS`: replace `{epoch}` in the bodies.
    rotate: Option<f64>,
    token: Option<String>,
    path: String,
    expect: Option<String>,
}

fn parse_args() -> Args {
    let mut addr = None;
    let (mut rate, mut duration, mut warmup, mut connections) = (1000.0, 10.0, 2.0, 64usize);
    let (mut bodies, mut token, mut path, mut expect) = (None, None, "/v1/decide".to_string(), None);
    let mut rotate = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(v.parse::<SocketAddr>().expect("--addr HOST:PORT")),
            "--rate" => rate = v.parse().expect("--rate"),
            "--duration" => duration = v.parse().expect("--duration"),
            "--warmup" => warmup = v.parse().expect("--warmup"),
            "--connections" => connections = v.parse().expect("--connections"),
            "--body" => bodies = Some(vec![std::fs::read(&v).unwrap_or_else(|e| panic!("{v}: {e}"))]),
            "--bodies" => {
                let text = std::fs::read(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
                let lines: Vec<Vec<u8>> = text
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                    .map(<[u8]>::to_vec)
                    .collect();
                assert!(!lines.is_empty(), "{v}: no bodies");
                bodies = Some(lines);
            }
            "--rotate" => rotate = Some(v.parse::<f64>().expect("--rotate SECS")),
            "--token" => token = Some(v),
            "--path" => path = v,
            "--expect" => expect = Some(v),
            other => panic!("unknown argument {other}"),
        }
    }
    let addr = addr.expect("--addr is required");
    assert!(addr.ip().is_loopback(), "loadgen only sends to loopback, not {addr}");
    assert!(rate > 0.0 && duration > 0.0 && connections > 0);
    assert!(rotate.is_none_or(|r| r > 0.0), "--rotate must be > 0");
    Args {
        addr,
        rate,
        duration,
        warmup,
        connections,
        bodies: bodies.expect("--body FILE or --bodies FILE is required"),
        rotate,
        token,
        path,
        expect,
    }
}

/// What one connection measured.
#[derive(Default)]
struct Samples {
    /// From scheduled time to the end of the answer, ns.
    latency: Vec<u64>,
    /// From the actual send to the end of the answer, ns.
    service: Vec<u64>,
    /// How late the send was after its scheduled time, ns.
    lag: Vec<u64>,
    /// Answers received in the measured window.
    ok: u64,
    /// Answers that were not 200, or not the expected effect.
    bad: u64,
    /// Broken connections (reconnected).
    io_errors: u64,
    /// Requests never sent because the run hit its deadline (the server
    /// fell so far behind that the schedule could not be finished).
    missed: u64,
    /// When the last answer arrived.
    last: Option<Instant>,
}

/// Reads one HTTP/1.1 response with a Content-Length; returns (status, body).
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end]).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, buf[header_end..header_end + length].to_vec()))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// The bytes of one request carrying `body`.
fn http_request(a: &Args, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        a.path,
        a.addr,
        body.len()
    );
    if let Some(t) = &a.token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    request
}

/// What request `i`, scheduled `offset` seconds after the start, sends.
enum Requests {
    /// Built once: request `i` sends `fixed[i mod len]`.
    Fixed(Vec<Vec<u8>>),
    /// `--rotate`: built for each request from the body templates.
    Rotating { templates: Vec<String>, period: f64 },
}

impl Requests {
    fn get(&self, a: &Args, i: u64, offset: f64) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Requests::Fixed(v) => std::borrow::Cow::Borrowed(&v[(i % v.len() as u64) as usize]),
            Requests::Rotating { templates, period } => {
                let epoch = (offset / period).floor() as u64;
                let body = templates[(i % templates.len() as u64) as usize].replace("{epoch}", &epoch.to_string());
                std::borrow::Cow::Owned(http_request(a, body.as_bytes()))
            }
        }
    }
}

fn main() {
    let a = std::sync::Arc::new(parse_args());
    let requests = std::sync::Arc::new(match a.rotate {
        None => Requests::Fixed(a.bodies.iter().map(|b| http_request(&a, b)).collect()),
        Some(period) => Requests::Rotating {
            templates: a
                .bodies
                .iter()
                .map(|b| String::from_utf8(b.clone()).expect("--rotate needs UTF-8 bodies"))
                .collect(),
            period,
        },
    });
    let expect = a.expect.as_ref().map(|e| format!("\"effect\":\"{e}\""));

    let total = (a.rate * (a.warmup + a.duration)).round() as u64;
    let interval = 1.0 / a.rate;
    let c = a.connections as u64;
    // Every connection is open before the clock starts.
    let streams: Vec<TcpStream> = (0..a.connections).map(|_| connect(a.addr)).collect();
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    // Bounded in time whatever the server does: what is still unsent 10 s
    // after the schedule's end is counted as missed.
    let deadline = start + Duration::from_secs_f64(a.warmup + a.duration + 10.0);

    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, mut stream)| {
            let requests = requests.clone();
            let a = a.clone();
            let expect = expect.clone();
            let addr = a.addr;
            std::thread::spawn(move || {
                let mut s = Samples::default();
                let mut buf = Vec::with_capacity(4096);
                let mut i = k as u64;
                while i < total {
                    if Instant::now() > deadline {
                        s.missed += (total - i).div_ceil(c);
                        break;
                    }
                    let offset = i as f64 * interval;
                    let scheduled = start + Duration::from_secs_f64(offset);
                    let request = requests.get(&a, i, offset);
                    let now = Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    let sent = Instant::now();
                    let result = stream
                        .write_all(&request)
                        .and_then(|()| read_response(&mut stream, &mut buf));
                    let done = Instant::now();
                    let measured = scheduled >= measure_from;
                    match result {
                        Ok((status, body)) => {
                            if measured {
                                s.latency.push((done - scheduled).as_nanos() as u64);
                                s.service.push((done - sent).as_nanos() as u64);
                                s.lag.push((sent - scheduled).as_nanos() as u64);
                                let good = status == 200
                                    && expect
                                        .as_ref()
                                        .is_none_or(|e| body.windows(e.len()).any(|w| w == e.as_bytes()));
                                if good {
                                    s.ok += 1;
                                } else {
                                    if s.bad == 0 {
                                        eprintln!("unexpected answer {status}: {}", String::from_utf8_lossy(&body));
                                    }
                                    s.bad += 1;
                                }
                                s.last = Some(done);
                            }
                        }
                        Err(e) => {
                            if s.io_errors == 0 {
                                eprintln!("connection {k}: {e}; reconnecting");
                            }
                            s.io_errors += 1;
                            stream = connect(addr);
                        }
                    }
                    i += c;
                }
                s
            })
        })
        .collect();

    let mut all = Samples::default();
    for h in handles {
        let s = h.join().expect("a connection thread panicked");
        all.latency.extend(s.latency);
        all.service.extend(s.service);
        all.lag.extend(s.lag);
        all.ok += s.ok;
        all.bad += s.bad;
        all.io_errors += s.io_errors;
        all.missed += s.missed;
        all.last = all.last.max(s.last);
    }
    all.latency.sort_unstable();
    all.service.sort_unstable();
    all.lag.sort_unstable();
    let answered = all.ok + all.bad;
    let elapsed = all.last.map_or(f64::NAN, |l| (l - measure_from).as_secs_f64());
    let achieved = answered as f64 / elapsed;
    let p = |v: &[u64], q| percentile(v, q);
    println!(
        "target {:.0} req/s, achieved {achieved:.0} req/s over {elapsed:.1} s ({answered} answers, {} bad, {} io errors, {} missed, {} connections)",
        a.rate, all.bad, all.io_errors, all.missed, a.connections
    );
    for (name, v) in [
        ("latency (from schedule)", &all.latency),
        ("service (from send)", &all.service),
        ("send lag", &all.lag),
    ] {
        println!(
            "{name:<24} p50 {:>9.1} µs  p90 {:>9.1}  p99 {:>9.1}  p99.9 {:>9.1}  max {:>9.1}",
            p(v, 50.0),
            p(v, 90.0),
            p(v, 99.0),
            p(v, 99.9),
            p(v, 100.0)
        );
    }
    println!(
        "RESULT target={:.0} achieved={achieved:.0} answered={answered} bad={} io_errors={} missed={} p50={:.1} p90={:.1} p99={:.1} p999={:.1} max={:.1} svc_p50={:.1} svc_p99={:.1} lag_p99={:.1}",
        a.rate,
        all.bad,
        all.io_errors,
        all.missed,
        p(&all.latency, 50.0),
        p(&all.latency, 90.0),
        p(&all.latency, 99.0),
        p(&all.latency, 99.9),
        p(&all.latency, 100.0),
        p(&all.service, 50.0),
        p(&all.service, 99.0),
        p(&all.lag, 99.0),
    );
}
