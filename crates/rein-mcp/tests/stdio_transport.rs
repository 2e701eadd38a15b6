//! The stdio transport against real child processes (small Python servers
//! written into a temporary folder), and the gateway's own stdin/stdout
//! loop over in-memory pipes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use bytes::Bytes;
use rein_mcp::jsonrpc::{Id, Kind, Message};
use rein_mcp::proxy::SessionHandle;
use rein_mcp::stdio::{connect_child, serve_lines};
use rein_mcp::upstream::{Limits, Link, UpstreamError, UpstreamEvent, UpstreamSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// A bound on waiting for an event, so a broken transport fails the test
/// instead of hanging it. Tests assert events, not how long they took.
const WAIT: Duration = Duration::from_secs(20);

fn script(dir: &Path, name: &str, body: &str) -> UpstreamSpec {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    UpstreamSpec::Stdio {
        program: "python3".into(),
        args: vec!["-u".into(), path.display().to_string()],
        env: vec![],
        cwd: Some(dir.to_path_buf()),
    }
}

async fn next_event(link: &mut Link) -> UpstreamEvent {
    tokio::time::timeout(WAIT, link.rx.recv())
        .await
        .expect("an event in time")
        .expect("the link is still open")
}

fn message(text: &str) -> Message {
    Message::parse(Bytes::from(text.to_string())).unwrap()
}

const ECHO: &str = r#"
import sys, json
out = sys.stdout
# A notification with CRLF, then blank lines: both are fine on the wire.
out.write('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hello"}}\r\n')
out.write('\n   \n')
out.flush()
for line in sys.stdin:
    msg = json.loads(line)
    if "id" in msg and "method" in msg:
        out.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"raw": line}}) + "\n")
        out.flush()
sys.exit(0)
"#;

