//! Byte layouts of the two capture formats: pure encoders into a `Vec<u8>`, no I/O.
//!
//! Sources, quoted beside the code they justify:
//! - classic pcap: draft-ietf-opsawg-pcap ("PCAP Capture File Format");
//! - pcapng: draft-ietf-opsawg-pcapng ("PCAP Now Generic (pcapng) Capture File
//!   Format").
//!
//! Both formats are written in the host's byte order, as libpcap does: "The magic
//! number is stored in native endian format" (pcap, "File Endian Information"), and
//! "Data contained in each section will always be saved according to the
//! characteristics (little-endian / big-endian) of the capturing machine" (pcapng,
//! "Endianness"). Readers tell the order from the magic numbers.

/// The largest snapshot length accepted: libpcap's and Wireshark's maximum for
/// Ethernet (tcpdump refuses `-s` above it), and the default, as in tcpdump.
pub const MAX_SNAPLEN: u32 = 262_144;

/// LINKTYPE_ETHERNET: frames start with the Ethernet header.
pub(super) const LINKTYPE_ETHERNET: u16 = 1;

// ---------------------------------------------------------------- classic pcap

/// "if it is 0xA1B23C4D, timestamps in Packet Records are in seconds and
/// nanoseconds" (pcap, "File Header").
pub(super) const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// "The File Header length is 24 octets."
pub(super) const PCAP_FILE_HEADER_LEN: usize = 24;
/// "The Packet Record begins with a 16-octet header, followed by data from the
/// packet."
pub(super) const PCAP_RECORD_HEADER_LEN: usize = 16;

/// Appends the 24-byte pcap File Header.
pub(super) fn pcap_file_header(buf: &mut Vec<u8>, snaplen: u32) {
    let mut h = [0u8; PCAP_FILE_HEADER_LEN];
    h[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_ne_bytes());
    // "The value for the current version of the format is 2" / "... is 4".
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // Reserved1 (thiszone) and Reserved2 (sigfigs): "SHOULD be filled with 0".
    h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
    // "LinkType and additional information": FCS len, R, P and Reserved3 are 0
    // (we do not capture the FCS), LinkType in the low 16 bits.
    h[20..24].copy_from_slice(&u32::from(LINKTYPE_ETHERNET).to_ne_bytes());
    buf.extend_from_slice(&h);
}

/// Bytes one pcap record of `caplen` captured bytes takes in the file: "Packet
/// Records are not padded to a 4-octet boundary".
#[inline]
pub(super) const fn pcap_record_len(caplen: usize) -> usize {
    PCAP_RECORD_HEADER_LEN + caplen
}

/// Appends one Packet Record: the first `caplen` bytes of `data` (`caplen` =
/// min(len, snaplen)) behind its header; the original length stays `data.len()`.
/// (The writer itself uses [`pcap_record_with`], with the record's wire length.)
#[cfg(test)]
pub(super) fn pcap_record(buf: &mut Vec<u8>, ts_ns: u64, data: &[u8], caplen: usize) {
    pcap_record_with(buf, ts_ns, data.len(), caplen, |b| {
        b.extend_from_slice(&data[..caplen]);
    });
}

