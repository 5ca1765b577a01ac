//! The protocols and transports sixpac speaks, shared by the clients, the taps and the traces.

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