#[tokio::test]
async fn echo_server_messages_in_order_then_closed_after_stdin_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut link = connect_child(&script(dir.path(), "echo.py", ECHO), &Limits::default())
        .await
        .unwrap();

    match next_event(&mut link).await {
        UpstreamEvent::Message(m) => {
            assert_eq!(m.method(), Some("notifications/message"));
            // The bytes as received, without the CRLF.
            assert!(m.bytes.ends_with(b"}"));
        }
        other => panic!("{other:?}"),
    }

    link.tx
        .send(message(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
        .await
        .unwrap();
    // Pretty-printed JSON (as an HTTP peer may send it) goes out as one line.
    link.tx
        .send(message(
            "{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": \"two\",\n  \"method\": \"tools/list\"\n}",
        ))
        .await
        .unwrap();
    for expected in [Id::Int(1), Id::Str("two".into())] {
        match next_event(&mut link).await {
            UpstreamEvent::Message(m) => {
                assert_eq!(m.id(), Some(&expected));
                let raw = m.json["result"]["raw"].as_str().unwrap();
                assert_eq!(raw.matches('\n').count(), 1, "one line: {raw:?}");
                assert!(raw.ends_with('\n') && !raw.contains('\r'), "{raw:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    // Closing our side closes the server's stdin; it exits on its own.
    let Link { tx, mut rx } = link;
    drop(tx);
    let closed = tokio::time::timeout(WAIT, rx.recv()).await.unwrap();
    match closed {
        Some(UpstreamEvent::Closed(reason)) => {
            assert_eq!(reason, "server `python3` exited with status 0")
        }
        other => panic!("{other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn garbage_is_a_fault_and_the_link_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
import sys
sys.stdout.write('this is not json \x1b[31m "quoted"\n')
sys.stdout.write('[{"jsonrpc":"2.0","method":"a"}]\n')
sys.stdout.write('{"jsonrpc":"2.0","method":"notifications/ok"}\n')
sys.stdout.flush()
sys.stdin.read()
"#;
    let mut link = connect_child(&script(dir.path(), "garbage.py", body), &Limits::default())
        .await
        .unwrap();
    match next_event(&mut link).await {
        UpstreamEvent::Fault(reason) => {
            assert!(
                reason.starts_with("server `python3` sent a line that is not a JSON-RPC message"),
                "{reason}"
            );
            // Quoted and escaped: no raw control character reaches a log.
            assert!(reason.contains(r#""this is not json \x1b[31m \"quoted\"""#), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match next_event(&mut link).await {
        UpstreamEvent::Fault(reason) => assert!(reason.contains("batch"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match next_event(&mut link).await {
        UpstreamEvent::Message(m) => assert_eq!(m.method(), Some("notifications/ok")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_50_mb_line_is_a_fault_and_the_next_message_still_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
import sys
out = sys.stdout.buffer
out.write(b'{"jsonrpc":"2.0","id":1,"result":"')
chunk = b"x" * (1 << 20)
for _ in range(50):
    out.write(chunk)
out.write(b'"}\n')
out.write(b'{"jsonrpc":"2.0","id":2,"result":{}}\n')
out.flush()
sys.stdin.read()
"#;
    let mut link = connect_child(&script(dir.path(), "huge.py", body), &Limits::default())
        .await
        .unwrap();
    match next_event(&mut link).await {
        UpstreamEvent::Fault(reason) => assert_eq!(
            reason,
            "server `python3` sent a message over 16777216 bytes (the gateway's limit); it was dropped"
        ),
        other => panic!("{other:?}"),
    }
    match next_event(&mut link).await {
        UpstreamEvent::Message(m) => assert_eq!(m.id(), Some(&Id::Int(2))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_exits_mid_call_is_closed_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
import sys
sys.stdin.readline()
sys.stdout.write('{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}\n')
sys.stdout.flush()
sys.exit(3)
"#;
    let mut link = connect_child(&script(dir.path(), "dies.py", body), &Limits::default())
        .await
        .unwrap();
    link.tx
        .send(message(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#,
        ))
        .await
        .unwrap();
    // What it wrote before exiting comes first, then Closed, then the end.
    match next_event(&mut link).await {
        UpstreamEvent::Message(m) => assert_eq!(m.method(), Some("notifications/progress")),
        other => panic!("{other:?}"),
    }
    match next_event(&mut link).await {
        UpstreamEvent::Closed(reason) => assert_eq!(reason, "server `python3` exited with status 3"),
        other => panic!("{other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, link.rx.recv()).await.unwrap().is_none());
}

/// Whether a process is still running (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{} never written", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_reaches_a_server_that_ignores_stdin_and_sigterm_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids: PathBuf = dir.path().join("pids");
    let body = format!(
        r#"
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
with open({pids:?} + ".tmp", "w") as f:
    f.write("%d %d\n" % (os.getpid(), child.pid))
os.rename({pids:?} + ".tmp", {pids:?})
while True:
    time.sleep(1)
"#,
        pids = pids.display().to_string()
    );
    let link = connect_child(&script(dir.path(), "stubborn.py", &body), &Limits::default())
        .await
        .unwrap();
    let text = wait_for_file(&pids).await;
    let ids: Vec<u32> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert!(ids.iter().all(|&pid| alive(pid)));
    // Keep the receiving half: Closed says how it ended.
    let Link { tx, mut rx } = link;
    drop(tx);
    match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
        Some(UpstreamEvent::Closed(reason)) => {
            assert_eq!(reason, "server `python3` was killed by signal 9")
        }
        other => panic!("{other:?}"),
    }
    for pid in ids {
        wait_gone(pid).await;
    }
}

#[tokio::test]
async fn shutdown_sends_sigterm_before_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
import sys, time
sys.stdout.write('{"jsonrpc":"2.0","method":"notifications/ready"}\n')
sys.stdout.flush()
while True:
    time.sleep(1)
"#;
    let mut link = connect_child(&script(dir.path(), "deaf.py", body), &Limits::default())
        .await
        .unwrap();
    match next_event(&mut link).await {
        UpstreamEvent::Message(m) => assert_eq!(m.method(), Some("notifications/ready")),
        other => panic!("{other:?}"),
    }
    let Link { tx, mut rx } = link;
    drop(tx);
    match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
        Some(UpstreamEvent::Closed(reason)) => {
            assert_eq!(reason, "server `python3` was killed by signal 15")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_whole_link_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let body = format!(
        r#"
import os, time
with open({p:?} + ".tmp", "w") as f:
    f.write("%d\n" % os.getpid())
os.rename({p:?} + ".tmp", {p:?})
while True:
    time.sleep(1)
"#,
        p = pid_file.display().to_string()
    );
    let link = connect_child(&script(dir.path(), "idle.py", &body), &Limits::default())
        .await
        .unwrap();
    let pid: u32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
    assert!(alive(pid));
    drop(link);
    wait_gone(pid).await;
}

#[tokio::test]
async fn a_program_that_does_not_exist_is_a_spawn_error() {
    let spec = UpstreamSpec::Stdio {
        program: "rein-no-such-server-program".into(),
        args: vec![],
        env: vec![],
        cwd: None,
    };
    match connect_child(&spec, &Limits::default()).await {
        Err(UpstreamError::Spawn { program, .. }) => assert_eq!(program, "rein-no-such-server-program"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("spawned"),
    }
}

#[tokio::test]
async fn bytes_that_would_break_the_framing_are_refused_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut link = connect_child(&script(dir.path(), "echo.py", ECHO), &Limits::default())
        .await
        .unwrap();
    let _hello = next_event(&mut link).await;
    // A message whose bytes do not match what was parsed (two messages on
    // two lines): written as it is, the second would reach the server.
    let mut smuggler = message(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#);
    smuggler.bytes = Bytes::from_static(
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}",
    );
    link.tx.send(smuggler).await.unwrap();
    link.tx
        .send(message(r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#))
        .await
        .unwrap();
    match next_event(&mut link).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(5));
            assert!(reason.contains("raw line break"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The next message is answered; id 6 never reached the server.
    match next_event(&mut link).await {
        UpstreamEvent::Message(m) => assert_eq!(m.id(), Some(&Id::Int(8))),
        other => panic!("{other:?}"),
    }
}

/// A session stand-in: what the client loop sends to the gateway, and a
/// way to send messages to the client.
fn session() -> (SessionHandle, mpsc::Receiver<Message>, mpsc::Sender<Message>) {
    let (to_gateway, gateway_rx) = mpsc::channel(16);
    let (gateway_tx, from_gateway) = mpsc::channel(16);
    (
        SessionHandle {
            to_gateway,
            from_gateway,
        },
        gateway_rx,
        gateway_tx,
    )
}

#[tokio::test]
async fn the_client_loop_answers_bad_lines_and_carries_messages_both_ways() {
    let (handle, mut gateway_rx, gateway_tx) = session();
    let (mut client_in, input) = tokio::io::duplex(1 << 16);
    let (output, client_out) = tokio::io::duplex(1 << 16);
    let limits = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    let serve = tokio::spawn(async move { serve_lines(input, output, handle, &limits).await });
    let mut out = BufReader::new(client_out).lines();

    client_in
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}\r\n\n")
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, gateway_rx.recv()).await.unwrap().unwrap();
    assert_eq!(first.method(), Some("initialize"));
    assert!(first.bytes.ends_with(b"{}}"), "CR stripped");

    let long = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":\"{}\"}}\n",
        "y".repeat(200)
    );
    for bad in [
        "not json\n",
        "[{\"jsonrpc\":\"2.0\",\"method\":\"a\"}]\n",
        long.as_str(),
    ] {
        client_in.write_all(bad.as_bytes()).await.unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(WAIT, out.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        answers.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    assert!(answers.iter().all(|a| a["id"].is_null() && a["jsonrpc"] == "2.0"));
    assert_eq!(answers[0]["error"]["code"], -32700);
    assert_eq!(answers[1]["error"]["code"], -32600);
    assert_eq!(answers[2]["error"]["code"], -32600);
    assert!(answers[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("over 100 bytes"));

    // The gateway's messages reach the client, one line each.
    gateway_tx
        .send(message("{\n\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"))
        .await
        .unwrap();
    let line = tokio::time::timeout(WAIT, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(line, "{ \"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");

    // The loop goes on after bad lines.
    client_in
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    let next = tokio::time::timeout(WAIT, gateway_rx.recv()).await.unwrap().unwrap();
    assert_eq!(
        next.kind,
        Kind::Notification {
            method: "notifications/initialized".into()
        }
    );

    // End of stdin ends the session; what the gateway still sends is
    // written before the loop returns.
    drop(client_in);
    assert!(tokio::time::timeout(WAIT, gateway_rx.recv()).await.unwrap().is_none());
    gateway_tx
        .send(message(r#"{"jsonrpc":"2.0","method":"notifications/last"}"#))
        .await
        .unwrap();
    drop(gateway_tx);
    tokio::time::timeout(WAIT, serve).await.unwrap().unwrap().unwrap();
    let line = out.next_line().await.unwrap().unwrap();
    assert_eq!(line, r#"{"jsonrpc":"2.0","method":"notifications/last"}"#);
    assert!(out.next_line().await.unwrap().is_none());
}

/// The stdio link's own round trip (`cat` as the server: each request comes
/// back as a message), for the latency table:
/// `cargo test --release -p rein-mcp --test stdio_transport -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn round_trip_through_a_stdio_link() {
    let spec = UpstreamSpec::Stdio {
        program: "cat".into(),
        args: vec![],
        env: vec![],
        cwd: None,
    };
    let mut link = connect_child(&spec, &Limits::default()).await.unwrap();
    let request = message(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#,
    );
    let mut times = Vec::new();
    for round in 0..20_000 {
        let start = Instant::now();
        link.tx.send(request.clone()).await.unwrap();
        match next_event(&mut link).await {
            UpstreamEvent::Message(_) => {}
            other => panic!("{other:?}"),
        }
        if round >= 1_000 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    println!(
        "stdio link round trip over {} calls: median {:?}, p99 {:?}",
        times.len(),
        at(0.5),
        at(0.99)
    );
}
