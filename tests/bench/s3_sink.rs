//! An S3 endpoint for benchmarks that keeps nothing: it answers the calls a relay makes (create, upload part,
//! complete and abort a multipart upload; put, copy, head, get and list) after reading each body to its end, checks
//! nothing costly (no signature, no checksum, no MD5) and stores no bytes, so that a relay measured into it pays
//! for itself alone. It remembers the size of each completed object (HEAD answers with it) and counts the bytes
//! it received, which it prints when stopped.
//!
//! Usage: s3-sink PORT (0 picks a free port; the port is printed on stdout).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Sink {
    received: AtomicU64,
    next_upload: AtomicU64,
    /// Bytes of each open upload.
    uploads: Mutex<HashMap<String, u64>>,
    /// Size of each object written, by bucket and key.
    objects: Mutex<HashMap<String, u64>>,
}

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

fn xml(status: StatusCode, body: String) -> Response {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}");
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn etag(n: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{n:032x}\"")).expect("hex is a header value")
}

/// Reads a body to its end; its length.
async fn drain(body: Body) -> u64 {
    let mut stream = body.into_data_stream();
    let mut bytes = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        bytes += chunk.len() as u64;
    }
    bytes
}

async fn handle(State(sink): State<Arc<Sink>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let path = uri.path().trim_start_matches('/').to_owned();
    let (bucket, key) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let received = drain(body).await;
    sink.received.fetch_add(received, Ordering::Relaxed);
    match method {
        Method::POST if param("uploads").is_some() => {
            let id = format!("sink-{}", sink.next_upload.fetch_add(1, Ordering::Relaxed));
            sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), 0);
            let body = format!(
                "<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{bucket}</Bucket><Key>{key}</Key>\
                 <UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
            );
            xml(StatusCode::OK, body)
        }
        Method::PUT if param("partNumber").is_some() => {
            let id = param("uploadId").unwrap_or_default();
            *sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_owned()).or_default() += received;
            let mut response = StatusCode::OK.into_response();
            let out = response.headers_mut();
            out.insert(header::ETAG, etag(received));
            // The part's checksum, as S3 would echo it after checking it (not checked here).
            for (name, value) in &headers {
                if name.as_str().starts_with("x-amz-checksum-") {
                    out.insert(name.clone(), value.clone());
                }
            }
            response
        }
        Method::POST if param("uploadId").is_some() => {
            let id = param("uploadId").unwrap_or_default();
            let size = sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id).unwrap_or_default();
            sink.objects.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), size);
            let body = format!(
                "<CompleteMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{bucket}</Bucket><Key>{key}</Key>\
                 <ETag>\"{size:032x}-1\"</ETag></CompleteMultipartUploadResult>"
            );
            xml(StatusCode::OK, body)
        }
        Method::DELETE => {
            if let Some(id) = param("uploadId") {
                sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            } else {
                sink.objects.lock().unwrap_or_else(|e| e.into_inner()).remove(&path);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Method::PUT if key.is_empty() => StatusCode::OK.into_response(),
        Method::PUT if headers.contains_key("x-amz-copy-source") => {
            let body = format!(
                "<CopyObjectResult xmlns=\"{XMLNS}\"><ETag>\"{:032x}\"</ETag>\
                 <LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>",
                0u64
            );
            xml(StatusCode::OK, body)
        }
        Method::PUT => {
            sink.objects.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), received);
            ([(header::ETAG, etag(received))], "").into_response()
        }
        Method::GET | Method::HEAD if key.is_empty() => {
            if param("location").is_some() {
                return xml(StatusCode::OK, format!("<LocationConstraint xmlns=\"{XMLNS}\"/>"));
            }
            let prefix = param("prefix").unwrap_or_default();
            let body = format!(
                "<ListBucketResult xmlns=\"{XMLNS}\"><Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>0</KeyCount>\
                 <MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"
            );
            xml(StatusCode::OK, body)
        }
        Method::HEAD => match sink.objects.lock().unwrap_or_else(|e| e.into_inner()).get(&path).copied() {
            Some(size) => {
                let headers = [
                    (header::CONTENT_LENGTH, HeaderValue::from(size)),
                    (header::ETAG, etag(size)),
                    (header::LAST_MODIFIED, HeaderValue::from_static("Thu, 01 Jan 2026 00:00:00 GMT")),
                ];
                (StatusCode::OK, headers).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
        _ => {
            let body = format!(
                "<Error><Code>NoSuchKey</Code><Message>The sink keeps no bytes</Message><Key>{key}</Key></Error>"
            );
            xml(StatusCode::NOT_FOUND, body)
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", listener.local_addr()?.port());
    let sink = Arc::new(Sink::default());
    let app = axum::Router::new().fallback(handle).with_state(sink.clone());
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped = async move {
        tokio::select! {
            () = stop => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app).with_graceful_shutdown(stopped).await?;
    eprintln!("s3-sink: received {} bytes", sink.received.load(Ordering::Relaxed));
    Ok(())
}
