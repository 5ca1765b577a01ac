//! Faults a tap injects, as a scenario's `faults` declare them: what a bad network does to
//! datagrams (loss, delay, duplication, reordering) and to connections (a reset, a stall).
//! Every fault is marked in the trace, on the frame it hit or as a frame of its own.

use crate::trace::frame::{Direction, Fault, FrameKind, Origin, Recorder};
use crate::wire::Proto;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One declared fault, with how many more times it may strike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultRule {
    /// SIP over UDP: the next `copies` client datagrams whose first line starts with `prefix`
    /// (`MESSAGE `), after `skip` such datagrams went through untouched.
    Datagram { prefix: String, skip: usize, copies: usize, action: DatagramFault },
    /// Connections of `proto`: each of the next `copies` connections once its client has sent
    /// `after` bytes.
    Stream { proto: Proto, after: u64, copies: usize, action: StreamFault },
}

/// What happens to a datagram a rule picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramFault {
    Drop,
    Delay(Duration),
    Duplicate,
    /// Held back until the client's next datagram has gone ahead of it (at most [`REORDER_HOLD`]).
    Reorder,
}

/// What happens to a connection a rule picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// Both sides get a TCP reset.
    Reset,
    /// Nothing is forwarded either way for this long.
    Stall(Duration),
}

/// The longest a reordered datagram waits for one to overtake it.
pub const REORDER_HOLD: Duration = Duration::from_secs(2);

/// The rules a tap applies now, shared with whoever sets them per scenario.
pub type Faults = Arc<Mutex<Vec<FaultRule>>>;

impl DatagramFault {
    /// How the trace marks a datagram this fault hit.
    pub fn mark(self) -> Fault {
        match self {
            DatagramFault::Drop => Fault::Dropped,
            DatagramFault::Delay(d) => Fault::Delayed(d),
            DatagramFault::Duplicate => Fault::Duplicated,
            DatagramFault::Reorder => Fault::Reordered,
        }
    }
}

/// The fault that strikes this client datagram, if any (one copy of its rule is used up).
pub fn for_datagram(faults: &Faults, bytes: &[u8]) -> Option<DatagramFault> {
    let mut rules = faults.lock().expect("faults lock");
    rules.iter_mut().find_map(|r| match r {
        FaultRule::Datagram { prefix, skip, copies, action } if *copies > 0 && bytes.starts_with(prefix.as_bytes()) => {
            if *skip > 0 {
                *skip -= 1;
                return None;
            }
            *copies -= 1;
            Some(*action)
        }
        _ => None,
    })
}

/// One connection's view of the stream faults: how much its client has sent, and whether a
/// fault has struck it.
#[derive(Debug)]
pub struct ConnFaults {
    rules: Faults,
    proto: Proto,
    /// The client and server sockets, for a reset.
    fds: [std::os::fd::RawFd; 2],
    state: Mutex<ConnState>,
    reset: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct ConnState {
    sent: u64,
    struck: bool,
    stalled_until: Option<Instant>,
}

impl ConnFaults {
    /// Faults for a connection whose client and server sockets are `fds`.
    pub fn new(rules: Faults, proto: Proto, fds: [std::os::fd::RawFd; 2]) -> Arc<ConnFaults> {
        Arc::new(ConnFaults { rules, proto, fds, state: Mutex::default(), reset: tokio::sync::watch::channel(false).0 })
    }

    /// A receiver that changes when the tap resets the connection.
    pub fn on_reset(&self) -> tokio::sync::watch::Receiver<bool> {
        self.reset.subscribe()
    }

    /// The client sent `n` more bytes: strike if a rule's threshold is crossed now. A fault
    /// strikes a connection once; it is recorded as a frame of its own.
    pub fn client_sent(&self, n: usize, origin: &Origin, rec: &Recorder) {
        let mut st = self.state.lock().expect("conn faults lock");
        st.sent += n as u64;
        if st.struck {
            return;
        }
        let sent = st.sent;
        let struck = {
            let mut rules = self.rules.lock().expect("faults lock");
            rules.iter_mut().find_map(|r| match r {
                FaultRule::Stream { proto, after, copies, action } if *proto == self.proto && *copies > 0 && sent >= *after => {
                    *copies -= 1;
                    Some((*action, *after))
                }
                _ => None,
            })
        };
        let Some((action, after)) = struck else { return };
        st.struck = true;
        // The threshold, not the count read so far: where reads split the stream is chance.
        let (mark, what) = match action {
            StreamFault::Reset => (Fault::Reset, format!("the tap resets the connection: its client has sent {after} bytes")),
            StreamFault::Stall(d) => {
                st.stalled_until = Some(Instant::now() + d);
                (Fault::Stalled(d), format!("the tap forwards nothing for {} ms: its client has sent {after} bytes", d.as_millis()))
            }
        };
        tracing::info!(server = %origin.server, conn = origin.conn, "{what}");
        rec.record_with(origin, Direction::ToServer, FrameKind::Fault(what), Vec::new(), Some(mark));
        if action == StreamFault::Reset {
            // Connecting a TCP socket to AF_UNSPEC aborts it at once with RST (Linux's
            // tcp_disconnect), before the relay's halves close and would send a FIN.
            let unspec = libc::sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
            for fd in self.fds {
                // SAFETY: the relay owns both sockets for as long as this value lives; connect
                // only reads `unspec`.
                unsafe {
                    libc::connect(fd, &unspec, std::mem::size_of::<libc::sockaddr>() as libc::socklen_t);
                }
            }
            self.reset.send_replace(true);
        }
    }

    /// Wait out a stall, if one is on (either direction waits).
    pub async fn stall(&self) {
        let until = self.state.lock().expect("conn faults lock").stalled_until;
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }
}