/// A pcap record of a frame of `len` bytes cut to `caplen`, whose `caplen`
/// bytes of data `body` puts in (or accounts for elsewhere: the one-copy
/// writer hands them to the kernel straight from the frame).
pub(super) fn pcap_record_with(
    buf: &mut Vec<u8>,
    ts_ns: u64,
    len: usize,
    caplen: usize,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let mut h = [0u8; PCAP_RECORD_HEADER_LEN];
    // "The seconds value is a 32-bit unsigned integer": a u32 of seconds covers
    // 1970..2106; later clocks wrap, as they do in libpcap.
    h[0..4].copy_from_slice(&((ts_ns / NANOS) as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&((ts_ns % NANOS) as u32).to_ne_bytes());
    // Captured Packet Length: "the minimum value among the Original Packet Length
    // and the snapshot length".
    h[8..12].copy_from_slice(&len32(caplen).to_ne_bytes());
    h[12..16].copy_from_slice(&len32(len).to_ne_bytes());
    buf.extend_from_slice(&h);
    body(buf);
}

// ---------------------------------------------------------------------- pcapng

/// Section Header Block: "the integer corresponding to the 4-char string
/// "\n\r\r\n" (0x0A0D0D0A)".
pub(super) const BT_SHB: u32 = 0x0a0d_0d0a;
/// "The block type of the Interface Description Block is 1."
pub(super) const BT_IDB: u32 = 1;
/// "The block type of the Interface Statistics Block is 5."
pub(super) const BT_ISB: u32 = 5;
/// "The block type of the Enhanced Packet Block is 6."
pub(super) const BT_EPB: u32 = 6;
/// "Byte-Order Magic (32 bits): an unsigned magic number, whose value is the
/// hexadecimal number 0x1A2B3C4D."
pub(super) const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const OPT_ENDOFOPT: u16 = 0;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_FILTER: u16 = 11;
const EPB_FLAGS: u16 = 2;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_OSDROP: u16 = 7;

/// if_tsresol = 9: "If the Most Significant Bit is equal to zero, the remaining
/// bits indicates the resolution of the timestamp as a negative power of 10",
/// so timestamps are nanoseconds, the unit of [`super::CaptureRecord::timestamp_ns`].
pub(super) const TSRESOL_NS: u8 = 9;

/// epb_flags bits 0-1: "Inbound / Outbound packet (00 = information not available,
/// 01 = inbound, 10 = outbound)".
pub(super) const EPB_FLAG_INBOUND: u32 = 0b01;
/// See [`EPB_FLAG_INBOUND`].
pub(super) const EPB_FLAG_OUTBOUND: u32 = 0b10;

/// if_filter's first octet: "a code of the filter used (e.g. if this is a libpcap
/// string, or BPF bytecode ...)"; its example, '00'"tcp port 23 and host
/// 192.0.2.5", and Wireshark read 0 as a libpcap filter string.
pub(super) const FILTER_LIBPCAP_STRING: u8 = 0;

/// Fixed part of an EPB as we write it: the 28 bytes before Packet Data, the
/// epb_flags option (4 + 4), opt_endofopt (4) and the trailing Block Total Length.
pub(super) const EPB_OVERHEAD: usize = 28 + 8 + 4 + 4;

const NANOS: u64 = 1_000_000_000;

/// Zero bytes that bring `n` up to a multiple of 4 ("padded to 32 bits").
#[inline]
pub(super) const fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Lengths in the formats are 32-bit. Frames never come near 4 GiB; saturate
/// rather than wrap if a caller ever passes such a thing.
#[inline]
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Bytes one EPB of `caplen` captured bytes takes in the file.
#[inline]
pub(super) const fn epb_len(caplen: usize) -> usize {
    EPB_OVERHEAD + caplen + pad4(caplen)
}

/// What one Enhanced Packet Block says of its frame besides the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EpbHeader {
    pub interface_id: u32,
    pub ts_ns: u64,
    /// The frame's length on the wire (its original length).
    pub len: usize,
    /// Bytes of it captured: min(len, snaplen).
    pub caplen: usize,
    /// The epb_flags word: [`EPB_FLAG_INBOUND`] or [`EPB_FLAG_OUTBOUND`].
    pub flags: u32,
}

/// The epb_flags word for a frame's direction.
#[inline]
pub(super) const fn epb_flags(direction: super::Direction) -> u32 {
    match direction {
        super::Direction::Inbound => EPB_FLAG_INBOUND,
        super::Direction::Outbound => EPB_FLAG_OUTBOUND,
    }
}

/// Appends one Enhanced Packet Block with its epb_flags option: the first
/// `h.caplen` bytes of `data` (`h.len` = `data.len()`). (The writer itself uses
/// [`epb_with`], which takes the data from each buffer of the frame.)
#[cfg(test)]
pub(super) fn epb(buf: &mut Vec<u8>, h: &EpbHeader, data: &[u8]) {
    epb_with(buf, h, |b| b.extend_from_slice(&data[..h.caplen]));
}

