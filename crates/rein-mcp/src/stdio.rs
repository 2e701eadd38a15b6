//! stdio: a server as a child process (one JSON-RPC message per line on its
//! stdin and stdout, stderr passed through to the gateway's), and the
//! gateway's own stdin and stdout as the client of a stdio gateway.
//!
//! Lines are read with a size bound: a line longer than
//! [`Limits::max_message_bytes`] is read to its end without being kept, so a
//! peer cannot make the gateway buffer more than one message's worth.

use crate::jsonrpc::{self, Message};
use crate::proxy::SessionHandle;
use crate::upstream::{Limits, Link, UpstreamError, UpstreamEvent, UpstreamSpec};
use bytes::Bytes;
use std::borrow::Cow;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages queued each way between a link's tasks and the session.
const CHANNEL_DEPTH: usize = 64;
/// How long a server gets to exit after its stdin is closed, and again
/// after SIGTERM, before the next step of the shutdown.
const SHUTDOWN_STEP: Duration = Duration::from_secs(2);
/// How long the rest of a server's output is read after it exited. Past
/// it, what still holds the server's stdout (a process it left behind) is
/// killed with its process group.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long a stdio client's session may take to finish once its stdin
/// ended (answers in flight written, the server shut down).
const CLIENT_EOF_GRACE: Duration = Duration::from_secs(10);
/// How much of a refused line a fault quotes.
const QUOTE_BYTES: usize = 200;

/// Starts a stdio server: the program in its own process group (so a
/// signal to the gateway's terminal group, such as Ctrl-C, reaches the
/// gateway only, which then shuts the server down once), stdin and stdout
/// piped, stderr inherited.
///
/// Events: each line the server writes becomes [`UpstreamEvent::Message`]
/// in order; a line over the size bound or one that is not JSON-RPC is an
/// [`UpstreamEvent::Fault`] at its place in that order; when the server
/// exits, [`UpstreamEvent::Closed`] comes after everything it wrote, and
/// the receiver ends. Dropping the link (either half) shuts the server
/// down: stdin closed, 2 s, SIGTERM to its process group, 2 s, SIGKILL.
pub async fn connect_child(spec: &UpstreamSpec, limits: &Limits) -> Result<Link, UpstreamError> {
    let UpstreamSpec::Stdio {
        program,
        args,
        env,
        cwd,
    } = spec
    else {
        return Err(UpstreamError::Spawn {
            program: spec.describe(),
            reason: "not a stdio server".into(),
        });
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|e| UpstreamError::Spawn {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(UpstreamError::Spawn {
            program: program.clone(),
            reason: "its stdin or stdout could not be piped".into(),
        });
    };

    let (to_server, from_link) = mpsc::channel(CHANNEL_DEPTH);
    let (events, events_rx) = mpsc::channel(CHANNEL_DEPTH);
    let name = program.clone();
    let reader = tokio::spawn(read_server(
        stdout,
        limits.max_message_bytes,
        name.clone(),
        events.clone(),
    ));
    let writer = tokio::spawn(write_server(stdin, from_link, name.clone(), events.clone()));
    tokio::spawn(supervise(child, name, reader, writer, events));
    Ok(Link {
        tx: to_server,
        rx: events_rx,
    })
}

/// Reads the server's stdout, line by line, into events.
async fn read_server(stdout: ChildStdout, max: usize, program: String, events: mpsc::Sender<UpstreamEvent>) {
    let mut lines = LineReader::new(stdout, max);
    loop {
        let event = match lines.next().await {
            Ok(Line::End) => return,
            Ok(Line::TooLong) => UpstreamEvent::Fault(format!(
                "server `{program}` sent a message over {max} bytes (the gateway's limit); it was dropped"
            )),
            Ok(Line::Text(text)) => {
                if is_blank(&text) {
                    continue;
                }
                let bytes = Bytes::from(text);
                match Message::parse(bytes.clone()) {
                    Ok(message) => UpstreamEvent::Message(message),
                    Err(e) => UpstreamEvent::Fault(format!(
                        "server `{program}` sent a line that is not a JSON-RPC message ({e}): {}",
                        quote(&bytes)
                    )),
                }
            }
            Err(e) => {
                let _ = events
                    .send(UpstreamEvent::Fault(format!(
                        "could not read from server `{program}`: {e}"
                    )))
                    .await;
                return;
            }
        };
        // Nobody listening (the link was dropped): keep reading, so the
        // server never blocks on a full pipe while it is shut down.
        let _ = events.send(event).await;
    }
}

/// Writes each message to the server's stdin as one line. Ends when every
/// sender of the link is gone; the stdin it owns is then closed.
async fn write_server(
    stdin: ChildStdin,
    mut messages: mpsc::Receiver<Message>,
    program: String,
    events: mpsc::Sender<UpstreamEvent>,
) {
    let mut out = BufWriter::new(stdin);
    let mut broken = false;
    while let Some(first) = messages.recv().await {
        let mut next = Some(first);
        // Everything already queued goes out in one flush.
        while let Some(message) = next.take() {
            if broken {
                fail_request(
                    &message,
                    &events,
                    format!("server `{program}` no longer reads its stdin"),
                )
                .await;
            } else {
                match line_bytes(&message) {
                    Ok(bytes) => {
                        if let Err(e) = write_line(&mut out, &bytes).await {
                            broken = true;
                            let _ = events
                                .send(UpstreamEvent::Fault(format!(
                                    "could not write to server `{program}`: {e}"
                                )))
                                .await;
                        }
                    }
                    Err(reason) => fail_request(&message, &events, reason).await,
                }
            }
            next = messages.try_recv().ok();
        }
        if !broken {
            if let Err(e) = out.flush().await {
                broken = true;
                let _ = events
                    .send(UpstreamEvent::Fault(format!(
                        "could not write to server `{program}`: {e}"
                    )))
                    .await;
            }
        }
    }
}

async fn write_line<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes).await?;
    out.write_all(b"\n").await
}

