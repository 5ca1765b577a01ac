//! The protocols and transports sixpac speaks, shared by the clients, the taps and the traces.

/// The largest datagram a UDP socket can hand over.
pub const MAX_DATAGRAM: usize = 65536;

/// Run `f` on this thread's datagram buffer. One 64 KiB buffer per runtime thread, not per
/// socket: thousands of idle UDP legs (a tap's clients, load users) must not hold one each,
/// and a datagram must not cost a 64 KiB allocation. `f` must not await: the buffer is
/// borrowed for its whole run.
pub fn with_datagram_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    thread_local! {
        static DATAGRAM: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; MAX_DATAGRAM]);
    }
    DATAGRAM.with_borrow_mut(|b| f(b))
}

/// Received bytes as text, borrowed when they are UTF-8 (from_utf8_lossy walks them in chunks
/// even then, which showed in the normalizer's profile), with replacement characters where not.
pub fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Which protocol a tap relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Sip,
    Xmpp,
}

impl Proto {
    /// Lower-case name, as traces print it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Sip => "sip",
            Proto::Xmpp => "xmpp",
        }
    }
}

/// Which transport a tap relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP from the first byte (SIP over TLS, RFC 3261 §26.2).
    Tls,
}

impl Transport {
    /// Lower-case name, as traces print it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Whether it delivers in order without loss (no SIP retransmissions, RFC 3261 §17).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }

    /// Which port space its sockets live in.
    pub fn carrier(self) -> Carrier {
        if self.reliable() { Carrier::Stream } else { Carrier::Datagram }
    }
}

/// A port space: a UDP and a TCP socket may have the same port number, so an address alone
/// does not say which socket it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    Datagram,
    Stream,
}