/// An Enhanced Packet Block of a frame of `h.len` bytes cut to `h.caplen`,
/// whose data `body` puts in (or accounts for elsewhere, as in
/// [`pcap_record_with`]).
pub(super) fn epb_with(buf: &mut Vec<u8>, h: &EpbHeader, body: impl FnOnce(&mut Vec<u8>)) {
    let EpbHeader {
        interface_id,
        ts_ns,
        len,
        caplen,
        flags,
    } = *h;
    let pad = pad4(caplen);
    let total = len32(EPB_OVERHEAD + caplen + pad).to_ne_bytes();
    let mut h = [0u8; 28];
    h[0..4].copy_from_slice(&BT_EPB.to_ne_bytes());
    h[4..8].copy_from_slice(&total);
    // "Interface ID (32 bits): ... the correct interface will be the one whose
    // Interface Description Block ... is identified by the same number".
    h[8..12].copy_from_slice(&interface_id.to_ne_bytes());
    // "Timestamp (64 bits): two 32-bit unsigned integers ... with the first value
    // being the upper 32 bits of that integer and the second value being the lower
    // 32 bits", in units of if_tsresol (ns here).
    h[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
    h[16..20].copy_from_slice(&(ts_ns as u32).to_ne_bytes());
    // "Captured Packet Length ... does not include the padding octets".
    h[20..24].copy_from_slice(&len32(caplen).to_ne_bytes());
    h[24..28].copy_from_slice(&len32(len).to_ne_bytes());
    buf.extend_from_slice(&h);
    body(buf);

    // Up to 3 bytes of padding ("The alignment octets ... MUST be filled with
    // zeroes"), then the options and the trailing length, in one copy.
    let mut t = [0u8; 3 + 16];
    t[3..5].copy_from_slice(&EPB_FLAGS.to_ne_bytes());
    t[5..7].copy_from_slice(&4u16.to_ne_bytes());
    t[7..11].copy_from_slice(&flags.to_ne_bytes());
    // t[11..15]: opt_endofopt, code 0 length 0. "Code that writes pcapng files
    // MUST put an opt_endofopt option at the end of an option list."
    t[15..19].copy_from_slice(&total);
    buf.extend_from_slice(&t[3 - pad..]);
}

/// Builds one block with options: writes the header on creation, patches both
/// Block Total Length fields on [`BlockBuilder::finish`].
struct BlockBuilder<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    has_options: bool,
}

impl<'a> BlockBuilder<'a> {
    fn new(buf: &'a mut Vec<u8>, block_type: u32) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&block_type.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // patched in finish()
        Self {
            buf,
            start,
            has_options: false,
        }
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// An option: "Option Type (16 bits)", "Option Length (16 bits) ... without
    /// the padding octets", "Option Value ... padded to a 32-bit boundary".
    fn option(&mut self, code: u16, value: &[u8]) -> &mut Self {
        // Our option values are short strings and fixed-size numbers.
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        let value = &value[..usize::from(len)];
        self.has_options = true;
        self.u16(code).u16(len);
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(&[0u8; 3][..pad4(value.len())]);
        self
    }

    /// A timestamp option "consisting of two 32-bit unsigned integers, in the same
    /// format as defined for timestamps in the Enhanced Packet Block" (upper 32
    /// bits first), unlike the counters, which are plain 64-bit values.
    fn ts_option(&mut self, code: u16, ts_ns: u64) -> &mut Self {
        let mut v = [0u8; 8];
        v[0..4].copy_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
        v[4..8].copy_from_slice(&(ts_ns as u32).to_ne_bytes());
        self.option(code, &v)
    }

    fn finish(self) {
        if self.has_options {
            self.buf.extend_from_slice(&OPT_ENDOFOPT.to_ne_bytes());
            self.buf.extend_from_slice(&0u16.to_ne_bytes());
        }
        // "Block Total Length ... This value MUST be a multiple of 4": every field
        // and every option is, so the whole block is.
        let total = len32(self.buf.len() - self.start + 4).to_ne_bytes();
        self.buf.extend_from_slice(&total);
        self.buf[self.start + 4..self.start + 8].copy_from_slice(&total);
    }
}

/// Appends a Section Header Block, version 1.0, unspecified section length, with
/// shb_os = `os` ("the name of the operating system used to create this
/// section") and shb_userappl = `userappl`.
pub(super) fn shb(buf: &mut Vec<u8>, os: &str, userappl: &str) {
    let mut b = BlockBuilder::new(buf, BT_SHB);
    b.u32(BYTE_ORDER_MAGIC)
        // "Writers of pcapng files MUST NOT write SHBs with a Major Version other
        // than 1 or a Minor Version other than 0."
        .u16(1)
        .u16(0)
        // "If the Section Length is -1 (0xFFFFFFFFFFFFFFFF), this means that the
        // size of the section is not specified": we stream, so we cannot know it.
        .u64(u64::MAX)
        .option(SHB_OS, os.as_bytes())
        .option(SHB_USERAPPL, userappl.as_bytes());
    b.finish();
}

/// What an Interface Description Block names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IdbText<'a> {
    /// if_name: the interface ("eth0").
    pub name: &'a str,
    /// if_description: which of its queues ("eth0 RX queue 3").
    pub description: &'a str,
    /// if_filter: the capture's filter expression, a libpcap filter string.
    pub filter: Option<&'a str>,
}