/// A message that was not sent: a request is answered with `reason`; a
/// notification or response has no one to answer and is only logged.
async fn fail_request(message: &Message, events: &mpsc::Sender<UpstreamEvent>, reason: String) {
    match &message.kind {
        jsonrpc::Kind::Request { id, .. } => {
            let _ = events
                .send(UpstreamEvent::RequestFailed { id: id.clone(), reason })
                .await;
        }
        _ => tracing::warn!("a message to the server was not sent: {reason}"),
    }
}

/// Owns the child: waits for it to exit or for the link to be dropped,
/// shuts it down, drains its output and reports [`UpstreamEvent::Closed`].
async fn supervise(
    mut child: Child,
    program: String,
    mut reader: JoinHandle<()>,
    mut writer: JoinHandle<()>,
    events: mpsc::Sender<UpstreamEvent>,
) {
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    let mut reader_done = false;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = &mut writer => shut_down(&mut child, group).await,
        () = events.closed() => {
            writer.abort();
            shut_down(&mut child, group).await
        }
        _ = &mut reader => {
            // Its stdout is closed: it can no longer answer. Give it the
            // time to exit on its own, then stop it.
            reader_done = true;
            match tokio::time::timeout(SHUTDOWN_STEP, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    writer.abort();
                    shut_down(&mut child, group).await
                }
            }
        }
    };
    writer.abort();
    if !reader_done && tokio::time::timeout(DRAIN_AFTER_EXIT, &mut reader).await.is_err() {
        // A process the server left behind still holds its stdout.
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        reader.abort();
    }
    let reason = match status {
        Ok(status) => format!("server `{program}` {}", describe_exit(status)),
        Err(e) => format!("server `{program}` could not be waited for: {e}"),
    };
    let _ = events.send(UpstreamEvent::Closed(reason)).await;
}

/// Stops a server whose link is gone: its stdin is already closed (the
/// writer is done or aborted); then SIGTERM, then SIGKILL, to its whole
/// process group.
async fn shut_down(child: &mut Child, group: Option<rustix::process::Pid>) -> io::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(SHUTDOWN_STEP, child.wait()).await {
        return status;
    }
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    }
    if let Ok(status) = tokio::time::timeout(SHUTDOWN_STEP, child.wait()).await {
        return status;
    }
    match group {
        Some(group) => {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        None => {
            let _ = child.start_kill();
        }
    }
    child.wait().await
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("exited with status {status}"),
    }
}

/// Serves one session over the gateway's own stdin and stdout until stdin
/// ends: each line a message to the gateway (an invalid one answered with
/// an error, id null), each message from the gateway a line on stdout.
///
/// Tokio reads stdin on a blocking thread that cannot be cancelled: when
/// this returns before stdin ended (the session ended first, stdout
/// broke), end the process instead of waiting for the runtime to shut
/// down, which would wait for a line that may never come.
pub async fn serve_stdio(handle: crate::proxy::SessionHandle, limits: &Limits) -> std::io::Result<()> {
    serve_lines(tokio::io::stdin(), tokio::io::stdout(), handle, limits).await
}

