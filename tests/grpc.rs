//! The gRPC listener against bad input: bytes that are not HTTP/2, an HTTP/1.1 request, and a
//! preface cut short never take the server down, and the HTTP API beside it keeps answering.
//! (The official Python SDK drives the working cases in tests/sdk_python.rs.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Sends `bytes` to `addr`, then reads until the server closes or 2 s pass; returns what came.
fn poke(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("the gRPC port accepts");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn bad_bytes_on_the_grpc_port_hurt_nothing() {
    // Protects "bad input never panics the server": each bad connection is closed (HTTP/2's
    // GOAWAY at most), and the server goes on serving both faces.
    let server = start(&[]);
    let grpc = server.grpc_addr().expect("gRPC is on by default");
    let cases: [&[u8]; 4] = [
        b"\x00\x01\x02garbage that is not a connection preface\r\n\r\n",
        b"POST /dapr.proto.runtime.v1.Dapr/TryLockAlpha1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM",
        &[0xFF; 4096],
    ];
    for bytes in cases {
        let answer = poke(grpc, bytes);
        assert!(
            answer.len() < 64 * 1024,
            "a bounded answer to bad input, not {} bytes",
            answer.len()
        );
    }
    let mut c = Client::connect(server.local_addr());
    assert_json(&c.lock("lockstore", "after", "o", 10), 200, LOCKED);
    // The gRPC port still accepts an HTTP/2 preface and answers with SETTINGS.
    let answer = poke(
        grpc,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    );
    assert!(
        answer.len() >= 9 && answer[3] == 0x04,
        "a SETTINGS frame first: {answer:?}"
    );
    assert!(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn grpc_can_be_turned_off() {
    // `--grpc-listen off` binds nothing and says so.
    let server = start(&["--grpc-listen", "off"]);
    assert_eq!(server.grpc_addr(), None);
    assert!(server.shutdown(Duration::from_secs(5)));
}
