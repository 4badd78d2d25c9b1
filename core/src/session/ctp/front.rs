//! Which of a session's registered fronts the SDK is connected to. `OnFrontConnected` does not say
//! (the SDK picks among the registered fronts itself), so the fronts' addresses are resolved when
//! the session connects and, when the SDK reports a connection, matched against this process's
//! established TCP connections (`/proc/self/net/tcp`, `tcp6`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// A session's fronts, their addresses resolved.
#[derive(Clone, Debug, Default)]
pub struct FrontSet {
    fronts: Vec<(String, Vec<SocketAddr>)>,
}

impl FrontSet {
    /// Resolves `tcp://host:port` / `ssl://host:port` fronts (DNS may block: not on an SDK thread).
    pub fn resolve(fronts: &[String]) -> FrontSet {
        let fronts = fronts
            .iter()
            .map(|front| {
                let hostport = front.split_once("://").map_or(front.as_str(), |(_, rest)| rest);
                let addrs = hostport.to_socket_addrs().map(Iterator::collect).unwrap_or_default();
                (front.clone(), addrs)
            })
            .collect();
        FrontSet { fronts }
    }

    /// The front this process has an established connection to; with one front registered, that
    /// one; otherwise the fronts registered, `a | b`.
    pub fn in_use(&self) -> String {
        if let [(only, _)] = self.fronts.as_slice() {
            return only.clone();
        }
        let peers = established_peers();
        let mut matching = self.fronts.iter().filter(|(_, addrs)| addrs.iter().any(|a| peers.contains(a)));
        match (matching.next(), matching.next()) {
            (Some((front, _)), None) => front.clone(),
            _ => self.fronts.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(" | "),
        }
    }
}

/// Remote addresses of this process's established TCP connections (IPv4 and IPv6).
pub fn established_peers() -> Vec<SocketAddr> {
    let mut peers = Vec::new();
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        peers.extend(text.lines().skip(1).filter_map(parse_established));
    }
    peers
}

/// The remote address of one `/proc/net/tcp[6]` line in state ESTABLISHED (01).
fn parse_established(line: &str) -> Option<SocketAddr> {
    let mut fields = line.split_whitespace();
    let (_slot, _local, remote, state) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    if state != "01" {
        return None;
    }
    let (ip, port) = remote.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints the address's bytes as native-endian 32-bit words (x86-64: little-endian).
    let words: Vec<u32> = ip
        .as_bytes()
        .chunks(8)
        .map(|c| std::str::from_utf8(c).ok().and_then(|w| u32::from_str_radix(w, 16).ok()))
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (chunk, w) in bytes.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn the_connected_front_is_found_among_several() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let unused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let fronts = [format!("tcp://127.0.0.1:{unused}"), format!("tcp://127.0.0.1:{port}")];
        let set = FrontSet::resolve(&fronts);
        assert_eq!(set.in_use(), format!("tcp://127.0.0.1:{unused} | tcp://127.0.0.1:{port}"));
        let _stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _accepted = listener.accept().unwrap();
        assert_eq!(set.in_use(), fronts[1]);
        assert_eq!(FrontSet::resolve(&fronts[..1]).in_use(), fronts[0]);
    }

    #[test]
    fn proc_lines_parse() {
        let v4 = "   0: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1";
        assert_eq!(parse_established(v4), Some("127.0.0.1:8080".parse().unwrap()));
        let listen = "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2";
        assert_eq!(parse_established(listen), None);
        let v6 = "   0: 00000000000000000000000001000000:A1B2 00000000000000000000000001000000:1F90 01 0 0 0";
        assert_eq!(parse_established(v6), Some("[::1]:8080".parse().unwrap()));
    }
}