/// [`serve_stdio`] over any reader and writer: lines from `input` go to
/// the session, the session's messages go to `output`, one per line,
/// flushed. `output` carries nothing but MCP messages. Returns when
/// `input` ends and the session is done (or [`CLIENT_EOF_GRACE`] passed),
/// or when the session ends first.
pub async fn serve_lines<R, W>(input: R, output: W, handle: SessionHandle, limits: &Limits) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let SessionHandle {
        to_gateway,
        from_gateway,
    } = handle;
    // The reader's own answers (to lines that are not messages) and the
    // gateway's messages share the one writer, so lines never interleave.
    let (local_tx, local_rx) = mpsc::channel(CHANNEL_DEPTH);
    let mut writer = tokio::spawn(write_client(output, from_gateway, local_rx));
    let read = read_client(input, to_gateway, local_tx, limits.max_message_bytes);
    tokio::pin!(read);
    tokio::select! {
        read_result = &mut read => {
            // Stdin ended: `to_gateway` is dropped, which ends the session;
            // what it still sends is written until it is done.
            let write_result = match tokio::time::timeout(CLIENT_EOF_GRACE, &mut writer).await {
                Ok(joined) => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
                Err(_) => {
                    writer.abort();
                    Ok(())
                }
            };
            read_result.and(write_result)
        }
        joined = &mut writer => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
    }
}

