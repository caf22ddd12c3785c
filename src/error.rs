//! VPPCOM return codes: names, conversion to `io::Error`, and the `cvt`
//! helper that turns a C return value into a `Result`.
//!
//! VCL functions return a non-negative value on success and a negated errno
//! (`VPPCOM_E*`) on failure. This module knows all codes VCL uses without
//! needing VPP's headers, so it is usable (and tested) without VPP.

use std::fmt;
use std::io;

/// A failure code returned by VCL or VLS: a negated errno such as
/// `VPPCOM_EBADFD` (`-EBADFD`).
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct VppcomError(i32);

macro_rules! codes {
    ($($name:ident = $errno:ident, $kind:ident;)*) => {
        impl VppcomError {
            $(
                #[doc = concat!("`VPPCOM_", stringify!($name), "` (`-", stringify!($errno), "`).")]
                pub const $name: VppcomError = VppcomError(-libc::$errno);
            )*

            /// The VPPCOM name of the code, e.g. `"VPPCOM_EBADFD"`, or `None`
            /// for a code VCL does not define.
            pub fn name(self) -> Option<&'static str> {
                match -self.0 {
                    $(libc::$errno => Some(concat!("VPPCOM_", stringify!($name))),)*
                    _ => None,
                }
            }

            /// The closest `io::ErrorKind`.
            pub fn kind(self) -> io::ErrorKind {
                match -self.0 {
                    $(libc::$errno => io::ErrorKind::$kind,)*
                    _ => io::ErrorKind::Other,
                }
            }
        }
    };
}

// EWOULDBLOCK equals EAGAIN on Linux; VCL names it VPPCOM_EAGAIN first.
codes! {
    EAGAIN = EAGAIN, WouldBlock;
    EINPROGRESS = EINPROGRESS, WouldBlock;
    EFAULT = EFAULT, InvalidInput;
    ENOMEM = ENOMEM, OutOfMemory;
    EINVAL = EINVAL, InvalidInput;
    EBADFD = EBADFD, InvalidInput;
    EAFNOSUPPORT = EAFNOSUPPORT, Unsupported;
    ECONNABORTED = ECONNABORTED, ConnectionAborted;
    ECONNRESET = ECONNRESET, ConnectionReset;
    ENOTCONN = ENOTCONN, NotConnected;
    ECONNREFUSED = ECONNREFUSED, ConnectionRefused;
    ETIMEDOUT = ETIMEDOUT, TimedOut;
    EEXIST = EEXIST, AlreadyExists;
    ENOPROTOOPT = ENOPROTOOPT, Unsupported;
    EPIPE = EPIPE, BrokenPipe;
    ENOENT = ENOENT, NotFound;
    EADDRINUSE = EADDRINUSE, AddrInUse;
    ENOTSUP = ENOTSUP, Unsupported;
}

impl VppcomError {
    /// Wraps a raw negative return value. Non-negative values are not errors;
    /// they are mapped to `EINVAL` so a caller bug cannot produce `Ok`.
    pub fn from_raw(rv: i32) -> Self {
        if rv < 0 {
            VppcomError(rv)
        } else {
            VppcomError::EINVAL
        }
    }

    /// The raw (negative) value, as returned through the C ABI.
    pub fn raw(self) -> i32 {
        self.0
    }

    /// The positive errno.
    pub fn errno(self) -> i32 {
        -self.0
    }
}

impl fmt::Debug for VppcomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "VppcomError({})", self.0),
        }
    }
}

impl fmt::Display for VppcomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({n})", &n["VPPCOM_".len()..]),
            None => write!(f, "unknown VPPCOM error {}", self.0),
        }
    }
}

impl std::error::Error for VppcomError {}

impl From<VppcomError> for io::Error {
    fn from(e: VppcomError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// Turns a VCL return value into `Ok(value)` (non-negative) or the error.
#[inline]
pub fn cvt(rv: i32) -> Result<i32, VppcomError> {
    if rv < 0 {
        Err(VppcomError(rv))
    } else {
        Ok(rv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        let e = VppcomError::from_raw(-libc::EBADFD);
        assert_eq!(e, VppcomError::EBADFD);
        assert_eq!(e.name(), Some("VPPCOM_EBADFD"));
        assert_eq!(VppcomError::ECONNREFUSED.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(VppcomError::EAGAIN.kind(), io::ErrorKind::WouldBlock);
        let io: io::Error = VppcomError::ECONNREFUSED.into();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(io.to_string(), "ECONNREFUSED (VPPCOM_ECONNREFUSED)");
    }

    #[test]
    fn cvt_splits_on_sign() {
        assert_eq!(cvt(5), Ok(5));
        assert_eq!(cvt(0), Ok(0));
        assert_eq!(cvt(-libc::EPIPE), Err(VppcomError::EPIPE));
        assert_eq!(VppcomError::from_raw(3), VppcomError::EINVAL);
        assert_eq!(VppcomError::from_raw(-9999).name(), None);
        assert_eq!(format!("{:?}", VppcomError::from_raw(-9999)), "VppcomError(-9999)");
    }
}
