//! What a load run does (users, rate, duration, mix), the bounds it must keep, and which
//! operation, from whom to whom, comes k-th.

use std::time::Duration;

/// The most users one run brings up (each holds a UDP socket and a TCP connection, and as
/// many again on the taps).
pub const MAX_USERS: usize = 2000;
/// The highest operation rate, per second.
pub const MAX_RATE: u32 = 20_000;
/// The longest steady phase.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The most operations a recorded run may issue: every frame is kept in memory until the end.
pub const MAX_RECORDED_OPS: u64 = 300_000;

/// One kind of operation, with its own statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Both legs up: REGISTER answered 200 and the XMPP session bound (ramp phase).
    Join,
    /// A digest REGISTER refresh, until its 200.
    Register,
    /// A SIP MESSAGE to another user, until its final response.
    Message,
    /// An XMPP chat message to another user's bound resource, until that user has it.
    Chat,
    /// An INVITE to another user, who answers; until the caller's ACK, then BYE.
    Call,
    /// REGISTER with Expires 0 answered and the XMPP stream closed by the server.
    Leave,
}

impl Op {
    /// The name used in `--mix`, summary.json and the terminal.
    pub fn name(self) -> &'static str {
        match self {
            Op::Join => "join",
            Op::Register => "register",
            Op::Message => "message",
            Op::Chat => "chat",
            Op::Call => "call",
            Op::Leave => "leave",
        }
    }
}

/// Parse `--mix`: operation names separated by commas; a name given twice weighs twice.
pub fn parse_mix(s: &str) -> Result<Vec<Op>, String> {
    let mut mix = Vec::new();
    for part in s.split(',').map(str::trim) {
        mix.push(match part {
            "register" => Op::Register,
            "message" => Op::Message,
            "chat" => Op::Chat,
            "call" => Op::Call,
            "" => return Err("an empty name in the mix (two commas, or one at an end)".into()),
            other => return Err(format!("`{other}` is not an operation: the mix takes register, message, chat and call")),
        });
    }
    Ok(mix)
}

/// A whole load run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadPlan {
    pub users: usize,
    /// Operations per second in the steady phase, over the whole mix.
    pub rate: u32,
    #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub duration: Duration,
    pub mix: Vec<Op>,
    /// Users joined per second while ramping up.
    pub ramp: u32,
    /// Through the recording taps (else straight at the servers).
    pub record: bool,
    /// How long one operation may take before it counts as failed.
    #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub timeout: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn from_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s: f64 = serde::Deserialize::deserialize(d)?;
    Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
}

impl LoadPlan {
    /// The operations the steady phase issues.
    pub fn total_ops(&self) -> u64 {
        (u128::from(self.rate) * self.duration.as_millis() / 1000) as u64
    }

    /// Refuse a plan outside the bounds, saying which bound and why.
    pub fn check(&self) -> Result<(), String> {
        if self.users == 0 || self.users > MAX_USERS {
            return Err(format!("--users takes 1 to {MAX_USERS}"));
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            return Err(format!("--rate takes 1 to {MAX_RATE} operations per second"));
        }
        if self.ramp == 0 || self.ramp > MAX_RATE {
            return Err(format!("--ramp takes 1 to {MAX_RATE} users per second"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(format!("--duration takes more than 0 s and at most {} s", MAX_DURATION.as_secs()));
        }
        if self.mix.is_empty() {
            return Err("--mix names no operation".into());
        }
        if self.record && self.total_ops() > MAX_RECORDED_OPS {
            return Err(format!(
                "{} operations ({} /s for {} s) is more than a recorded run keeps ({MAX_RECORDED_OPS}): every frame stays in memory \
                 until the end; lower the rate or the duration, or add --no-record",
                self.total_ops(),
                self.rate,
                self.duration.as_secs_f64()
            ));
        }
        Ok(())
    }
}

/// The k-th operation of the steady phase: its kind, who does it and to whom. The mix is
/// taken in turn; senders go round the users, and each round pairs them at a new distance,
/// so that every pair comes up and no user talks to itself (unless it is alone).
pub fn pick(k: u64, users: usize, mix: &[Op]) -> (Op, usize, usize) {
    let m = mix.len() as u64;
    let op = mix[(k % m) as usize];
    let round = k / m;
    let n = users as u64;
    let from = round % n;
    let to = if n < 2 { from } else { (from + 1 + (round / n) % (n - 1)) % n };
    (op, from as usize, to as usize)
}

/// How many operations are due `elapsed` into the steady phase, never more than the total.
pub fn due(elapsed: Duration, rate: u32, total: u64) -> u64 {
    let n = (u128::from(rate) * elapsed.as_micros() / 1_000_000) as u64;
    n.min(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        LoadPlan {
            users: 10,
            rate: 100,
            duration: Duration::from_secs(10),
            mix: vec![Op::Register, Op::Message],
            ramp: 50,
            record: true,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_mix_is_parsed_and_bad_names_are_refused() {
        assert_eq!(parse_mix("register,message").unwrap(), vec![Op::Register, Op::Message]);
        assert_eq!(parse_mix("chat, chat,call").unwrap(), vec![Op::Chat, Op::Chat, Op::Call]);
        assert!(parse_mix("register,,chat").unwrap_err().contains("empty"));
        assert!(parse_mix("join").unwrap_err().contains("`join` is not an operation"));
    }

    #[test]
    fn bounds_are_kept() {
        assert!(plan().check().is_ok());
        assert!(LoadPlan { users: 0, ..plan() }.check().unwrap_err().contains("--users"));
        assert!(LoadPlan { users: MAX_USERS + 1, ..plan() }.check().is_err());
        assert!(LoadPlan { rate: MAX_RATE + 1, ..plan() }.check().unwrap_err().contains("--rate"));
        assert!(LoadPlan { duration: Duration::from_secs(601), ..plan() }.check().unwrap_err().contains("--duration"));
        assert!(LoadPlan { duration: Duration::ZERO, ..plan() }.check().is_err());
        let big = LoadPlan { rate: 10_000, duration: Duration::from_secs(60), ..plan() };
        assert!(big.check().unwrap_err().contains("--no-record"));
        assert!(LoadPlan { record: false, ..big }.check().is_ok());
    }

    #[test]
    fn picks_cover_the_mix_and_every_pair_without_talking_to_oneself() {
        let mix = [Op::Register, Op::Chat];
        let mut pairs = std::collections::HashSet::new();
        let mut ops = std::collections::HashMap::new();
        for k in 0..(2 * 4 * 3) {
            let (op, from, to) = pick(k, 4, &mix);
            assert_ne!(from, to);
            assert!(from < 4 && to < 4);
            pairs.insert((from, to));
            *ops.entry(op).or_insert(0) += 1;
        }
        assert_eq!(pairs.len(), 12, "all 4×3 ordered pairs");
        assert_eq!(ops[&Op::Register], 12);
        assert_eq!(ops[&Op::Chat], 12);
        assert_eq!(pick(5, 1, &mix).1, pick(5, 1, &mix).2, "a lone user talks to itself");
    }

    #[test]
    fn due_paces_and_stops_at_the_total() {
        assert_eq!(due(Duration::from_millis(0), 100, 1000), 0);
        assert_eq!(due(Duration::from_millis(15), 100, 1000), 1);
        assert_eq!(due(Duration::from_millis(2500), 100, 1000), 250);
        assert_eq!(due(Duration::from_secs(20), 100, 1000), 1000);
        assert_eq!(plan().total_ops(), 1000);
    }
}
