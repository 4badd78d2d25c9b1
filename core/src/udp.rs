//! The `udp` source: raw `CThostFtdcDepthMarketDataField` structs, one per datagram, as a CTP relay
//! on another host sends them (unicast or multicast). The hot thread polls the socket itself —
//! non-blocking `recvmmsg`, a batch per call, no allocation — so a datagram goes from the kernel to
//! the ring without crossing threads. The struct version is told by the datagram size later, in
//! normalization; this module only moves bytes, from the senders `source.udp.allow` lists: any
//! other sender's datagram is dropped here and counted (`udp_refused`).

use std::{
    io::IoSliceMut,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use anyhow::Context;
use nix::{
    errno::Errno,
    sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt},
};

use crate::config::UdpConfig;

/// Most datagrams taken per `recvmmsg`.
pub const MAX_BATCH: usize = 64;
/// Receive buffer per datagram: longer than any CTP struct, so an oversized datagram arrives at a
/// length that normalization rejects by size.
const BUF_LEN: usize = 1024;

/// A bound, non-blocking UDP socket, ready to be turned into a [`UdpSource`] on the thread that
/// polls it (the `recvmmsg` headers hold raw pointers and stay on one thread).
#[derive(Debug)]
pub struct UdpBound {
    socket: UdpSocket,
    batch: usize,
    allow: Box<[ipnet::IpNet]>,
}

/// A bound, non-blocking UDP socket with preallocated receive buffers and `recvmmsg` headers.
#[derive(Debug)]
pub struct UdpSource {
    socket: UdpSocket,
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; BUF_LEN]; MAX_BATCH]>,
    batch: usize,
    errors: u64,
    allow: Box<[ipnet::IpNet]>,
    refused: u64,
}

impl UdpBound {
    /// Binds (and joins the multicast group, if configured).
    pub fn bind(config: &UdpConfig) -> anyhow::Result<UdpBound> {
        let socket = UdpSocket::bind(config.bind).with_context(|| format!("binding UDP socket to {}", config.bind))?;
        socket.set_nonblocking(true).context("making the UDP socket non-blocking")?;
        if let Err(e) = setsockopt(&socket, sockopt::RcvBuf, &config.recv_buffer_bytes) {
            tracing::warn!(requested = config.recv_buffer_bytes, error = %e, "could not set SO_RCVBUF");
        }
        if let Some(group) = config.multicast_group {
            socket
                .join_multicast_v4(&group, &config.multicast_interface)
                .with_context(|| format!("joining multicast group {group} on {}", config.multicast_interface))?;
        }
        Ok(UdpBound { socket, batch: config.batch.clamp(1, MAX_BATCH), allow: config.allowed().into_boxed_slice() })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Allocates the receive buffers and headers; call on the polling thread, before polling.
    pub fn into_source(self) -> UdpSource {
        UdpSource {
            socket: self.socket,
            headers: MultiHeaders::preallocate(MAX_BATCH, None),
            bufs: Box::new([[0; BUF_LEN]; MAX_BATCH]),
            batch: self.batch,
            errors: 0,
            allow: self.allow,
            refused: 0,
        }
    }
}

impl UdpSource {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receive errors other than "nothing there" since the previous call (the engine publishes them
    /// as `udp_receive_errors`).
    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }

    /// Datagrams dropped because their sender is not allowed, since the previous call (the engine
    /// publishes them as `udp_refused`).
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    /// Takes up to one batch of datagrams without blocking and hands each from an allowed sender
    /// to `f` with the receive time (one clock read per batch). Returns how many arrived (allowed
    /// or not).
    #[inline]
    pub fn poll(&mut self, mut f: impl FnMut(&[u8], i64)) -> usize {
        let mut lens = [0usize; MAX_BATCH];
        let received = {
            let mut bufs = self.bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(bufs.next().expect("MAX_BATCH buffers"))]);
            match recvmmsg(
                self.socket.as_raw_fd(),
                &mut self.headers,
                iovs[..self.batch].iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for msg in results {
                        // usize::MAX marks a datagram whose sender is not allowed.
                        lens[n] =
                            if allowed_sender(&self.allow, msg.address.as_ref()) { msg.bytes } else { usize::MAX };
                        n += 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => 0,
                Err(_) => {
                    self.errors += 1;
                    0
                }
            }
        };
        if received > 0 {
            let now = qilin_shm::now_ns();
            for (buf, len) in self.bufs.iter().zip(&lens[..received]) {
                if *len == usize::MAX {
                    self.refused += 1;
                } else {
                    f(&buf[..(*len).min(BUF_LEN)], now);
                }
            }
        }
        received
    }
}

/// Whether `address` (a datagram's sender) is in `allow`; no address (never for UDP) is not.
#[inline]
fn allowed_sender(allow: &[ipnet::IpNet], address: Option<&SockaddrStorage>) -> bool {
    let Some(address) = address else { return false };
    let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
        (Some(v4), _) => std::net::IpAddr::V4(v4.ip()),
        (None, Some(v6)) => std::net::IpAddr::V6(v6.ip()),
        _ => return false,
    };
    allow.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_a_batch_of_datagrams_of_any_size() {
        let config = UdpConfig { bind: "127.0.0.1:0".parse().unwrap(), batch: 8, ..UdpConfig::default() };
        let mut source = UdpBound::bind(&config).unwrap().into_source();
        let to = source.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [584usize, 568, 408, 3, 2000] {
            sender.send_to(&vec![len as u8; len], to).unwrap();
        }
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < 5 && std::time::Instant::now() < deadline {
            source.poll(|bytes, ns| {
                assert!(ns > 0);
                got.push((bytes.len(), bytes[0]));
            });
        }
        assert_eq!(got, [(584, 584u16 as u8), (568, 568u16 as u8), (408, 408u16 as u8), (3, 3), (1024, 2000u16 as u8)]);
        assert_eq!(source.poll(|_, _| panic!("nothing more was sent")), 0);
    }
}
