//! A free TCP port on 127.0.0.1, for a daemon or a page server a test
//! starts (the kernel's pick: another process could still take it before
//! the test binds it).
#![allow(dead_code)] // each test binary uses part of it

/// A port no one listens on now.
pub fn try_free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A port no one listens on now; panics if none can be had.
pub fn free_port() -> u16 {
    try_free_port().expect("a free port on 127.0.0.1")
}
