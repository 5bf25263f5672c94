//! The moments of a traced gRPC call that its handler cannot see: when the
//! call arrived, before its message was read, and when its response went
//! out, after the handler returned.

use std::sync::Arc;
use std::time::Instant;

use tonic::body::Body;

use crate::trace::{Activity, RequestTrace, TracedBody, Tracer};

/// When a call arrived; noted only while some request may be traced.
#[derive(Debug, Clone, Copy)]
pub struct CallArrived(pub Instant);

/// The trace of a call whose response is to be stamped as it goes out.
#[derive(Debug, Clone)]
pub struct SendTrace(pub Arc<RequestTrace>);

/// Notes when a call arrived, for the calls that may be traced.
pub fn note_arrival(tracer: &Tracer, mut request: http::Request<Body>) -> http::Request<Body> {
    if tracer.may_sample() {
        request.extensions_mut().insert(CallArrived(Instant::now()));
    }
    request
}

/// Wraps the body of a traced call's response so that it stamps the send.
pub fn stamp_sending(mut response: http::Response<Body>) -> http::Response<Body> {
    match response.extensions_mut().remove::<SendTrace>() {
        Some(SendTrace(trace)) => {
            response.map(|body| Body::new(TracedBody::new(body, trace, Activity::GrpcSendStart, Activity::GrpcSendEnd)))
        }
        None => response,
    }
}
