//! Fresh random identifiers: tokens for names, tags, Call-IDs and nonces, and SIP branches.

/// A random lowercase hex token (for branches, tags, Call-IDs, nonces).
pub fn token(len: usize) -> String {
    let mut b = vec![0u8; len.div_ceil(2)];
    getrandom::fill(&mut b).expect("OS random source");
    let mut s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s.truncate(len);
    s
}

/// A new RFC 3261 branch (magic cookie + random).
pub fn new_branch() -> String {
    format!("z9hG4bK{}", token(16))
}
