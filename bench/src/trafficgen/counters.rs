//! What the interface itself says it sent: its transmit counters in sysfs.

use std::{
    io,
    time::{Duration, Instant},
};

use super::{error::GenError, frame::MacAddr};

/// Transmit counters of an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TxCounters {
    /// `tx_packets`.
    pub(super) packets: u64,
    /// `tx_bytes`.
    pub(super) bytes: u64,
    /// `tx_dropped`.
    pub(super) dropped: u64,
}

impl TxCounters {
    /// The difference `self - earlier`, counter by counter.
    pub(super) fn since(&self, earlier: &TxCounters) -> TxCounters {
        TxCounters {
            packets: self.packets.wrapping_sub(earlier.packets),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
            dropped: self.dropped.wrapping_sub(earlier.dropped),
        }
    }
}

/// The interface's counters from `/sys/class/net/IF/statistics` (64-bit, unlike
/// the `rtnl_link_stats` that `getifaddrs` gives).
///
/// sysfs shows the namespace of whoever mounted it, so the interface index there
/// is compared with the one the calling thread's namespace gives;
/// `ip netns exec` mounts the right one.
pub(super) struct SysfsCounters {
    iface: String,
}

impl SysfsCounters {
    /// Check that sysfs shows `iface` as the calling thread's namespace knows it:
    /// same index and, when it has one, same MAC address. (Interface indexes
    /// repeat across namespaces; both ends of the testbed's veth are index 2.)
    pub(super) fn open(iface: &str, ifindex: u32, mac: Option<MacAddr>) -> Result<Self, GenError> {
        let this = Self {
            iface: iface.to_string(),
        };
        let foreign = || GenError::ForeignSysfs(iface.to_string());
        let index = this.read_attr("ifindex")?.ok_or_else(foreign)?;
        if index.trim().parse::<u32>().ok() != Some(ifindex) {
            return Err(foreign());
        }
        if let Some(mac) = mac {
            let address = this.read_attr("address")?.ok_or_else(foreign)?;
            if address.trim().parse::<MacAddr>().ok() != Some(mac) {
                return Err(foreign());
            }
        }
        Ok(this)
    }

    /// `/sys/class/net/IF/{name}`, or `None` when there is no such file.
    fn read_attr(&self, name: &str) -> Result<Option<String>, GenError> {
        let path = format!("/sys/class/net/{}/{name}", self.iface);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(GenError::Counters {
                iface: self.iface.clone(),
                path,
                source,
            }),
        }
    }

    fn read_one(&self, name: &str) -> Result<u64, GenError> {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.iface);
        let err = |source| GenError::Counters {
            iface: self.iface.clone(),
            path: path.clone(),
            source,
        };
        std::fs::read_to_string(&path)
            .map_err(err)?
            .trim()
            .parse()
            .map_err(|_| err(io::Error::from(io::ErrorKind::InvalidData)))
    }

    /// The transmit counters now.
    pub(super) fn read(&self) -> Result<TxCounters, GenError> {
        Ok(TxCounters {
            packets: self.read_one("tx_packets")?,
            bytes: self.read_one("tx_bytes")?,
            dropped: self.read_one("tx_dropped")?,
        })
    }

    /// Read until the counters account for `expected` frames or stop moving: a
    /// veth counts a frame when the peer's NAPI takes it off the ring, which may
    /// trail the syscall that queued it.
    pub(super) fn settle(&self, since: &TxCounters, expected: u64) -> Result<TxCounters, GenError> {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut last = self.read()?;
        loop {
            let d = last.since(since);
            if d.packets + d.dropped >= expected || Instant::now() >= deadline {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(10));
            let now = self.read()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
    }
}
