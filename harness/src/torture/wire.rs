//! On-wire torture: each RFC 4475 message, byte for byte, to a real SIP server through its
//! tap; the server's answer is recorded, and after each message a valid OPTIONS proves the
//! server is still alive.

use super::{Syntax, EXPECTED};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How long to wait for the server's answer to one torture message.
pub const ANSWER_WAIT: Duration = Duration::from_millis(800);
/// Liveness probes after each message, each waiting this long.
pub const PROBE_WAIT: Duration = Duration::from_millis(500);
const PROBES: usize = 4;

/// What happened to one message.
#[derive(Debug, Clone)]
pub struct WireResult {
    pub file: &'static str,
    pub section: &'static str,
    pub expected: Syntax,
    /// The RFC's response code for it, where the RFC names one.
    pub rfc_code: Option<u16>,
    /// The first line of the server's answer, if it answered.
    pub answer: Option<String>,
    /// Whether the server answered a valid OPTIONS afterwards.
    pub alive: bool,
}

/// Send every corpus message through the SIP tap at `tap`; probe `server` directly after each.
/// Stops early when the server no longer answers (the rest would say nothing new).
pub async fn run(dir: &Path, tap: SocketAddr, server: SocketAddr) -> std::io::Result<Vec<WireResult>> {
    let mut out = Vec::new();
    for (file, section, expected, rfc_code) in EXPECTED {
        let Ok(bytes) = std::fs::read(dir.join(file)) else { continue };
        // A fresh socket per message: a late answer to one cannot pass for the next one's.
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        sock.send_to(&bytes, tap).await?;
        let mut buf = vec![0u8; 65536];
        let answer = match tokio::time::timeout(ANSWER_WAIT, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                let first = buf[..n].split(|b| *b == b'\n').next().unwrap_or(b"");
                Some(String::from_utf8_lossy(first).trim_end().to_string())
            }
            _ => None,
        };
        let mut alive = false;
        for _ in 0..PROBES {
            if crate::servers::readiness::sip_answers(server, PROBE_WAIT).await.is_some() {
                alive = true;
                break;
            }
        }
        out.push(WireResult { file, section, expected: *expected, rfc_code: *rfc_code, answer, alive });
        if !alive {
            break;
        }
    }
    Ok(out)
}

/// The table, and the closing line: how many were sent and after which the server died.
pub fn report(results: &[WireResult], server: &str) -> (String, bool) {
    let mut s = format!("{:<16} {:<9} {:<8} {:<5} {:<40} {}\n", "file", "section", "rfc", "code", "answer", "alive after");
    for r in results {
        let rfc = match r.expected {
            Syntax::Valid => "valid",
            Syntax::Invalid => "invalid",
        };
        let code = r.rfc_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let answer = r.answer.clone().unwrap_or_else(|| "(no answer)".into());
        s.push_str(&format!(
            "{:<16} {:<9} {:<8} {:<5} {:<40} {}\n",
            r.file,
            r.section,
            rfc,
            code,
            answer.chars().take(40).collect::<String>(),
            if r.alive { "yes" } else { "NO" }
        ));
    }
    let died: Vec<&str> = results.iter().filter(|r| !r.alive).map(|r| r.file).collect();
    let answered = results.iter().filter(|r| r.answer.is_some()).count();
    let ok = died.is_empty();
    s.push_str(&format!(
        "{}/{} sent to {server}; {answered} answered; {}\n",
        results.len(),
        EXPECTED.len(),
        if ok { "alive after every message".to_string() } else { format!("NOT alive after {}", died.join(", ")) }
    ));
    (s, ok)
}
