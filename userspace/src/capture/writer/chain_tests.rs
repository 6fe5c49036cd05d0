//! The one-copy writer's iovecs with multi-buffer records: each frame buffer
//! is an iovec of its own, and no `writev` gets more than the kernel takes.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use super::{
    engine::{Core, Files, Header},
    output::Sink,
    rotation::Settings,
    *,
};
use crate::capture::chain_tests::{Chains, records, split, temp, udp_packet};

/// Takes everything, and fails a call with more iovecs than Linux's
/// `IOV_MAX` as writev(2) does (EINVAL); counts the calls and their iovecs.
#[derive(Default)]
struct IovecSink {
    data: Vec<u8>,
    calls: Vec<usize>,
}

impl Write for IovecSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if bufs.len() > 1024 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.calls.push(bufs.len());
        let before = self.data.len();
        for b in bufs {
            self.data.extend_from_slice(b);
        }
        Ok(self.data.len() - before)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for IovecSink {
    fn truncate(&mut self, len: u64) -> io::Result<bool> {
        self.data.truncate(len as usize);
        Ok(true)
    }
    fn create(_: &Path) -> io::Result<Self> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

#[test]
fn chains_beyond_one_writev_are_split_between_writes() {
    // 300 records of 5 buffers: 1800 iovecs of data, where IOV_MAX is 1024.
    let mut chains = Chains::new(1600);
    let lens = split(5);
    let packets: Vec<Vec<u8>> = (0..300).map(|i| udp_packet(9014, 53, i as u8)).collect();
    let views: Vec<crate::frame::FrameView> = packets
        .iter()
        .enumerate()
        .map(|(i, p)| chains.view(p, &lens, i as u64))
        .collect();
    for format in [Format::Pcap, Format::PcapNg] {
        let settings = Settings {
            format,
            snaplen: MAX_SNAPLEN,
            packet_buffered: false,
            rotation: None,
        };
        let mut core = Core::new(
            settings,
            IovecSink::default(),
            Files::default(),
            Header::default(),
            &[0],
            Box::new(SystemClock),
        );
        core.write_direct(&views);
        assert!(core.error.is_none(), "{:?}", core.error);
        assert_eq!(core.stats().records_written, 300);
        // Six iovecs a record (its header, its five buffers): 170 of them fill
        // one call of at most 1024, the rest the next.
        let calls = &core.sink.calls;
        assert_eq!(calls, &[170 * 6 + 1, 130 * 6 + 1], "{format:?}");
        let path = temp(&format!("iovecs-{format:?}"));
        fs::write(&path, &core.sink.data).unwrap();
        let got = records(&path, format);
        fs::remove_file(&path).unwrap();
        assert_eq!(got.len(), 300);
        for (i, (g, p)) in got.iter().zip(&packets).enumerate() {
            assert!(g.0 == 9014 && g.1 == *p, "record {i} in {format:?}");
        }
    }
}
