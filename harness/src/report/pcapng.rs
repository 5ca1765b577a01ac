//! pcapng for Wireshark: one packet per frame, between the client and the tap it reached, at the
//! recorded time, with IPv4/IPv6, UDP and TCP headers built here (docs/decisions/0009). TCP
//! segments carry sequence numbers that follow each direction's bytes, so Wireshark reassembles
//! the streams; what was TLS on the wire is written as the plaintext the tap saw, and a packet
//! comment says so.

use crate::trace::frame::{Direction, Fault, Frame, FrameKind};
use crate::wire::{Proto, Transport};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// LINKTYPE_RAW: the packet starts with its IP header, version 4 or 6.
const LINKTYPE_RAW: u16 = 101;
/// LINKTYPE_USER0, for the second interface: the taps' own accounts (a TLS handshake, a fault,
/// datagrams the kernel lost), as text. Kept off the IP interface, where an empty segment would
/// look to Wireshark like a duplicate ACK.
const LINKTYPE_USER0: u16 = 147;
/// The most payload one IPv4 packet takes with a 20-byte TCP header; longer frames are split.
const MAX_SEGMENT: usize = 65_000;

fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let len = 12 + body.len().next_multiple_of(4);
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + body.len().next_multiple_of(4) - body.len(), 0);
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + value.len().next_multiple_of(4) - value.len(), 0);
}

fn end_of_options(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0, 0]);
}

/// The ones'-complement sum of RFC 1071, folded.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
        // Parts are even-length except the last (the payload), so the pairing holds.
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IP packet from `src` to `dst` around a transport header and payload (protocol 6 or 17);
/// the transport checksum at `sum_at` in `l4` is filled in.
fn ip_packet(src: SocketAddr, dst: SocketAddr, proto: u8, mut l4: Vec<u8>, sum_at: usize, payload: &[u8]) -> Vec<u8> {
    let l4_len = (l4.len() + payload.len()) as u32;
    let pseudo: Vec<u8> = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [&s.octets()[..], &d.octets(), &[0, proto], &(l4_len as u16).to_be_bytes()].concat(),
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            [&v6(s)[..], &v6(d), &l4_len.to_be_bytes(), &[0, 0, 0, proto]].concat()
        }
    };
    let sum = checksum(&[&pseudo, &l4, payload]);
    l4[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut p = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + l4_len as u16;
            let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = checksum(&[&h]);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(l4_len as u16).to_be_bytes());
            h.extend_from_slice(&[proto, 64]);
            h.extend_from_slice(&v6(s));
            h.extend_from_slice(&v6(d));
            h
        }
    };
    p.extend_from_slice(&l4);
    p.extend_from_slice(payload);
    p
}

fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(8);
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    ip_packet(src, dst, 17, h, 6, payload)
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    ip_packet(src, dst, 6, h, 16, payload)
}

/// Whether a frame's kind is bytes that crossed the wire (not a tap's account of something).
fn on_the_wire(k: &FrameKind) -> bool {
    matches!(k, FrameKind::Sip | FrameKind::XmppHeader | FrameKind::XmppElement | FrameKind::XmppClose | FrameKind::Whitespace | FrameKind::Opaque | FrameKind::Unparsed(_))
}