async fn read_client<R: AsyncRead + Unpin>(
    input: R,
    to_gateway: mpsc::Sender<Message>,
    answers: mpsc::Sender<Message>,
    max: usize,
) -> io::Result<()> {
    let mut lines = LineReader::new(input, max);
    loop {
        let answer = match lines.next().await? {
            Line::End => return Ok(()),
            Line::TooLong => jsonrpc::error(
                None,
                jsonrpc::code::INVALID_REQUEST,
                format!("message over {max} bytes (the gateway's limit); it was dropped"),
            ),
            Line::Text(text) => {
                if is_blank(&text) {
                    continue;
                }
                match Message::parse(Bytes::from(text)) {
                    Ok(message) => {
                        if to_gateway.send(message).await.is_err() {
                            // The session is over.
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => jsonrpc::error(None, e.code(), e.to_string()),
                }
            }
        };
        if answers.send(answer).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_client<W: AsyncWrite + Unpin>(
    output: W,
    mut from_gateway: mpsc::Receiver<Message>,
    mut answers: mpsc::Receiver<Message>,
) -> io::Result<()> {
    let mut out = BufWriter::new(output);
    let mut answers_open = true;
    loop {
        let message = tokio::select! {
            message = from_gateway.recv() => match message {
                Some(message) => message,
                None => break,
            },
            answer = answers.recv(), if answers_open => match answer {
                Some(answer) => answer,
                None => {
                    answers_open = false;
                    continue;
                }
            },
        };
        match line_bytes(&message) {
            Ok(bytes) => write_line(&mut out, &bytes).await?,
            Err(reason) => tracing::warn!("a message to the client was not sent: {reason}"),
        }
        out.flush().await?;
    }
    // The session is done; answers to the client's last invalid lines may
    // still be queued.
    while let Ok(answer) = answers.try_recv() {
        if let Ok(bytes) = line_bytes(&answer) {
            write_line(&mut out, &bytes).await?;
        }
    }
    out.flush().await
}

/// A message's bytes as one line of stdio framing (without the newline).
///
/// A message may hold raw line breaks when it came from an HTTP peer
/// (pretty-printed JSON). In valid JSON a raw CR or LF can only be
/// whitespace between tokens (inside strings they must be escaped), so
/// turning each into a space keeps the same message on one line. Bytes
/// that are not valid JSON cannot be reframed safely and are refused: a
/// line break there could smuggle a second message onto the wire.
pub fn line_bytes(message: &Message) -> Result<Cow<'_, [u8]>, String> {
    let bytes = &message.bytes[..];
    if memchr::memchr2(b'\n', b'\r', bytes).is_none() {
        return Ok(Cow::Borrowed(bytes));
    }
    if rein_engine::json::parse_strict(bytes).is_err() {
        return Err("the message holds a raw line break and is not valid JSON".into());
    }
    Ok(Cow::Owned(
        bytes
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect(),
    ))
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// At most [`QUOTE_BYTES`] of `bytes`, escaped (non-printable and non-ASCII
/// bytes as `\xNN`), in quotes.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(QUOTE_BYTES)];
    let ellipsis = if bytes.len() > QUOTE_BYTES { "…" } else { "" };
    format!("\"{}{ellipsis}\"", head.escape_ascii())
}

/// One line read by a [`LineReader`].
enum Line {
    /// A line within the bound, without its `\n` or `\r\n`.
    Text(Vec<u8>),
    /// A line over the bound: reported as soon as it crosses the bound (a
    /// peer that never ends the line is still noticed), the rest of it read
    /// and dropped.
    TooLong,
    /// The input ended.
    End,
}

/// Reads lines of at most `max` bytes (a final `\r` not counted); a longer
/// line is consumed to its newline without being kept.
struct LineReader<R> {
    input: BufReader<R>,
    max: usize,
    line: Vec<u8>,
    /// Bytes of the current line were read (it may still be empty: `\r`).
    started: bool,
    /// The rest of an over-long line is being dropped.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(input: R, max: usize) -> Self {
        LineReader {
            input: BufReader::with_capacity(64 * 1024, input),
            max,
            line: Vec::new(),
            started: false,
            skipping: false,
        }
    }

    async fn next(&mut self) -> io::Result<Line> {
        loop {
            let chunk = self.input.fill_buf().await?;
            if chunk.is_empty() {
                if self.skipping || !self.started {
                    self.skipping = false;
                    return Ok(Line::End);
                }
                // A last line without a newline still counts.
                return Ok(self.finish_line());
            }
            let newline = memchr::memchr(b'\n', chunk);
            let consumed = newline.map_or(chunk.len(), |at| at + 1);
            if self.skipping {
                self.skipping = newline.is_none();
                self.input.consume(consumed);
                continue;
            }
            let part = &chunk[..newline.unwrap_or(chunk.len())];
            self.started = true;
            // One byte of slack for the `\r` of a `\r\n`.
            if self.line.len() + part.len() > self.max.saturating_add(1) {
                self.line = Vec::new();
                self.started = false;
                self.skipping = newline.is_none();
                self.input.consume(consumed);
                return Ok(Line::TooLong);
            }
            self.line.extend_from_slice(part);
            self.input.consume(consumed);
            if newline.is_some() {
                return Ok(self.finish_line());
            }
        }
    }

    fn finish_line(&mut self) -> Line {
        self.started = false;
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.max {
            return Line::TooLong;
        }
        Line::Text(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<Option<Vec<u8>>> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            match reader.next().await.unwrap() {
                Line::End => return out,
                Line::TooLong => out.push(None),
                Line::Text(t) => out.push(Some(t)),
            }
        }
    }

    #[tokio::test]
    async fn line_reader_bounds_lines() {
        let got = lines_of(b"abc\r\n\n12345\n123456\nxy", 5).await;
        assert_eq!(
            got,
            vec![
                Some(b"abc".to_vec()),
                Some(b"".to_vec()),
                Some(b"12345".to_vec()),
                None,
                Some(b"xy".to_vec())
            ]
        );
        // `\r\n` does not count against the bound; a lone trailing `\r`
        // within the slack byte is still a line end.
        assert_eq!(lines_of(b"12345\r\n", 5).await, vec![Some(b"12345".to_vec())]);
        assert_eq!(lines_of(b"123456\r\nok\n", 5).await, vec![None, Some(b"ok".to_vec())]);
        // An over-long last line without a newline.
        assert_eq!(lines_of(b"ok\n1234567", 5).await, vec![Some(b"ok".to_vec()), None]);
        assert_eq!(lines_of(b"\r\n", 5).await, vec![Some(b"".to_vec())]);
    }

    #[tokio::test]
    async fn a_line_that_never_ends_is_reported_when_it_crosses_the_bound() {
        let (mut peer, input) = tokio::io::duplex(1024);
        let mut reader = LineReader::new(input, 10);
        peer.write_all(b"01234567890123").await.unwrap();
        // The peer keeps the line open; the reader still answers.
        assert!(matches!(reader.next().await.unwrap(), Line::TooLong));
        peer.write_all(b"rest of it\nnext\n").await.unwrap();
        assert!(matches!(reader.next().await.unwrap(), Line::Text(t) if t == b"next"));
    }

    #[test]
    fn line_bytes_reframes_only_valid_json() {
        let pretty = Message::parse(Bytes::from_static(
            b"{\n  \"jsonrpc\": \"2.0\",\r\n  \"method\": \"x\"\n}",
        ))
        .unwrap();
        let line = line_bytes(&pretty).unwrap();
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        assert_eq!(rein_engine::json::parse_strict(&line).unwrap(), pretty.json);
        // Two messages in one: never written as one line, never as two.
        let mut smuggled = pretty.clone();
        smuggled.bytes = Bytes::from_static(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"y\"}",
        );
        assert!(line_bytes(&smuggled).is_err());
        let plain = Message::parse(Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}")).unwrap();
        assert!(matches!(line_bytes(&plain).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn quotes_are_bounded_and_escaped() {
        assert_eq!(quote(b"a\"\x1b\xff"), "\"a\\\"\\x1b\\xff\"");
        let long = vec![b'x'; 1000];
        let q = quote(&long);
        assert!(q.len() < 210 && q.ends_with("…\""));
    }
}
