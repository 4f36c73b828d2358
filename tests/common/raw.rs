//! Raw HTTP/1.1 over TCP, for clients that misbehave on purpose: a head
//! sent in part, a body that stops coming, a connection left idle.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `addr` and sends `bytes`, leaving the connection open.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(bytes).await.expect("sends");
    stream
}

/// Sends the head of a POST to `path` with `headers`, declaring a body of
/// `declared` bytes, then only `sent` bytes of that body.
pub async fn start_upload(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    declared: usize,
    sent: usize,
) -> TcpStream {
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {declared}\r\n\r\n"
    )
    .into_bytes();
    bytes.resize(bytes.len() + sent, b' ');
    send(addr, &bytes).await
}

/// Reads until the server closes the connection (an end of stream or a
/// reset), waiting at most `bound`: what was read, or `None` if the
/// connection is still open then.
pub async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> Option<String> {
    let mut read = Vec::new();
    let closed = tokio::time::timeout(bound, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    closed
        .ok()
        .map(|()| String::from_utf8_lossy(&read).into_owned())
}
