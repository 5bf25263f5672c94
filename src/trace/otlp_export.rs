//! Mode `opentelemetry`: each traced request becomes spans that a batch
//! span processor sends to an OpenTelemetry collector over OTLP/HTTP
//! (`http://`, or `https://` checked against the system's certificate
//! authorities, `SSL_CERT_FILE` and `SSL_CERT_DIR` included), built
//! as Triton builds them: an `InferRequest` span for the whole call (the
//! frontend's moments as its events), a span named after the model from
//! REQUEST_START to REQUEST_END, and a `compute` span for the execution.
//!
//! The spans are built with the OpenTelemetry SDK once the request has
//! ended, not as `tracing` spans bridged by `tracing-opentelemetry`: their
//! bounds and events are the moments stamped on the [`RequestTrace`] as the
//! request ran (the gRPC read starts before the request is even decoded),
//! and a bridged span can only start at the moment it is created.

use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{Span, SpanContext, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};

use super::request_trace::{Activity, Record, RequestTrace};
use super::settings::OpenTelemetryConfig;

/// Which span a moment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Frontend,
    Model,
    Compute,
}

fn part_of(activity: Activity) -> Part {
    match activity {
        Activity::HttpRecvStart
        | Activity::HttpRecvEnd
        | Activity::HttpSendStart
        | Activity::HttpSendEnd
        | Activity::GrpcWaitReadStart
        | Activity::GrpcWaitReadEnd
        | Activity::GrpcSendStart
        | Activity::GrpcSendEnd => Part::Frontend,
        Activity::RequestStart | Activity::QueueStart | Activity::InferResponseComplete | Activity::RequestEnd => {
            Part::Model
        }
        Activity::ComputeStart | Activity::ComputeInputEnd | Activity::ComputeOutputStart | Activity::ComputeEnd => {
            Part::Compute
        }
    }
}

/// The exporter of mode `opentelemetry`.
pub struct OtlpExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// An [`Instant`] and the wall-clock time at that moment: spans carry
    /// wall-clock times, as OpenTelemetry wants.
    origin: (Instant, SystemTime),
}

impl OtlpExport {
    /// Starts the exporter for `config` (nothing is sent until a span
    /// ends). Fails only on a malformed configuration; a collector that
    /// does not answer costs the spans, not the requests.
    pub fn start(config: &OpenTelemetryConfig) -> Result<Self, String> {
        // An https:// collector is reached with rustls.
        crate::tls_crypto::use_ring();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(config.url.clone())
            .build()
            .map_err(|error| format!("cannot send traces to {}: {error}", config.url))?;
        let batching = BatchConfigBuilder::default()
            .with_max_queue_size(config.max_queue_size)
            .with_scheduled_delay(Duration::from_millis(config.schedule_delay_ms))
            .with_max_export_batch_size(config.max_export_batch_size)
            .build();
        let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batching).build();
        let attributes = config.resource.iter().map(|(key, value)| KeyValue::new(key.clone(), value.clone()));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(Resource::builder().with_attributes(attributes).build())
            .build();
        let tracer = provider.tracer("tritonrs");
        Ok(Self { provider, tracer, origin: (Instant::now(), SystemTime::now()) })
    }

    fn wall_time(&self, moment: Instant) -> SystemTime {
        let (instant, wall) = self.origin;
        if moment >= instant { wall + (moment - instant) } else { wall - (instant - moment) }
    }

    /// Sends a finished trace as its spans; the steps of an ensemble
    /// request as spans of their models under the ensemble's model span.
    pub fn export(&self, trace: &RequestTrace) {
        let record = trace.record();
        let timestamps = record.timeline();
        let (Some(&(_, first)), Some(&(_, last))) = (timestamps.first(), timestamps.last()) else {
            return;
        };
        let parent = match trace.parent() {
            Some(remote) => Context::new().with_remote_span_context(remote.clone()),
            None => Context::new(),
        };
        let mut root = self
            .tracer
            .span_builder("InferRequest")
            .with_kind(SpanKind::Server)
            .with_start_time(self.wall_time(first))
            .start_with_context(&self.tracer, &parent);
        self.add_events(&mut root, &timestamps, Part::Frontend);
        let root = parent.with_span(root);
        self.export_model(trace.id(), None, &record, &root);
        root.span().end_with_timestamp(self.wall_time(last));
    }

    /// A model span (REQUEST_START to REQUEST_END) under `context`, with
    /// its `compute` span and the model spans of its steps under it; a
    /// step's span names its ensemble's trace as `triton.parent_id`.
    fn export_model(&self, id: u64, parent_id: Option<u64>, record: &Record, context: &Context) {
        let timestamps = record.timeline();
        let span_of = |part: Part, name: String, attributes: Vec<KeyValue>, context: &Context| {
            let moments: Vec<Instant> =
                timestamps.iter().filter(|(activity, _)| part_of(*activity) == part).map(|(_, at)| *at).collect();
            let (start, end) = (moments.first()?, moments.last()?);
            let mut span = self
                .tracer
                .span_builder(name)
                .with_start_time(self.wall_time(*start))
                .with_attributes(attributes)
                .start_with_context(&self.tracer, context);
            self.add_events(&mut span, &timestamps, part);
            Some((span, *end))
        };
        let request = record.request.clone().unwrap_or_default();
        let mut attributes = vec![
            KeyValue::new("triton.model_name", request.model.clone()),
            KeyValue::new("triton.model_version", request.version),
            KeyValue::new("triton.trace_id", id as i64),
            KeyValue::new("triton.request_id", request.request_id),
        ];
        if let Some(parent_id) = parent_id {
            attributes.push(KeyValue::new("triton.parent_id", parent_id as i64));
        }
        let Some((model_span, model_end)) = span_of(Part::Model, request.model, attributes, context) else {
            return;
        };
        let model_context = context.with_span(model_span);
        if let Some((mut compute, compute_end)) =
            span_of(Part::Compute, "compute".to_string(), Vec::new(), &model_context)
        {
            compute.end_with_timestamp(self.wall_time(compute_end));
        }
        for (step_id, step) in &record.steps {
            self.export_model(*step_id, Some(id), step, &model_context);
        }
        model_context.span().end_with_timestamp(self.wall_time(model_end));
    }

    fn add_events(&self, span: &mut impl Span, timestamps: &[(Activity, Instant)], part: Part) {
        for (activity, moment) in timestamps.iter().filter(|(activity, _)| part_of(*activity) == part) {
            span.add_event_with_timestamp(activity.name(), self.wall_time(*moment), Vec::new());
        }
    }

    /// Sends what is queued and stops; the server calls it as it stops.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!("could not send the last traces to the OpenTelemetry collector: {error}");
        }
    }
}

/// The caller's span of a W3C `traceparent` header
/// (`00-<trace id>-<parent span id>-<flags>`), when it is well formed.
pub fn parse_traceparent(header: &str) -> Option<SpanContext> {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = header.trim().split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span_id).ok().filter(|id| *id != SpanId::INVALID)?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    Some(SpanContext::new(trace_id, span_id, flags, true, TraceState::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_read_as_w3c_writes_them() {
        let context = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
