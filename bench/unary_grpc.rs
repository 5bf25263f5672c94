//! A gRPC unary client written straight on `h2`, for the load generator.
//!
//! tonic's `Channel` puts every call through a `tower` buffer task and
//! hyper's client dispatcher, and hyper pumps each request body from a task
//! of its own, so a call costs several task hand-offs and usually two socket
//! writes (headers, then data). On a machine where the generator shares the
//! cores with the server under test, that CPU is taken from the server.
//! Here a call queues its HEADERS and DATA frames on the connection from the
//! caller's own task, and the connection task writes what the callers
//! queued since it last ran together, as a busy gRPC client does, in one
//! socket write (`corked_socket.rs`, which also covers W2's 1 KiB requests,
//! whose DATA frames `h2` alone would send one write each).
//!
//! The wire format is plain gRPC over HTTP/2 (`application/grpc`, 5-byte
//! message prefix, `grpc-status` in the trailers or in a trailers-only
//! answer), so any gRPC server can be driven with it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request, Uri};
use tokio::net::TcpStream;

use crate::corked_socket::CorkedSocket;

/// One HTTP/2 connection to a gRPC server; clones share it.
#[derive(Clone)]
pub struct UnaryClient {
    connection: SendRequest<Bytes>,
    uri: Uri,
}

impl UnaryClient {
    /// Connects to `url` (`http://host:port`) for calls to `method`
    /// (`/package.Service/Method`); the connection is driven by a task of
    /// the current runtime.
    pub async fn connect(url: &str, method: &str) -> Result<Self, String> {
        let base: Uri = url.parse().map_err(|error| format!("bad url {url}: {error}"))?;
        let authority = base.authority().ok_or_else(|| format!("url {url} has no host"))?.clone();
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query(method)
            .build()
            .map_err(|error| format!("bad method path {method}: {error}"))?;
        let socket = TcpStream::connect(authority.as_str())
            .await
            .map_err(|error| format!("cannot connect to {url}: {error}"))?;
        socket.set_nodelay(true).map_err(|error| format!("cannot set TCP_NODELAY: {error}"))?;
        let (socket, outbox) = CorkedSocket::new(socket);
        let (connection, driver) =
            h2::client::handshake(socket).await.map_err(|error| format!("HTTP/2 handshake with {url}: {error}"))?;
        tokio::spawn(async move {
            // The calls see the connection's failure through their streams.
            let _ = outbox.drive(driver).await;
        });
        Ok(Self { connection, uri })
    }

    /// Sends one framed request (see [`frame`]) and returns the answer's
    /// message bytes, or the gRPC status and message of a failed call.
    pub async fn call(&mut self, framed_request: Bytes) -> Result<Bytes, String> {
        std::future::poll_fn(|context| self.connection.poll_ready(context))
            .await
            .map_err(|error| format!("connection: {error}"))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|error| format!("request: {error}"))?;
        let (answer, mut body) =
            self.connection.send_request(request, false).map_err(|error| format!("send: {error}"))?;
        body.send_data(framed_request, true).map_err(|error| format!("send: {error}"))?;
        let answer = answer.await.map_err(|error| format!("answer: {error}"))?;
        if answer.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", answer.status()));
        }
        let (head, mut body) = answer.into_parts();
        // A trailers-only answer (an error, usually) carries its status in
        // the headers and has no body.
        if head.headers.contains_key("grpc-status") {
            check_status(&head.headers)?;
        }
        let mut received = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|error| format!("answer body: {error}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        match body.trailers().await.map_err(|error| format!("answer trailers: {error}"))? {
            Some(trailers) => check_status(&trailers)?,
            None if head.headers.contains_key("grpc-status") => {}
            None => return Err("the answer has no grpc-status".to_string()),
        }
        unframe(received.freeze())
    }
}

/// A message with gRPC's 5-byte prefix (uncompressed, big-endian length).
pub fn frame(message: &impl prost::Message) -> Bytes {
    let length = message.encoded_len();
    let mut framed = BytesMut::with_capacity(5 + length);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(length).expect("benchmark requests are far below 4 GiB"));
    message.encode(&mut framed).expect("the buffer has room for the message");
    framed.freeze()
}

/// The one message of a unary answer.
fn unframe(mut framed: Bytes) -> Result<Bytes, String> {
    if framed.len() < 5 {
        return Err(format!("the answer has {} bytes, less than a gRPC message prefix", framed.len()));
    }
    if framed.get_u8() != 0 {
        return Err("the answer is compressed; the generator asks for none".to_string());
    }
    let length = framed.get_u32() as usize;
    if framed.len() != length {
        return Err(format!("the answer's prefix says {length} bytes, {} followed", framed.len()));
    }
    Ok(framed)
}

fn check_status(headers: &HeaderMap) -> Result<(), String> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("");
    match text("grpc-status") {
        "0" => Ok(()),
        code => Err(format!("gRPC status {code}: {}", percent_decode(text("grpc-message")))),
    }
}

/// `grpc-message` is percent-encoded UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes.get(index + 1..index + 3).and_then(|hex| std::str::from_utf8(hex).ok());
        match (bytes[index], escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
