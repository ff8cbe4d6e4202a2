//! Names and ports that parallel tests cannot collide on.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `prefix` plus the process id, a per-process counter and clock bits: unique across the
/// test processes nextest runs at once and across reruns that left something behind.
/// Lower-case ASCII, digits and `_`, so it is valid as a database or container name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{n}_{:x}", std::process::id(), nanos & 0xfffff)
}

/// A loopback TCP port nothing listens on at the moment of the call. The kernel picks it,
/// so concurrent callers get different ports; whoever binds it next must still expect to
/// lose a race with an unrelated process.
pub fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}
