//! Datagrams lost before a UDP tap could read them: the kernel drops them at the tap's socket,
//! or at a client's upstream socket, when its receive buffer is full, and counts them (the
//! `drops` column of /proc/net/udp).

use crate::trace::frame::{Direction, FrameKind, Origin, Recorder};

/// Ask for a receive buffer of `bytes` (the kernel caps it at net.core.rmem_max).
pub fn set_receive_buffer(s: &impl std::os::fd::AsRawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt on an fd we own, with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &v as *const libc::c_int as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t);
    }
}

/// The kernel's drop count of the IPv4 UDP socket on 127.0.0.1:`port`, if it has one.
pub fn udp_drops(port: u16) -> Option<u64> {
    drops_in(&std::fs::read_to_string("/proc/net/udp").ok()?, port)
}

/// The `drops` of the 127.0.0.1:`port` line of a /proc/net/udp table.
pub fn drops_in(table: &str, port: u16) -> Option<u64> {
    all_drops(table).get(&port).copied()
}

/// Every 127.0.0.1 socket's drops in a /proc/net/udp table, by port.
fn all_drops(table: &str) -> std::collections::HashMap<u16, u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.strip_prefix("0100007F:")?;
            Some((u16::from_str_radix(port, 16).ok()?, f.last()?.parse().ok()?))
        })
        .collect()
}

/// A socket of a UDP tap whose drops are recorded: the tap's own (what clients sent), or a
/// client's upstream socket (what the server answered).
#[derive(Debug, Clone)]
pub struct Watched {
    pub port: u16,
    pub origin: Origin,
    /// Which way the datagrams it drops were going.
    pub dir: Direction,
    /// Its drop count when last read.
    pub seen: u64,
}

/// The sockets a tap's watcher reads, shared with the relay that opens and closes them.
pub type WatchList = std::sync::Arc<std::sync::Mutex<Vec<Watched>>>;

/// Every `every`, record a `Lost` frame for each watched socket whose drop count rose. The
/// table is read on a blocking thread: with thousands of UDP sockets on the machine the kernel
/// takes milliseconds to make it, and the relay must go on reading.
pub async fn watch(rec: std::sync::Arc<Recorder>, list: WatchList, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Ok(Ok(table)) = tokio::task::spawn_blocking(|| std::fs::read_to_string("/proc/net/udp")).await else { continue };
        let drops = all_drops(&table);
        for w in list.lock().expect("watch list lock").iter_mut() {
            if let Some(&now) = drops.get(&w.port) {
                record_drops(&rec, w, now);
            }
        }
    }
}

/// Record a `Lost` frame when the drop count `now` is past what `w` has seen.
fn record_drops(rec: &Recorder, w: &mut Watched, now: u64) {
    if now > w.seen {
        let n = now - w.seen;
        w.seen = now;
        let why = match w.dir {
            Direction::ToServer => format!("{n} datagram(s) dropped by the kernel at the tap's socket before the tap could read them"),
            Direction::ToClient => format!("{n} datagram(s) from the server dropped by the kernel at the tap's upstream socket for this client before the tap could read them"),
        };
        tracing::warn!(server = %w.origin.server, tap = %w.origin.tap, "{why}");
        rec.record(&w.origin, w.dir, FrameKind::Lost { datagrams: n, why }, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_count_is_read_from_the_line_of_the_port() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 17\n\
             2: 0100007F:13C5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n";
        assert_eq!(drops_in(table, 5060), Some(17));
        assert_eq!(drops_in(table, 5061), Some(0));
        assert_eq!(drops_in(table, 5062), None);
    }

    #[test]
    fn a_rise_in_either_direction_is_recorded_once_on_its_own_origin() {
        let rec = Recorder::new();
        let origin = |conn| Origin {
            server: "s".into(), proto: crate::trace::frame::Proto::Sip, transport: crate::trace::frame::Transport::Udp, conn,
            client: "127.0.0.1:1".parse().unwrap(), tap: "127.0.0.1:2".parse().unwrap(), upstream: None,
        };
        let mut tap = Watched { port: 2, origin: origin(1), dir: Direction::ToServer, seen: 5 };
        let mut up = Watched { port: 3, origin: origin(2), dir: Direction::ToClient, seen: 0 };
        record_drops(&rec, &mut tap, 5);
        record_drops(&rec, &mut up, 7);
        record_drops(&rec, &mut up, 7);
        record_drops(&rec, &mut tap, 9);
        let lost: Vec<(u64, Direction, u64)> = rec
            .frames_for_all()
            .iter()
            .map(|f| match f.kind { FrameKind::Lost { datagrams, .. } => (f.conn, f.dir, datagrams), _ => panic!("{f:?}") })
            .collect();
        assert_eq!(lost, [(2, Direction::ToClient, 7), (1, Direction::ToServer, 4)]);
    }
}
