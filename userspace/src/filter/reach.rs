//! How far into a frame a program reads: what lets the capture decide a
//! multi-buffer packet on its first buffer rather than copy it whole.

use super::{
    CbpfInsn, Filter,
    cbpf::{self, Flow, Op},
};

impl Filter {
    /// The most leading bytes of a frame the program can read, when it reads
    /// no more and never the frame's length (`len`, `greater`, `less`): it
    /// then decides on a frame as on those bytes alone (libpcap's interpreter
    /// rejects a load past the end, so on a shorter frame too). `None` when the
    /// length is read, or an indexed load's offset is not bounded (X loaded
    /// from scratch memory or computed, as `protochain` and `vlan` do).
    pub fn reach(&self) -> Option<u32> {
        reach(&self.insns)
    }
}

fn reach(prog: &[CbpfInsn]) -> Option<u32> {
    let ops = cbpf::decode(prog).ok()?;
    let flow = Flow::of(&ops).ok()?;
    let live = || {
        ops.iter()
            .zip(&flow.reachable)
            .filter_map(|(op, live)| live.then_some(*op))
    };
    // X's largest value, if every instruction that sets it bounds it.
    let mut x_max = 0u32;
    for op in live() {
        x_max = x_max.max(match op {
            Op::LdxMsh(_) => 4 * 0xf,
            Op::LdxImm(k) => k,
            Op::LdxMem(_) | Op::LdxLen | Op::Tax => return None,
            _ => continue,
        });
    }
    let mut reach = 0u32;
    for op in live() {
        let bound = match op {
            Op::LdLen | Op::LdxLen => return None,
            // The flow ends at a load no frame is long enough for; a longer
            // multi-buffer frame would go on, beyond what the flow saw.
            op if op.always_fails() => return None,
            Op::LdInd(size, k) => x_max.saturating_add(k).saturating_add(size.bytes()),
            op => match op.abs_bound() {
                Some(bound) => bound,
                None => continue,
            },
        };
        reach = reach.max(bound);
    }
    Some(reach)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach_of(expression: &str) -> Option<u32> {
        Filter::new(expression).unwrap().reach()
    }

    #[test]
    fn reach_is_the_furthest_byte_a_program_reads() {
        assert_eq!(reach_of(""), Some(0));
        // The ethertype, IPv4's protocol and IPv6's next header, and the
        // header behind an IPv6 fragment header: `ldb [54]`.
        assert_eq!(reach_of("udp"), Some(55));
        // IPv4 ports behind `ldxb 4*([14]&0xf)`: X is at most 60, and
        // `ldh [x + 16]` reads up to 60 + 16 + 2; IPv6's are at 54..58.
        assert_eq!(reach_of("udp dst port 53"), Some(78));
        // udp[4000] behind the IPv4 header: ldb [x + 4014].
        assert_eq!(reach_of("udp[4000] == 0x41"), Some(60 + 4014 + 1));
        assert_eq!(reach_of("ether[9000] == 1"), Some(9001));
    }

    #[test]
    fn reading_the_length_or_an_unbounded_offset_has_no_reach() {
        for expression in [
            "len > 5000",
            "greater 4000",
            "less 100",
            "udp and len >= 60",
            "ip6 protochain 17",
            "udp[udp[0]] == 1",
            // Beyond what the kernel verifier tracks: the flow stops there.
            "ether[70000] == 1",
        ] {
            assert_eq!(reach_of(expression), None, "{expression}");
        }
    }
}
