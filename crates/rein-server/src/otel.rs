//! OpenTelemetry traces of decisions (`rein serve --otlp-endpoint`) and
//! the caller's W3C `traceparent`.
//!
//! A `traceparent` header on `/v1/decide`, `/v1/outcome` and
//! `/v1/hooks/{agent}` that is valid (version `00`, lowercase, ids not
//! zero: [`TraceParent::parse`]) is kept in each audit record the request
//! makes (`trace`), exported or not, so that a decision can be found from
//! the agent's own trace (`GET /v1/audit?trace=<trace id>`). An invalid
//! one is ignored, as the W3C asks; it never blocks.
//!
//! With an endpoint, each decision is also a trace sent over OTLP
//! HTTP/protobuf: a root span `rein.decide` (kind server; a child of the
//! caller's span when it sent a valid `traceparent`) with the child spans
//! `rein.contract`, `rein.policy`, `rein.state` and `rein.audit.append`,
//! built after the decision from the times the runtime noted (the engine
//! knows nothing of tracing). Spans carry the decision id, phase, action,
//! effect and audit sequence number, never a request's values. Exported
//! in batches from the SDK's own thread; a full queue drops spans, never
//! delays a decision.
//!
//! Without an endpoint and without a `traceparent` (the default) a request
//! costs one header lookup and a branch.

use axum::http::{HeaderMap, HeaderName};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use rein_runtime::trace::{DecisionSpan, SpanLog, TraceParent, TraceScope};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The header W3C Trace Context names (a constant name: looked up
/// without parsing it on every request).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The caller's trace context: the request's one `traceparent` header, if
/// valid. Several headers, or one that is not a version-`00` value, are
/// ignored.
pub fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    TraceParent::parse(value.as_bytes())
}

/// The exporter of decision traces.
pub(crate) struct Otel {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Otel {
    /// Starts exporting to the collector at `endpoint` (its base URL:
    /// `/v1/traces` is added, as for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub(crate) fn start(endpoint: &url::Url) -> anyhow::Result<Otel> {
        // The path gets `/v1/traces`; a query stays after it.
        let mut traces = endpoint.clone();
        traces.set_path(&format!("{}/v1/traces", endpoint.path().trim_end_matches('/')));
        let traces = traces.to_string();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces)
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("rein").build())
            .build();
        let tracer = provider.tracer("rein");
        Ok(Otel { provider, tracer })
    }

    /// Queues the spans of `decisions`, made by a request on `route` whose
    /// caller sent `parent`.
    pub(crate) fn export(&self, route: &'static str, parent: Option<&TraceParent>, decisions: Vec<DecisionSpan>) {
        let parent_cx = match parent.and_then(remote_context) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        for d in decisions {
            let mut attributes = vec![
                KeyValue::new("http.route", route),
                KeyValue::new("rein.decision_id", d.decision_id),
                KeyValue::new("rein.phase", d.phase),
                KeyValue::new("rein.action", d.action),
                KeyValue::new("rein.effect", d.effect.as_str()),
            ];
            if let Some(seq) = d.audit_seq.and_then(|s| i64::try_from(s).ok()) {
                attributes.push(KeyValue::new("rein.audit_seq", seq));
            }
            let root = self
                .tracer
                .span_builder("rein.decide")
                .with_kind(SpanKind::Server)
                .with_start_time(d.start)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &parent_cx);
            let cx = parent_cx.with_span(root);
            for step in d.steps {
                let mut span = self
                    .tracer
                    .span_builder(step.name)
                    .with_kind(SpanKind::Internal)
                    .with_start_time(step.start)
                    .start_with_context(&self.tracer, &cx);
                span.end_with_timestamp(step.end);
            }
            cx.span().end_with_timestamp(d.end);
        }
    }

    /// Sends what is queued now (blocking: call it off the async workers).
    pub(crate) fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "the decision traces could not be flushed");
        }
    }

    /// Sends what is queued and stops (blocking).
    pub(crate) fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "the trace exporter did not stop cleanly");
        }
    }
}

/// The caller's span as a remote parent.
fn remote_context(p: &TraceParent) -> Option<SpanContext> {
    let trace_id = TraceId::from_hex(p.trace_id()).ok()?;
    let span_id = SpanId::from_hex(p.parent_id()).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(p.flags()),
        true,
        TraceState::default(),
    ))
}

/// Runs `decide` (the runtime's work for one request on `route`) with the
/// caller's trace context from `headers`, and exports its spans if traces
/// are exported. Without either, `decide` runs as it is.
///
/// Not an `async fn`: one would hold `decide` and the scope around it at
/// once, doubling the handler's future, which is moved into a box per
/// request (measured: about 20,000 more instructions of `memcpy` a
/// decision). Untraced, the answer is `decide` itself; traced, the
/// wrapper is boxed, one allocation for a request that asked for it.
pub(crate) fn traced<'a, F: Future + Send + 'a>(
    otel: Option<&'a Otel>,
    headers: &HeaderMap,
    route: &'static str,
    decide: F,
) -> futures_util::future::Either<F, std::pin::Pin<Box<dyn Future<Output = F::Output> + Send + 'a>>> {
    let parent = traceparent(headers);
    if parent.is_none() && otel.is_none() {
        return futures_util::future::Either::Left(decide);
    }
    futures_util::future::Either::Right(Box::pin(async move {
        let log = otel.map(|_| Arc::new(SpanLog::default()));
        let scope = TraceScope {
            parent: parent.clone(),
            spans: log.clone(),
        };
        let out = rein_runtime::trace::scope(scope, decide).await;
        if let (Some(otel), Some(log)) = (otel, log) {
            otel.export(route, parent.as_ref(), log.take());
        }
        out
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn one_valid_header_is_taken() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = HeaderMap::new();
        assert!(traceparent(&h).is_none());
        h.insert(TRACEPARENT, HeaderValue::from_static(good));
        assert_eq!(traceparent(&h).unwrap().as_str(), good);
        // Two of them: ignored.
        h.append(TRACEPARENT, HeaderValue::from_static(good));
        assert!(traceparent(&h).is_none());
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        );
        assert!(traceparent(&h).is_none());
    }

    #[test]
    fn the_remote_parent_is_the_callers_span() {
        let p = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let sc = remote_context(&p).unwrap();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
    }
}
