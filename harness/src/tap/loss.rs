//! Datagrams lost before a UDP tap could read them: the kernel drops them at the tap's socket
//! when its receive buffer is full, and counts them (the `drops` column of /proc/net/udp).

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
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str())).then(|| f.last()?.parse().ok()).flatten()
    })
}

/// Every `every`, record a `Lost` frame when the drop count of the tap's socket rose past
/// `seen`. The table is read on a blocking thread: with thousands of UDP sockets on the
/// machine the kernel takes milliseconds to make it, and the relay must go on reading.
pub async fn watch(rec: std::sync::Arc<Recorder>, origin: Origin, mut seen: u64, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let port = origin.tap.port();
        if let Ok(Some(now)) = tokio::task::spawn_blocking(move || udp_drops(port)).await {
            record_drops(&rec, &origin, &mut seen, now);
        }
    }
}

/// Record a `Lost` frame when the drop count `now` is past `seen`.
fn record_drops(rec: &Recorder, origin: &Origin, seen: &mut u64, now: u64) {
    if now > *seen {
        let n = now - *seen;
        *seen = now;
        let why = format!("{n} datagram(s) dropped by the kernel at the tap's socket before the tap could read them");
        tracing::warn!(server = %origin.server, tap = %origin.tap, "{why}");
        rec.record(origin, Direction::ToServer, FrameKind::Lost { datagrams: n, why }, Vec::new());
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
}