/// Appends an Interface Description Block for Ethernet with if_name,
/// if_description, if_tsresol = 9 (nanoseconds) and, when given, if_filter.
pub(super) fn idb(buf: &mut Vec<u8>, snaplen: u32, text: &IdbText<'_>) {
    let mut b = BlockBuilder::new(buf, BT_IDB);
    // "LinkType (16 bits)", "Reserved (16 bits): ... MUST be filled with 0",
    // "SnapLen (32 bits)".
    b.u16(LINKTYPE_ETHERNET)
        .u16(0)
        .u32(snaplen)
        .option(IF_NAME, text.name.as_bytes())
        .option(IF_DESCRIPTION, text.description.as_bytes())
        // "If this option is not present, a resolution of 10^-6 is assumed".
        .option(IF_TSRESOL, &[TSRESOL_NS]);
    if let Some(filter) = text.filter {
        let mut value = Vec::with_capacity(1 + filter.len());
        value.push(FILTER_LIBPCAP_STRING);
        value.extend_from_slice(filter.as_bytes());
        b.option(IF_FILTER, &value);
    }
    b.finish();
}

/// Counters for one Interface Statistics Block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct IsbCounters {
    pub ifrecv: u64,
    pub ifdrop: u64,
    pub osdrop: u64,
}

/// Appends an Interface Statistics Block: taken at `now_ns`, capture from
/// `start_ns` to `now_ns`, with the counters if known.
pub(super) fn isb(
    buf: &mut Vec<u8>,
    interface_id: u32,
    start_ns: u64,
    now_ns: u64,
    counters: Option<IsbCounters>,
) {
    let mut b = BlockBuilder::new(buf, BT_ISB);
    // "Timestamp (64 bits): the time at which the statistics values were taken".
    b.u32(interface_id)
        .u32((now_ns >> 32) as u32)
        .u32(now_ns as u32)
        .ts_option(ISB_STARTTIME, start_ns)
        .ts_option(ISB_ENDTIME, now_ns);
    if let Some(c) = counters {
        // "All the fields that refer to packet counters are 64-bit values,
        // represented with the octet order of the current section."
        b.option(ISB_IFRECV, &c.ifrecv.to_ne_bytes())
            .option(ISB_IFDROP, &c.ifdrop.to_ne_bytes())
            .option(ISB_OSDROP, &c.osdrop.to_ne_bytes());
    }
    b.finish();
}

// ------------------------------------------------------ walking our own output

/// How a buffer of encoded output splits at a write error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Split {
    /// Length of the longest prefix made of whole headers, blocks and records.
    pub keep: usize,
    /// Packet records inside `keep`.
    pub records_kept: u64,
    /// Packet records beyond `keep` (lost).
    pub records_lost: u64,
    /// Captured frame bytes of the lost records.
    pub bytes_lost: u64,
}