/// The pcapng file of `frames`, whose time zero is `clock_unix_us`.
pub fn render(frames: &[Frame], clock_unix_us: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut shb, 4, format!("sixpac {}", env!("CARGO_PKG_VERSION")).as_bytes());
    end_of_options(&mut shb);
    block(&mut out, 0x0A0D_0D0A, &shb);
    for (linktype, name) in [(LINKTYPE_RAW, &b"sixpac taps (client side)"[..]), (LINKTYPE_USER0, b"sixpac tap events")] {
        let mut idb = Vec::new();
        idb.extend_from_slice(&linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes());
        option(&mut idb, 2, name);
        end_of_options(&mut idb);
        block(&mut out, 1, &idb);
    }

    // Next sequence number per connection and direction (true: the client's side).
    let mut next: HashMap<(u64, bool), u32> = HashMap::new();
    let mut tls_conns: Vec<u64> = Vec::new();
    for f in frames {
        if f.kind == FrameKind::TlsHandshake {
            tls_conns.push(f.conn);
        }
        let from_client = f.dir == Direction::ToServer;
        let (src, dst) = if from_client { (f.client, f.tap) } else { (f.tap, f.client) };
        let mut comment = format!(
            "sixpac frame {}: {} {} via the tap at {}{}",
            f.seq,
            f.proto.name(),
            f.transport.name(),
            f.tap,
            f.upstream.map(|u| format!(", relayed from {u} to {}", f.server)).unwrap_or_else(|| format!(" to {}", f.server)),
        );
        let tls = f.transport == Transport::Tls || (tls_conns.contains(&f.conn) && f.kind != FrameKind::TlsHandshake);
        if tls && on_the_wire(&f.kind) {
            comment.push_str("; TLS on the wire: this is the plaintext the tap saw");
        }
        if let Some(x) = f.fault {
            comment.push_str(&format!("; {} by the tap", x.name()));
            if matches!(x, Fault::Dropped | Fault::NoUpstream) {
                comment.push_str(" (the server never got it)");
            }
        }
        // (interface, packet bytes)
        let mut packets: Vec<(u32, Vec<u8>)> = Vec::new();
        match f.transport {
            _ if !on_the_wire(&f.kind) && !matches!(f.kind, FrameKind::Closed(_)) => {
                comment.push_str("; the tap's own account, no bytes on the wire");
                packets.push((1, super::ladder::describe(f).0.into_bytes()));
            }
            Transport::Udp => packets.push((0, udp(src, dst, &f.bytes))),
            Transport::Tcp | Transport::Tls => {
                let isn = |conn: u64, client: bool| (conn as u32).wrapping_mul(0x0101_0000).wrapping_add(if client { 1 } else { 0x8000_0001 });
                let mine = *next.entry((f.conn, from_client)).or_insert_with(|| isn(f.conn, from_client));
                let theirs = *next.entry((f.conn, !from_client)).or_insert_with(|| isn(f.conn, !from_client));
                match &f.kind {
                    k if on_the_wire(k) => {
                        let mut seq = mine;
                        for chunk in f.bytes.chunks(MAX_SEGMENT) {
                            packets.push((0, tcp(src, dst, seq, theirs, PSH | ACK, chunk)));
                            seq = seq.wrapping_add(chunk.len() as u32);
                        }
                        next.insert((f.conn, from_client), seq);
                    }
                    FrameKind::Closed(how) => {
                        let flags = if how.contains("reset") { RST | ACK } else { FIN | ACK };
                        comment.push_str(&format!("; closed: {how}"));
                        packets.push((0, tcp(src, dst, mine, theirs, flags, &[])));
                        if flags & FIN != 0 {
                            next.insert((f.conn, from_client), mine.wrapping_add(1));
                        }
                    }
                    _ => unreachable!("the tap's accounts went to the other interface"),
                }
            }
        }
        // Rounded as the raw trace prints it, so a pcapng made again from that file is the same.
        let ts = clock_unix_us + crate::trace::raw::micros(f.at);
        for (interface, p) in packets {
            let mut epb = Vec::new();
            epb.extend_from_slice(&interface.to_le_bytes());
            epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ts as u32).to_le_bytes());
            epb.extend_from_slice(&(p.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(p.len() as u32).to_le_bytes());
            epb.extend_from_slice(&p);
            epb.resize(epb.len() + p.len().next_multiple_of(4) - p.len(), 0);
            option(&mut epb, 1, comment.as_bytes());
            end_of_options(&mut epb);
            block(&mut out, 6, &epb);
        }
    }
    out
}

/// Write the pcapng file of `frames` to `out`.
pub fn write(frames: &[Frame], clock_unix_us: u64, out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&render(frames, clock_unix_us))
}

/// tshark's decode-as options for the taps' ports, which are not the well-known ones:
/// `-d udp.port==41234,sip -d tcp.port==39579,xmpp`.
pub fn decode_as(frames: &[Frame]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in frames {
        let layer = if f.transport == Transport::Udp { "udp" } else { "tcp" };
        let proto = match f.proto {
            Proto::Sip => "sip",
            Proto::Xmpp => "xmpp",
        };
        let d = format!("-d {layer}.port=={},{proto}", f.tap.port());
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_and_tcp_sequence_numbers_follow_the_bytes() {
        let mut frames = vec![
            Frame::for_test(1, 7, Proto::Xmpp, Direction::ToServer, "<stream:stream>"),
            Frame::for_test(2, 7, Proto::Xmpp, Direction::ToClient, "<stream:stream id='x'>"),
            Frame::for_test(3, 7, Proto::Xmpp, Direction::ToServer, "<presence/>"),
        ];
        frames[0].kind = FrameKind::XmppHeader;
        frames[1].kind = FrameKind::XmppHeader;
        frames[2].at = std::time::Duration::from_micros(1_500_000);
        let file = render(&frames, 1_000_000_000_000_000);
        // SHB, IDB, then three EPBs; walk the blocks by their lengths.
        let mut at = 0;
        let mut packets = Vec::new();
        while at < file.len() {
            let kind = u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(&file[at + 4..at + 8], &file[at + len - 4..at + len], "trailing length");
            if kind == 6 {
                let ts = (u64::from(u32::from_le_bytes(file[at + 12..at + 16].try_into().unwrap())) << 32) | u64::from(u32::from_le_bytes(file[at + 16..at + 20].try_into().unwrap()));
                let cap = u32::from_le_bytes(file[at + 20..at + 24].try_into().unwrap()) as usize;
                packets.push((ts, file[at + 28..at + 28 + cap].to_vec()));
            }
            at += len;
        }
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[2].0, 1_000_000_001_500_000, "microseconds since the epoch");
        for (_, p) in &packets {
            assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header checksum");
            let pseudo = [&p[12..20], &[0, 6], &((p.len() - 20) as u16).to_be_bytes()[..]].concat();
            assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "TCP checksum");
        }
        let seq = |p: &[u8]| u32::from_be_bytes(p[24..28].try_into().unwrap());
        let ack = |p: &[u8]| u32::from_be_bytes(p[28..32].try_into().unwrap());
        assert_eq!(seq(&packets[2].1), seq(&packets[0].1) + "<stream:stream>".len() as u32);
        assert_eq!(ack(&packets[2].1), seq(&packets[1].1) + "<stream:stream id='x'>".len() as u32);
        assert_eq!(&packets[2].1[40..], b"<presence/>");
        assert_eq!(decode_as(&frames), ["-d tcp.port==5222,xmpp"]);
    }
}
