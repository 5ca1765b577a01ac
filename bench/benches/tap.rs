//! What one tap costs: the round trip of a SIP message to an echo peer on loopback, straight
//! and through a recording tap, over UDP and TCP (p50 and p99 of 20,000 round trips each,
//! printed, then criterion's own comparison); and frames per second through one TCP tap
//! with recording on.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sixpac::tap::{Tap, TapSpec};
use sixpac::trace::frame::{Proto, Recorder, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const OPTIONS: &[u8] = b"OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;rport;branch=z9hG4bK8f2a9c41d7e0b356\r\nMax-Forwards: 70\r\nFrom: <sip:alice_1a2b3c4d@example.test>;tag=4f1e2d3c4b\r\nTo: <sip:example.test>\r\nCall-ID: 9a8b7c6d5e4f3a2b1c0d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// How many round trips the percentiles are taken over.
const SAMPLES: usize = 20_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A UDP peer that sends every datagram back where it came from.
async fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// A TCP peer that writes back every byte it reads.
async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 || c.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn tap_in_front(transport: Transport, upstream: SocketAddr) -> (Tap, Arc<Recorder>) {
    let rec = Arc::new(Recorder::new());
    let spec = TapSpec { server: "echo".into(), proto: Proto::Sip, transport, upstream, tls: None };
    (Tap::start(spec, rec.clone()).await.unwrap(), rec)
}

/// One client that does round trips to `to` over UDP or TCP.
enum Client {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Client {
    async fn connect(transport: Transport, to: SocketAddr) -> Client {
        match transport {
            Transport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                s.connect(to).await.unwrap();
                Client::Udp(s)
            }
            _ => {
                let s = TcpStream::connect(to).await.unwrap();
                s.set_nodelay(true).unwrap();
                Client::Tcp(s)
            }
        }
    }

    async fn round_trip(&mut self, buf: &mut [u8]) {
        match self {
            Client::Udp(s) => {
                s.send(OPTIONS).await.unwrap();
                let n = s.recv(buf).await.unwrap();
                assert_eq!(n, OPTIONS.len());
            }
            Client::Tcp(s) => {
                s.write_all(OPTIONS).await.unwrap();
                s.read_exact(&mut buf[..OPTIONS.len()]).await.unwrap();
            }
        }
    }
}

/// Each round trip's duration, `n` of them, after a warm-up.
async fn round_trips(c: &mut Client, n: usize) -> Vec<Duration> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..1000 {
        c.round_trip(&mut buf).await;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.round_trip(&mut buf).await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("tap_round_trip");
    g.throughput(Throughput::Elements(1));
    for transport in [Transport::Udp, Transport::Tcp] {
        let name = transport.name();
        let (mut direct, mut tapped, _tap, rec) = rt.block_on(async {
            let echo = match transport {
                Transport::Udp => udp_echo().await,
                _ => tcp_echo().await,
            };
            let (tap, rec) = tap_in_front(transport, echo).await;
            (Client::connect(transport, echo).await, Client::connect(transport, tap.listen).await, tap, rec)
        });
        let (d, t) = rt.block_on(async { (round_trips(&mut direct, SAMPLES).await, round_trips(&mut tapped, SAMPLES).await) });
        let us = |x: Duration| x.as_secs_f64() * 1e6;
        println!(
            "{name}: direct p50 {:.1} µs p99 {:.1} µs; through the tap p50 {:.1} µs p99 {:.1} µs; the tap adds {:.1} µs at p50, {:.1} µs at p99 ({} frames recorded)",
            us(percentile(&d, 0.5)),
            us(percentile(&d, 0.99)),
            us(percentile(&t, 0.5)),
            us(percentile(&t, 0.99)),
            us(percentile(&t, 0.5)) - us(percentile(&d, 0.5)),
            us(percentile(&t, 0.99)) - us(percentile(&d, 0.99)),
            rec.len()
        );
        let mut buf = vec![0u8; 65536];
        g.bench_function(format!("{name}/direct"), |b| {
            b.iter_custom(|iters| rt.block_on(async { let t = Instant::now(); for _ in 0..iters { direct.round_trip(&mut buf).await; } t.elapsed() }))
        });
        g.bench_function(format!("{name}/through the tap"), |b| {
            b.iter_custom(|iters| rt.block_on(async { let t = Instant::now(); for _ in 0..iters { tapped.round_trip(&mut buf).await; } t.elapsed() }))
        });
    }
    g.finish();

    // Frames per second through one TCP tap, recording on: a client writes messages back to
    // back; the time until the echo has come back whole.
    const BURST: usize = 10_000;
    let mut f = c.benchmark_group("tap_frames");
    f.throughput(Throughput::Elements(2 * BURST as u64));
    f.sample_size(10);
    let (mut client, rec) = rt.block_on(async {
        let echo = tcp_echo().await;
        let (tap, rec) = tap_in_front(Transport::Tcp, echo).await;
        let c = TcpStream::connect(tap.listen).await.unwrap();
        std::mem::forget(tap); // lives as long as the bench
        (c, rec)
    });
    let burst: Vec<u8> = OPTIONS.repeat(BURST);
    let mut back = vec![0u8; burst.len()];
    f.bench_function("tcp/recorded frames both ways", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (mut r, mut w) = client.split();
                let write = async { w.write_all(&burst).await.unwrap() };
                let read = async { r.read_exact(&mut back).await.unwrap() };
                tokio::join!(write, read);
            })
        })
    });
    f.finish();
    println!("tap_frames: {} frames recorded in all", rec.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
