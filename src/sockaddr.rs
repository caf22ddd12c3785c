//! `std::net::SocketAddr` ⇄ the address part of VCL's `vppcom_endpt_t`.
//!
//! VCL describes an endpoint by an `is_ip4` flag, a pointer to 4 or 16
//! address bytes and a port in network byte order. [`Endpoint`] owns that
//! storage so the pointer handed to VCL stays valid for the call.

#[cfg(feature = "vpp")]
use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

#[cfg(feature = "vpp")]
use vpp_sys as sys;

/// Owned storage for one VCL endpoint.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// 1 for IPv4, 0 for IPv6 (VCL's `VPPCOM_IS_IP4`/`VPPCOM_IS_IP6`).
    pub is_ip4: u8,
    /// Address bytes; IPv4 uses the first 4.
    pub ip: [u8; 16],
    /// Port in network byte order, as VCL stores it.
    pub port_be: u16,
}

impl Endpoint {
    /// Endpoint of `addr`.
    pub fn from_socket_addr(addr: &SocketAddr) -> Self {
        let mut ip = [0u8; 16];
        let is_ip4 = match addr.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                1
            }
            IpAddr::V6(v6) => {
                ip.copy_from_slice(&v6.octets());
                0
            }
        };
        Endpoint { is_ip4, ip, port_be: addr.port().to_be() }
    }

    /// The `SocketAddr` this endpoint holds.
    pub fn to_socket_addr(&self) -> SocketAddr {
        let port = u16::from_be(self.port_be);
        if self.is_ip4 != 0 {
            SocketAddr::new(Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]).into(), port)
        } else {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(self.ip), port, 0, 0))
        }
    }
}

#[cfg(feature = "vpp")]
/// `vppcom_endpt_t` whose address pointer refers into `ep`.
pub(crate) fn endpt(ep: &mut Endpoint) -> sys::vppcom_endpt_t {
    sys::vppcom_endpt_t { is_ip4: ep.is_ip4, ip: ep.ip.as_mut_ptr(), port: ep.port_be, ..Default::default() }
}
#[cfg(feature = "vpp")]
/// Calls `f` with a `vppcom_endpt_t*` for `addr` (or an empty endpoint for
/// VCL to fill), and returns `f`'s result with the endpoint's address after
/// the call: the one way this crate, its tests and its benchmarks hand an
/// address to a `vppcom_*` or `vls_*` call.
pub fn with_endpt<R>(addr: Option<&SocketAddr>, f: impl FnOnce(*mut c_void) -> R) -> (R, SocketAddr) {
    let mut e = addr.map(Endpoint::from_socket_addr).unwrap_or_default();
    let mut raw = endpt(&mut e);
    let r = f((&mut raw as *mut sys::vppcom_endpt_t).cast());
    e.is_ip4 = raw.is_ip4;
    e.port_be = raw.port;
    (r, e.to_socket_addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for s in ["127.0.0.1:1234", "10.1.2.3:65535", "[::1]:80", "[2001:db8::7]:0"] {
            let a: SocketAddr = s.parse().unwrap();
            let e = Endpoint::from_socket_addr(&a);
            assert_eq!(e.to_socket_addr(), a, "{s}");
        }
        let e = Endpoint::from_socket_addr(&"1.2.3.4:258".parse().unwrap());
        assert_eq!(e.is_ip4, 1);
        assert_eq!(&e.ip[..4], &[1, 2, 3, 4]);
        assert_eq!(e.port_be.to_ne_bytes(), [1, 2]); // network order in memory
    }
}