fn ne_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Splits `buf` (classic pcap: an optional file header of `prefix` bytes, then
/// records) at `written` bytes.
pub(super) fn split_pcap(buf: &[u8], prefix: usize, written: usize) -> Split {
    let mut s = Split::default();
    if written >= prefix {
        s.keep = prefix;
    }
    let mut at = prefix;
    while at < buf.len() {
        let Some(caplen) = ne_u32(buf, at + 8) else {
            break;
        };
        let end = at + pcap_record_len(caplen as usize);
        if end <= written && s.keep == at {
            s.keep = end;
            s.records_kept += 1;
        } else {
            s.records_lost += 1;
            s.bytes_lost += u64::from(caplen);
        }
        at = end;
    }
    s
}

/// Splits `buf` (pcapng: a sequence of blocks) at `written` bytes.
pub(super) fn split_pcapng(buf: &[u8], written: usize) -> Split {
    let mut s = Split::default();
    let mut at = 0;
    while at < buf.len() {
        let (Some(kind), Some(total)) = (ne_u32(buf, at), ne_u32(buf, at + 4)) else {
            break;
        };
        let end = at + total as usize;
        let whole = end <= written && s.keep == at;
        if whole {
            s.keep = end;
        }
        if kind == BT_EPB {
            if whole {
                s.records_kept += 1;
            } else {
                s.records_lost += 1;
                s.bytes_lost += u64::from(ne_u32(buf, at + 20).unwrap_or(0));
            }
        }
        if total == 0 {
            break; // never written by us; do not spin
        }
        at = end;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn pcap_file_header_bytes() {
        let mut b = Vec::new();
        pcap_file_header(&mut b, 1500);
        assert_eq!(b.len(), 24);
        #[cfg(target_endian = "little")]
        assert_eq!(
            &b[0..4],
            &[0x4d, 0x3c, 0xb2, 0xa1],
            "ns magic, native order"
        );
        assert_eq!(u32_at(&b, 0), 0xa1b2_3c4d);
        assert_eq!(u16_at(&b, 4), 2, "major");
        assert_eq!(u16_at(&b, 6), 4, "minor");
        assert_eq!(&b[8..16], &[0u8; 8], "thiszone and sigfigs");
        assert_eq!(u32_at(&b, 16), 1500, "snaplen");
        assert_eq!(u32_at(&b, 20), 1, "LINKTYPE_ETHERNET, no FCS bits");
    }

    #[test]
    fn pcap_record_bytes_and_snaplen_cut() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut b = Vec::new();
        let ts = 1_700_000_000 * NANOS + 123_456_789;
        pcap_record(&mut b, ts, &data, 60);
        assert_eq!(b.len(), pcap_record_len(60));
        assert_eq!(b.len(), 16 + 60, "no padding in pcap");
        assert_eq!(u32_at(&b, 0), 1_700_000_000, "ts_sec");
        assert_eq!(u32_at(&b, 4), 123_456_789, "ts_nsec");
        assert_eq!(u32_at(&b, 8), 60, "incl_len = snaplen");
        assert_eq!(u32_at(&b, 12), 100, "orig_len kept");
        assert_eq!(&b[16..], &data[..60]);
    }

    fn text<'a>(name: &'a str, description: &'a str) -> IdbText<'a> {
        IdbText {
            name,
            description,
            filter: None,
        }
    }

    fn header(interface_id: u32, ts_ns: u64, len: usize, caplen: usize) -> EpbHeader {
        EpbHeader {
            interface_id,
            ts_ns,
            len,
            caplen,
            flags: EPB_FLAG_INBOUND,
        }
    }

    #[test]
    fn shb_bytes() {
        let mut b = Vec::new();
        shb(&mut b, "Linux 6.1.0", "xdpstack 1.2.3");
        // 24 fixed bytes, shb_os (4 + 11 + 1 pad), shb_userappl (4 + 14 + 2 pad),
        // endofopt 4, trailing length 4.
        assert_eq!(b.len(), 24 + 16 + 20 + 4 + 4);
        assert_eq!(
            &b[0..4],
            &[0x0a, 0x0d, 0x0d, 0x0a],
            "palindromic block type"
        );
        assert_eq!(u32_at(&b, 4) as usize, b.len());
        assert_eq!(u32_at(&b, b.len() - 4) as usize, b.len(), "trailing length");
        assert_eq!(u32_at(&b, 8), 0x1a2b_3c4d);
        #[cfg(target_endian = "little")]
        assert_eq!(&b[8..12], &[0x4d, 0x3c, 0x2b, 0x1a]);
        assert_eq!((u16_at(&b, 12), u16_at(&b, 14)), (1, 0), "version 1.0");
        assert_eq!(&b[16..24], &[0xff; 8], "section length -1");
        assert_eq!((u16_at(&b, 24), u16_at(&b, 26)), (3, 11), "shb_os");
        assert_eq!(&b[28..40], b"Linux 6.1.0\0");
        assert_eq!((u16_at(&b, 40), u16_at(&b, 42)), (4, 14), "shb_userappl");
        assert_eq!(&b[44..58], b"xdpstack 1.2.3");
        assert_eq!(&b[58..60], &[0, 0], "option padded with zeroes");
        assert_eq!(&b[60..64], &[0, 0, 0, 0], "opt_endofopt");
    }

    #[test]
    fn idb_bytes() {
        let mut b = Vec::new();
        idb(&mut b, 9000, &text("eth0:q3", "xy"));
        assert_eq!(u32_at(&b, 0), 1);
        assert_eq!(u32_at(&b, 4) as usize, b.len());
        assert_eq!(b.len() % 4, 0);
        assert_eq!(u16_at(&b, 8), 1, "LINKTYPE_ETHERNET");
        assert_eq!(u16_at(&b, 10), 0, "reserved");
        assert_eq!(u32_at(&b, 12), 9000, "snaplen");
        // if_name: code 2, len 7, "eth0:q3", 1 byte pad.
        assert_eq!((u16_at(&b, 16), u16_at(&b, 18)), (2, 7));
        assert_eq!(&b[20..28], b"eth0:q3\0");
        // if_description: code 3, len 2, "xy", 2 bytes pad.
        assert_eq!((u16_at(&b, 28), u16_at(&b, 30)), (3, 2));
        assert_eq!(&b[32..36], b"xy\0\0");
        // if_tsresol: code 9, length 1, value 9, 3 bytes pad.
        assert_eq!((u16_at(&b, 36), u16_at(&b, 38)), (9, 1));
        assert_eq!(&b[40..44], &[9, 0, 0, 0]);
        #[cfg(target_endian = "little")]
        assert_eq!(&b[36..44], &[9, 0, 1, 0, 9, 0, 0, 0]);
        assert_eq!(&b[44..48], &[0; 4], "opt_endofopt");
        assert_eq!(u32_at(&b, 48) as usize, b.len());
        assert_eq!(b.len(), 52);
    }

    #[test]
    fn idb_filter_is_a_libpcap_string() {
        let mut b = Vec::new();
        let filter = IdbText {
            filter: Some("udp port 53"),
            ..text("e", "d")
        };
        idb(&mut b, 100, &filter);
        // if_name (8), if_description (8), if_tsresol (8), then if_filter: code
        // 11, length 1 + 11, type 0 and the string, no padding needed.
        let o = 16 + 24;
        assert_eq!((u16_at(&b, o), u16_at(&b, o + 2)), (11, 12));
        assert_eq!(b[o + 4], 0, "filter type 0: libpcap filter string");
        assert_eq!(&b[o + 5..o + 16], b"udp port 53");
        assert_eq!(u32_at(&b, o + 16), 0, "opt_endofopt");
        assert_eq!(u32_at(&b, 4) as usize, b.len());
        assert_eq!(b.len(), o + 16 + 4 + 4);
    }

    #[test]
    fn epb_bytes_lengths_and_padding() {
        for len in 0..9usize {
            let data: Vec<u8> = (1..=len as u8).collect();
            let mut b = vec![0xee]; // a preceding byte: the block must not touch it
            let ts = 0x0000_0123_4567_89ab_u64;
            epb(&mut b, &header(5, ts, len, len), &data);
            let b = &b[1..];
            let pad = (4 - len % 4) % 4;
            assert_eq!(b.len(), 32 + len + pad + 12, "len {len}");
            assert_eq!(b.len(), epb_len(len));
            assert_eq!(u32_at(b, 0), 6);
            assert_eq!(u32_at(b, 4) as usize, b.len());
            assert_eq!(u32_at(b, 8), 5, "interface id");
            assert_eq!(u32_at(b, 12), 0x123, "ts high");
            assert_eq!(u32_at(b, 16), 0x4567_89ab, "ts low");
            assert_eq!(u32_at(b, 20) as usize, len, "caplen without padding");
            assert_eq!(u32_at(b, 24) as usize, len);
            assert_eq!(&b[28..28 + len], &data[..]);
            assert!(
                b[28 + len..28 + len + pad].iter().all(|&x| x == 0),
                "zero pad"
            );
            let o = 28 + len + pad;
            assert_eq!(o % 4, 0, "options 32-bit aligned");
            assert_eq!((u16_at(b, o), u16_at(b, o + 2)), (2, 4), "epb_flags");
            assert_eq!(u32_at(b, o + 4), 1, "inbound");
            assert_eq!(u32_at(b, o + 8), 0, "opt_endofopt");
            assert_eq!(u32_at(b, o + 12) as usize, b.len(), "trailing length");
        }
    }

    #[test]
    fn epb_flags_carry_the_direction() {
        for (direction, word) in [
            (super::super::Direction::Inbound, 1),
            (super::super::Direction::Outbound, 2),
        ] {
            let mut b = Vec::new();
            let h = EpbHeader {
                flags: epb_flags(direction),
                ..header(0, 0, 4, 4)
            };
            epb(&mut b, &h, &[1, 2, 3, 4]);
            assert_eq!((u16_at(&b, 32), u16_at(&b, 34)), (2, 4), "epb_flags");
            assert_eq!(u32_at(&b, 36), word, "{direction:?}");
        }
    }

    #[test]
    fn epb_snaplen_cut_keeps_original_length() {
        let data = [7u8; 100];
        let mut b = Vec::new();
        epb(&mut b, &header(0, 1, 100, 61), &data);
        assert_eq!(u32_at(&b, 20), 61);
        assert_eq!(u32_at(&b, 24), 100);
        assert_eq!(b.len(), 44 + 61 + 3);
    }

    #[test]
    fn isb_bytes() {
        let mut b = Vec::new();
        let c = IsbCounters {
            ifrecv: 10,
            ifdrop: 2,
            osdrop: 3,
        };
        isb(&mut b, 1, 0x1_0000_0002, 0x3_0000_0004, Some(c));
        assert_eq!(u32_at(&b, 0), 5);
        assert_eq!(u32_at(&b, 4) as usize, b.len());
        assert_eq!(u32_at(&b, 8), 1);
        assert_eq!((u32_at(&b, 12), u32_at(&b, 16)), (3, 4), "taken at end");
        let mut o = 20;
        for (code, hi, lo) in [(2u16, 1u32, 2u32), (3, 3, 4)] {
            assert_eq!((u16_at(&b, o), u16_at(&b, o + 2)), (code, 8));
            assert_eq!((u32_at(&b, o + 4), u32_at(&b, o + 8)), (hi, lo));
            o += 12;
        }
        for (code, v) in [(4u16, 10u64), (5, 2), (7, 3)] {
            assert_eq!((u16_at(&b, o), u16_at(&b, o + 2)), (code, 8));
            assert_eq!(u64_at(&b, o + 4), v);
            o += 12;
        }
        assert_eq!(u32_at(&b, o), 0, "opt_endofopt");
        assert_eq!(o + 8, b.len());
    }

    #[test]
    fn split_pcap_at_every_offset() {
        let mut b = Vec::new();
        pcap_file_header(&mut b, 100);
        let ends: Vec<usize> = [3usize, 0, 10]
            .iter()
            .map(|&n| {
                pcap_record(&mut b, 0, &vec![1; n], n);
                b.len()
            })
            .collect();
        for w in 0..=b.len() {
            let s = split_pcap(&b, 24, w);
            let kept = ends.iter().filter(|&&e| e <= w).count();
            let keep = if w < 24 {
                0
            } else {
                ends[..kept].last().copied().unwrap_or(24)
            };
            assert_eq!(s.keep, keep, "written {w}");
            assert_eq!(s.records_kept as usize, kept);
            assert_eq!(s.records_kept + s.records_lost, 3);
            let lost: u64 = [3u64, 0, 10][kept..].iter().sum();
            assert_eq!(s.bytes_lost, lost);
        }
    }

    #[test]
    fn split_pcapng_at_every_offset() {
        let mut b = Vec::new();
        shb(&mut b, "o", "x");
        idb(&mut b, 100, &text("a", "b"));
        let hdr = b.len();
        epb(&mut b, &header(0, 0, 5, 5), &[1; 5]);
        let e1 = b.len();
        idb(&mut b, 100, &text("c", "d"));
        let i2 = b.len();
        epb(&mut b, &header(1, 0, 8, 8), &[1; 8]);
        let e2 = b.len();
        for w in 0..=b.len() {
            let s = split_pcapng(&b, w);
            let expect = [0, hdr, e1, i2, e2]
                .into_iter()
                .filter(|&e| e <= w)
                .max()
                .unwrap_or(0);
            // The SHB alone is also a whole block.
            let shb_len = u32_at(&b, 4) as usize;
            let expect = if w >= shb_len && expect < shb_len {
                shb_len
            } else {
                expect
            };
            assert_eq!(s.keep, expect, "written {w}");
            let kept = usize::from(w >= e1) + usize::from(w >= e2);
            assert_eq!(s.records_kept as usize, kept);
            assert_eq!(s.records_kept + s.records_lost, 2);
            let lost: u64 = [5u64, 8][kept..].iter().sum();
            assert_eq!(s.bytes_lost, lost);
        }
    }
}
