//! `sixpac drive`: the reference client as a driver process, speaking the driver protocol on
//! stdin and stdout (docs/driver-protocol.md). It proves the protocol carries every action:
//! the default suite gives the same verdicts and traces through it as in-process.

use super::actor::{Actor, Endpoints, StepError};
use super::driver::{Failure, FromDriver, PROTOCOL};
use super::intent::{Intent, Setup};
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

/// Every action the reference client can do, as its hello lists them.
pub const CAN: &[&str] = &[
    "connect", "disconnect", "register", "unregister", "message", "chat", "set-presence", "call", "call-claiming", "escalate",
    "answer", "reject", "cancel", "hang-up", "publish-presence", "refresh-presence", "withdraw-presence", "subscribe",
    "unsubscribe", "add-contact", "approve-contact", "deny-contact", "pre-approve-contact", "cancel-subscription",
    "verify-caps", "expect-caller", "expect-call-caution", "expect-protection-warning", "send-raw",
];

/// How often the client takes in what reached it while no command runs.
const IDLE_PUMP: Duration = Duration::from_millis(5);

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum Incoming {
    Hello {
        protocol: u32,
        #[allow(dead_code)]
        actor: String,
    },
    Command {
        id: u64,
        setup: Box<Setup>,
        intent: Intent,
    },
    Bye,
}

/// Serve the driver protocol on stdin/stdout until `bye` or end of input; the exit code.
pub async fn serve_stdio(misbehave: Option<super::actor::cusax::Misbehaviour>) -> u8 {
    let mut input = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut actor: Option<Actor> = None;
    let mut ep: Option<Endpoints> = None;
    loop {
        let line = tokio::select! {
            line = input.next_line() => line,
            _ = tokio::time::sleep(IDLE_PUMP) => {
                if let Some(a) = actor.as_mut() {
                    let _ = a.pump(Instant::now()).await;
                    if send_notices(a, &mut out).await.is_err() { return 1; }
                }
                continue;
            }
        };
        let line = match line {
            Ok(Some(l)) if l.trim().is_empty() => continue,
            Ok(Some(l)) => l,
            Ok(None) | Err(_) => break,
        };
        let reply = match serde_json::from_str::<Incoming>(&line) {
            Err(e) => {
                eprintln!("sixpac drive: not the driver protocol ({e}): {line}");
                return 2;
            }
            Ok(Incoming::Bye) => break,
            Ok(Incoming::Hello { protocol, .. }) => {
                if protocol != PROTOCOL {
                    eprintln!("sixpac drive: sixpac speaks protocol {protocol}, this driver {PROTOCOL}");
                }
                FromDriver::Hello {
                    protocol: PROTOCOL,
                    // A client that breaks a rule on purpose says so in every verdict it earns.
                    name: if misbehave.is_some() { "sixpac-reference-misbehaving".into() } else { "sixpac-reference".into() },
                    version: env!("CARGO_PKG_VERSION").into(),
                    can: CAN.iter().map(|s| s.to_string()).collect(),
                }
            }
            Ok(Incoming::Command { id, setup, intent }) => {
                let a = actor.get_or_insert_with(|| Actor::new(&setup.decl(), setup.account.clone(), misbehave));
                let result = match endpoints(&mut ep, &setup) {
                    Ok(e) => a.perform(&intent, e).await,
                    Err(e) => Err(e),
                };
                if send_notices(a, &mut out).await.is_err() {
                    return 1;
                }
                match result {
                    Ok(()) => FromDriver::Done { id },
                    Err(e) => {
                        let (verdict, reason) = match e {
                            StepError::Fail(m) => (Failure::Fail, m),
                            StepError::Error(m) => (Failure::Error, m),
                            StepError::Inconclusive(m) => (Failure::Inconclusive, m),
                        };
                        FromDriver::Failed { id, verdict, reason }
                    }
                }
            }
        };
        if write(&mut out, &reply).await.is_err() {
            return 1;
        }
    }
    if let Some(a) = actor.as_mut() {
        let _ = a.disconnect(Instant::now() + super::CLOSE_DEADLINE).await;
    }
    0
}

/// Where the legs connect and whom they trust, from the first command's setup.
fn endpoints<'a>(ep: &'a mut Option<Endpoints>, setup: &Setup) -> Result<&'a Endpoints, StepError> {
    if ep.is_none() {
        let tls = match &setup.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| StepError::Error(format!("reading the run's CA {}: {e}", path.display())))?;
                Some(crate::tls::client_trusting_pem(&pem).map_err(|e| StepError::Error(format!("the run's CA {}: {e}", path.display())))?)
            }
        };
        let t = &setup.taps;
        *ep = Some(Endpoints { xmpp: t.xmpp, sip: t.sip_udp, sip_tcp: t.sip_tcp, sip_tls: t.sip_tls, tls });
    }
    Ok(ep.as_ref().expect("just set"))
}

/// What the client told its user, as `told-user` events.
async fn send_notices(a: &mut Actor, out: &mut tokio::io::Stdout) -> std::io::Result<()> {
    for (about, text) in a.take_told() {
        write(out, &FromDriver::Event { event: "told-user".into(), text: Some(text), about: Some(about.into()), details: Default::default() }).await?;
    }
    Ok(())
}

async fn write(out: &mut tokio::io::Stdout, msg: &FromDriver) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).expect("plain data serializes");
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}
