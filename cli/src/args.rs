//! Command-line parsing (clap) and validation before anything is attached.
//!
//! The library's option types carry no clap derives: the value enums here mirror
//! them and convert, so that the library does not depend on clap.

use std::{ops::RangeInclusive, str::FromStr, time::Duration};

use clap::{Parser, ValueEnum};
use xdpstack::{
    capture::Format,
    poller::Overflow,
    stack::{
        MultiBuffer, QueueSpec,
        doctor::Requirement,
        parse_range,
        service::{AppKind, CaptureDirection},
    },
    sys::{loader::XdpModeChoice, xsk::ZeroCopy},
};

/// Mirrors a library enum as a clap value enum, with the conversion.
macro_rules! value_enum {
    ($(#[$meta:meta])* $name:ident => $lib:ty { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$name> for $lib {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => <$lib>::$variant),+
                }
            }
        }
    };
}

value_enum! {
    /// `--xdp-mode auto|drv|skb`.
    XdpModeArg => XdpModeChoice {
        /// Native (driver) mode, falling back to generic mode when the driver has
        /// no XDP.
        #[default]
        Auto,
        /// Native (driver) mode only.
        Drv,
        /// Generic (SKB) mode only: works on any interface, slower.
        Skb,
    }
}

value_enum! {
    /// `--zero-copy auto|on|off`.
    ZeroCopyArg => ZeroCopy {
        /// Zero-copy when the driver offers it, copy mode otherwise.
        #[default]
        Auto,
        /// Zero-copy or fail.
        On,
        /// Copy mode.
        Off,
    }
}

value_enum! {
    /// `--multi-buffer auto|on|off`.
    MultiBufferArg => MultiBuffer {
        /// Packets larger than a frame span several when the MTU needs it.
        #[default]
        Auto,
        /// Sockets always take packets larger than a frame (an MTU that may be
        /// raised while running).
        On,
        /// One frame per packet: an MTU larger than a frame is refused.
        Off,
    }
}

value_enum! {
    /// `--pcap-overflow drop|wait`.
    OverflowArg => Overflow {
        /// Drop the view and count it (the frame goes back at once).
        #[default]
        Drop,
        /// Hold frames back from the fill ring: the kernel drops instead
        /// (counted) and the capture loses nothing.
        Wait,
    }
}

value_enum! {
    /// `-Q in|out|inout`: the directions the capture keeps.
    DirectionArg => CaptureDirection {
        /// Received frames.
        In,
        /// Frames the stack transmits (echo replies).
        Out,
        /// Both.
        #[default]
        InOut,
    }
}

value_enum! {
    /// `--app sink|echo|none`: what the UDP consumer does with each datagram.
    App => AppKind {
        /// Count datagrams and bytes per destination port.
        #[default]
        Sink,
        /// Answer each datagram with its own payload through the AF_XDP TX ring.
        Echo,
        /// No UDP consumer (capture only).
        None,
    }
}

/// A `--port` value: `P` or `A-B`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRange(pub RangeInclusive<u16>);

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let range = parse_range(s, "a port (1-65535) or a range A-B")?;
        if *range.start() == 0 {
            return Err(format!(
                "`{s}`: port 0 is not a destination port (RFC 768: it means \"no port\"); \
                 use 1-65535"
            ));
        }
        Ok(PortRange(range))
    }
}

/// `--capture udp|all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum CaptureChoice {
    /// UDP to the `--port`s.
    #[default]
    Udp,
    /// Every frame on the queues.
    All,
}

value_enum! {
    /// `--require zero-copy|drv|busy-poll`: what the run must have, or fail at
    /// start.
    RequireArg => Requirement {
        /// AF_XDP zero-copy (implies --zero-copy on).
        #[default]
        ZeroCopy,
        /// Native (driver) XDP (implies --xdp-mode drv).
        Drv,
        /// Busy polling that runs the driver's NAPI poll (implies --busy-poll).
        BusyPoll,
    }
}

/// Commands other than running the stack.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Print a completion script for SHELL to standard output.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Say what an interface offers xdpstack, each finding with its fix:
    /// native or generic XDP, zero-copy, RX queues, ntuple, a foreign XDP
    /// program, MTU against the frame size (one frame a packet or
    /// multi-buffer), locked memory, capabilities, busy polling, and a veth's
    /// checksum offload and peer MTU. Changes nothing.
    Doctor {
        /// The interface.
        #[arg(short = 'i', long = "interface", value_name = "IFACE")]
        iface: String,
        /// The UMEM frame size the run would use.
        #[arg(long = "frame-size", default_value_t = 2048, value_parser = parse_frame_size)]
        frame_size: u32,
        /// The frames per queue the run would use.
        #[arg(long, default_value_t = 4096, value_parser = parse_frames)]
        frames: u32,
    },
}

/// xdpstack: receive UDP through AF_XDP at rates the socket path cannot reach.
#[derive(Debug, Parser)]
#[command(
    name = "xdpstack",
    version,
    about,
    after_help = "Examples:\n  \
        xdpstack -i eth0 --port 9000              receive UDP port 9000 on every queue\n  \
        xdpstack -i eth0 --port 7 --app echo      answer UDP port 7 from user space\n  \
        xdpstack -i eth0 --port 9000 -w rx.pcap   count and capture\n  \
        xdpstack -i eth0 --port 9000-9010 -c 1000 stop after 1000 packets\n  \
        xdpstack -i eth0 --capture all -w all.pcapng --duration 10\n  \
        xdpstack -i eth0 -w dns.pcapng udp port 53 and not host 198.18.0.9\n  \
        xdpstack -i span0 --steal -w span.pcap udp portrange 9000-9099\n  \
        xdpstack -i eth0 --port 9000 -Z nobody -w rx.pcap --metrics 127.0.0.1:9464\n  \
        xdpstack doctor -i eth0                   what eth0 offers, each finding with its fix\n\n\
        Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW) to attach; every privilege is\n\
        dropped once attached, and a seccomp allow-list confines the run.\n\
        Shell completions: xdpstack completions bash|zsh|fish > FILE",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Other commands.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Interface to attach to.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required_unless_present = "dump"
    )]
    pub iface: Option<String>,

    /// A pcap-filter(7) expression, as tcpdump takes it (`udp port 53 and not
    /// host 198.18.0.9`): the capture keeps only the frames it selects. The XDP
    /// program runs it on every frame no `--port` claims; those it selects are
    /// copied and still passed to the kernel (or stolen, with --steal).
    #[arg(
        value_name = "EXPRESSION",
        trailing_var_arg = true,
        help_heading = "Capture"
    )]
    pub expression: Vec<String>,

    /// RX queues to serve: `all`, `N`, or `A-B`.
    #[arg(
        long,
        default_value = "all",
        value_name = "all|N|A-B",
        help_heading = "Traffic"
    )]
    pub queues: QueueSpec,

    /// UDP destination port or range to steer (repeatable, comma-separated).
    #[arg(
        long = "port",
        value_name = "P|A-B",
        value_delimiter = ',',
        help_heading = "Traffic"
    )]
    pub ports: Vec<PortRange>,

    /// What the capture takes besides the apps' traffic: nothing more (`udp`,
    /// the `--port`s only), or every frame (`all`: the empty expression, copied
    /// and passed on to the kernel; redirected into the stack with --steal).
    #[arg(long, value_enum, default_value_t, help_heading = "Traffic")]
    pub capture: CaptureChoice,

    /// What to do with the datagrams: count them per port (`sink`), answer
    /// them (`echo`), or nothing (`none`, capture only).
    #[arg(long, value_enum, default_value_t, help_heading = "Traffic")]
    pub app: App,

    /// XDP attach mode.
    #[arg(
        long = "xdp-mode",
        value_enum,
        default_value_t,
        help_heading = "XDP and AF_XDP"
    )]
    pub xdp_mode: XdpModeArg,

    /// AF_XDP zero-copy: `auto` takes it when the driver offers it.
    #[arg(
        long = "zero-copy",
        value_enum,
        default_value_t,
        help_heading = "XDP and AF_XDP"
    )]
    pub zero_copy: ZeroCopyArg,

    /// Packets larger than one UMEM frame (jumbo frames): AF_XDP
    /// multi-buffer. `auto` uses it when the interface's MTU needs it.
    #[arg(
        long = "multi-buffer",
        value_enum,
        default_value_t,
        help_heading = "XDP and AF_XDP"
    )]
    pub multi_buffer: MultiBufferArg,

    /// Stop after this many seconds.
    #[arg(
        long,
        value_name = "S",
        value_parser = parse_seconds,
        // `--duration -1` reaches the parser, which says what is wrong, rather
        // than clap's "unexpected argument '-1'".
        allow_negative_numbers = true,
        help_heading = "Run and report"
    )]
    pub duration: Option<Duration>,

    /// Stop after this many packets.
    #[arg(
        short = 'c',
        long = "count",
        value_name = "COUNT",
        help_heading = "Run and report"
    )]
    pub count: Option<u64>,

    /// Descriptors handled per poll round.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "XDP and AF_XDP")]
    pub budget: u32,

    /// Frames in each queue's UMEM (a power of two).
    #[arg(long, default_value_t = 4096, value_parser = parse_frames, help_heading = "XDP and AF_XDP")]
    pub frames: u32,

    /// Bytes per UMEM frame.
    #[arg(long = "frame-size", default_value_t = 2048, value_parser = parse_frame_size, help_heading = "XDP and AF_XDP")]
    pub frame_size: u32,

    /// Busy polling: SO_PREFER_BUSY_POLL, and the poller never sleeps.
    #[arg(long = "busy-poll", help_heading = "XDP and AF_XDP")]
    pub busy_poll: bool,

    /// Pin queue i's poller thread to CPU i.
    #[arg(long = "pin-cpus", help_heading = "XDP and AF_XDP")]
    pub pin_cpus: bool,

    /// Print live statistics every S seconds (default: every second when
    /// standard error is a terminal, redrawn in place).
    #[arg(long, value_name = "S", value_parser = parse_seconds, help_heading = "Run and report")]
    pub stats: Option<Duration>,

    /// JSON on standard output: with --stats one object per interval (NDJSON,
    /// `"type": "interval"`), and the summary at exit (`"type": "summary"`).
    #[arg(long, help_heading = "Run and report")]
    pub json: bool,

    /// Accepted for tcpdump's sake and ignored (-n or -nn): xdpstack never
    /// resolves addresses or ports to names.
    #[arg(short = 'n', action = clap::ArgAction::Count, help_heading = "Run and report")]
    pub no_resolve: u8,

    /// Log more (to stderr): -v for the steps taken, -vv for debugging detail.
    /// `XDPSTACK_LOG` (a tracing filter) overrides it.
    #[arg(short = 'v', action = clap::ArgAction::Count, help_heading = "Run and report")]
    pub verbose: u8,

    /// Write the frames to a capture file (`-` for standard output), like
    /// tcpdump -w. A name ending in `.pcapng` (any case) makes a pcapng file,
    /// anything else classic pcap, unless --pcap or --pcapng says otherwise.
    /// Classic pcap has no field for the direction of a frame; pcapng records
    /// it (inbound or outbound) in every packet block.
    #[arg(short = 'w', value_name = "FILE|-", help_heading = "Capture")]
    pub write: Option<std::path::PathBuf>,

    /// Bytes kept of each frame (0: 262144, the most), like tcpdump -s.
    #[arg(
        short = 's',
        long,
        default_value_t = 262_144,
        value_name = "N",
        help_heading = "Capture"
    )]
    pub snaplen: u32,

    /// pcapng whatever the -w name: one interface per queue, each frame's
    /// direction (inbound/outbound), drop counts at the end.
    #[arg(long, help_heading = "Capture")]
    pub pcapng: bool,

    /// Classic pcap (nanosecond timestamps) whatever the -w name; it has no
    /// direction field.
    #[arg(long, conflicts_with = "pcapng", help_heading = "Capture")]
    pub pcap: bool,

    /// Start a new file when the current one exceeds MB million bytes, like
    /// tcpdump -C: FILE, then FILE1, FILE2, ...
    #[arg(short = 'C', value_name = "MB", help_heading = "Capture")]
    pub file_size: Option<u64>,

    /// Start a new file every SECONDS, like tcpdump -G: before the first frame
    /// once SECONDS have passed since the current file was opened.
    ///
    /// The -w name is then a strftime(3) pattern, formatted in local time when
    /// each file is opened: -w 'cap-%Y%m%d-%H%M%S.pcap' -G 60. Without a time
    /// format every file overwrites the previous one. With -C as well, each
    /// interval's files are numbered: NAME, NAME1, NAME2, ...
    #[arg(
        short = 'G',
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = "Capture"
    )]
    pub rotate_seconds: Option<u32>,

    /// With -C: a ring of N files; with -G alone: stop after N files.
    ///
    /// As tcpdump -W. With -C: FILE0 .. FILE{N-1}, numbered with enough leading
    /// zeros to sort, the oldest overwritten. With -G and no -C: the run ends
    /// (exit status 0) when file N+1 is due. With both -C and -G: -W only pads
    /// the -C numbers (and wraps them within an interval), it limits nothing.
    #[arg(short = 'W', value_name = "N", help_heading = "Capture")]
    pub file_count: Option<u32>,

    /// Flush the capture after every frame.
    #[arg(short = 'U', help_heading = "Capture")]
    pub packet_buffered: bool,

    /// Frames no `--port` claims that the expression (or `--capture all`)
    /// selects go into the stack and never reach the kernel (a mirror or SPAN
    /// port), instead of being copied and passed on.
    #[arg(long, help_heading = "Capture")]
    pub steal: bool,

    /// The directions captured: received frames, frames the stack transmits
    /// (echo replies; pcapng marks them outbound, classic pcap has no field for
    /// the direction), or both.
    #[arg(
        short = 'Q',
        long = "direction",
        value_enum,
        default_value_t,
        help_heading = "Capture"
    )]
    pub direction: DirectionArg,

    /// Print the expression compiled to classic BPF, as `tcpdump -d` does, and
    /// exit.
    #[arg(short = 'd', help_heading = "Capture")]
    pub dump: bool,

    /// Fail at start, in one line saying why, unless the run gets FEATURE
    /// (repeatable): `zero-copy` (not copy mode), `drv` (native XDP, not
    /// generic), `busy-poll` (a NAPI poll to run). Nothing degrades silently.
    #[arg(
        long,
        value_enum,
        value_name = "FEATURE",
        help_heading = "Running it safely"
    )]
    pub require: Vec<RequireArg>,

    /// Once attached, switch to USER (its uid, gid and groups), as tcpdump -Z
    /// does: capture files are created as USER. Without it the process stays
    /// root, but holds no capability after setup.
    #[arg(short = 'Z', value_name = "USER", help_heading = "Running it safely")]
    pub user: Option<String>,

    /// Run without the seccomp allow-list (to debug a run killed by SIGSYS:
    /// `strace -f` then shows the syscall).
    #[arg(long = "no-seccomp", help_heading = "Running it safely")]
    pub no_seccomp: bool,

    /// Serve Prometheus metrics (text format) at http://ADDR:PORT/metrics,
    /// updated every --stats S (1 s by default).
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Run and report")]
    pub metrics: Option<std::net::SocketAddr>,

    /// When the capture writer falls behind: drop frames (counted), or wait,
    /// holding frames back so the kernel drops instead (counted, lossless file).
    #[arg(
        long = "pcap-overflow",
        value_enum,
        default_value_t,
        help_heading = "Capture"
    )]
    pub pcap_overflow: OverflowArg,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!(
            "duration `{s}` must be a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_frames(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a frame count"))?;
    if !(64..=1 << 20).contains(&n) || !n.is_power_of_two() {
        return Err(format!(
            "--frames {s}: must be a power of two from 64 to 1048576"
        ));
    }
    Ok(n)
}

fn parse_frame_size(s: &str) -> Result<u32, String> {
    match s {
        "2048" => Ok(2048),
        "4096" => Ok(4096),
        _ => Err(format!("--frame-size {s}: must be 2048 or 4096")),
    }
}

impl Cli {
    /// The interface (`-i`, required unless a subcommand is given).
    pub fn iface(&self) -> &str {
        self.iface.as_deref().unwrap_or_default()
    }

    /// The tracing filter for `-v` / `-vv`.
    pub fn log_filter(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }

    /// The expression's words joined, as tcpdump joins them.
    pub fn expression(&self) -> String {
        self.expression.join(" ")
    }

    /// Checks across options that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let expression = !self.expression().trim().is_empty();
        if self.dump {
            return if expression {
                Ok(())
            } else {
                Err("-d prints a filter expression's program: give one (`-d udp port 53`)".into())
            };
        }
        if self.require.contains(&RequireArg::ZeroCopy) && self.zero_copy == ZeroCopyArg::Off {
            return Err("--require zero-copy contradicts --zero-copy off: drop one".into());
        }
        if self.require.contains(&RequireArg::Drv) && self.xdp_mode == XdpModeArg::Skb {
            return Err("--require drv contradicts --xdp-mode skb: drop one".into());
        }
        if self.iface() == "any" {
            // tcpdump's pseudo-interface is a packet socket on every device; an
            // XDP program and its AF_XDP sockets are bound to one device's queues.
            return Err("-i any is not possible with AF_XDP, which serves one \
                        interface's queues: run one xdpstack per interface \
                        (-i eth0, -i eth1, ...)"
                .to_string());
        }
        if self.write.is_none() {
            // Options that only shape a capture file do nothing without one:
            // refused, not ignored. (-s at its default cannot be told from -s
            // not given; it changes nothing either way.)
            let given: Vec<&str> = [
                ("-C", self.file_size.is_some()),
                ("-W", self.file_count.is_some()),
                ("-G", self.rotate_seconds.is_some()),
                ("-U", self.packet_buffered),
                ("-s/--snaplen", self.snaplen != 262_144),
                ("--pcapng", self.pcapng),
                ("--pcap", self.pcap),
            ]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
            if !given.is_empty() {
                return Err(format!(
                    "{} shape{} a capture file, and there is none: give -w FILE (or -w -), \
                     or drop {}",
                    given.join(", "),
                    if given.len() == 1 { "s" } else { "" },
                    if given.len() == 1 { "it" } else { "them" },
                ));
            }
        }
        if expression && self.write.is_none() {
            return Err(format!(
                "the expression `{}` selects what to capture: give -w FILE (or -w -)",
                self.expression()
            ));
        }
        if self.steal && !expression && self.capture != CaptureChoice::All {
            return Err(
                "--steal takes the frames an expression selects: give one (or --capture all)"
                    .into(),
            );
        }
        if self.capture == CaptureChoice::All && self.write.is_none() && !self.steal {
            return Err(
                "--capture all copies every frame into a capture: give -w FILE; to take every \
                 frame into the stack instead (the host no longer gets them), add --steal"
                    .into(),
            );
        }
        if self.capture == CaptureChoice::Udp && self.ports.is_empty() && !expression {
            return Err(
                "--capture udp needs at least one --port (or use --capture all, or an expression)"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// The capture format: `--pcapng` or `--pcap` if given, else pcapng for a
    /// `-w` name ending in `.pcapng` (any case), else classic pcap (`-w -`
    /// included).
    pub fn capture_format(&self) -> Format {
        let named_pcapng = self.write.as_deref().is_some_and(|p| {
            p.as_os_str()
                .as_encoded_bytes()
                .to_ascii_lowercase()
                .ends_with(b".pcapng")
        });
        if self.pcapng || (named_pcapng && !self.pcap) {
            Format::PcapNg
        } else {
            Format::Pcap
        }
    }

    /// The distinct ports of every `--port`, sorted.
    pub fn port_list(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.ports.iter().flat_map(|r| r.0.clone()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xdpstack").chain(args.iter().copied()))
    }

    #[test]
    fn queue_specs() {
        assert_eq!("all".parse::<QueueSpec>(), Ok(QueueSpec::All));
        assert_eq!("3".parse::<QueueSpec>(), Ok(QueueSpec::Range(3..=3)));
        assert_eq!("1-4".parse::<QueueSpec>(), Ok(QueueSpec::Range(1..=4)));
        assert!("4-1".parse::<QueueSpec>().is_err());
        assert!("x".parse::<QueueSpec>().is_err());
        assert_eq!(QueueSpec::All.resolve(2), Ok(vec![0, 1]));
        assert_eq!(QueueSpec::Range(1..=1).resolve(2), Ok(vec![1]));
        assert!(QueueSpec::Range(0..=2).resolve(2).is_err());
    }

    #[test]
    fn ports_accept_lists_and_ranges() {
        let cli = parse(&["-i", "eth0", "--port", "9000,9002-9003", "--port", "9000"]).unwrap();
        assert_eq!(cli.port_list(), vec![9000, 9002, 9003]);
        assert!(parse(&["-i", "eth0", "--port", "70000"]).is_err());
        assert!(parse(&["-i", "eth0", "--port", "9-1"]).is_err());
        assert!(parse(&["-i", "eth0", "--port", "0"]).is_err());
        assert!(parse(&["-i", "eth0", "--port", "0-10"]).is_err());
    }

    #[test]
    fn udp_capture_needs_a_port() {
        let cli = parse(&["-i", "eth0"]).unwrap();
        assert!(cli.validate().unwrap_err().contains("--port"));
        let cli = parse(&["-i", "eth0", "--capture", "all", "-w", "f"]).unwrap();
        assert!(cli.validate().is_ok());
        let cli = parse(&["-i", "eth0", "--capture", "all"]).unwrap();
        assert!(
            cli.validate().unwrap_err().contains("--steal"),
            "nothing to capture to"
        );
        let cli = parse(&["-i", "eth0", "--capture", "all", "--steal"]).unwrap();
        assert!(
            cli.validate().is_ok(),
            "every frame into the stack, counted"
        );
    }

    #[test]
    fn capture_file_options_need_a_capture_file() {
        for args in [
            &["-i", "e", "--port", "9", "-C", "1", "-W", "2"][..],
            &["-i", "e", "--port", "9", "-U"],
            &["-i", "e", "--port", "9", "--snaplen", "96"],
            &["-i", "e", "--port", "9", "-G", "60"],
            &["-i", "e", "--port", "9", "--pcapng"],
        ] {
            let cli = parse(args).unwrap();
            let err = cli.validate().unwrap_err();
            assert!(err.contains("give -w FILE"), "{args:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let err = parse(&["-i", "e", "--port", "9", "-C", "1", "-W", "2"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.starts_with("-C, -W shape a capture file"), "{err}");
        // With a file they are fine.
        let cli = parse(&[
            "-i", "e", "--port", "9", "-w", "f.pcap", "-C", "1", "-W", "2", "-U",
        ]);
        assert!(cli.unwrap().validate().is_ok());
    }

    #[test]
    fn a_negative_duration_is_named() {
        let err = parse(&["-i", "e", "--duration", "-1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must be a positive number of seconds"),
            "{err}"
        );
    }

    #[test]
    fn durations_must_be_positive() {
        assert!(parse(&["-i", "e", "--duration", "0"]).is_err());
        assert!(parse(&["-i", "e", "--duration", "-1"]).is_err());
        assert!(parse(&["-i", "e", "--duration", "nan"]).is_err());
        let cli = parse(&["-i", "e", "--duration", "1.5"]).unwrap();
        assert_eq!(cli.duration, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn frames_are_powers_of_two() {
        assert!(parse(&["-i", "e", "--frames", "1000"]).is_err());
        assert!(parse(&["-i", "e", "--frames", "32"]).is_err());
        assert_eq!(
            parse(&["-i", "e", "--frames", "8192"]).unwrap().frames,
            8192
        );
        assert!(parse(&["-i", "e", "--frame-size", "3000"]).is_err());
    }

    #[test]
    fn app_defaults_to_sink() {
        assert_eq!(parse(&["-i", "e", "--port", "1"]).unwrap().app, App::Sink);
        assert_eq!(
            parse(&["-i", "e", "--port", "1", "--app", "echo"])
                .unwrap()
                .app,
            App::Echo
        );
        assert!(parse(&["-i", "e", "--app", "reflect"]).is_err());
    }

    #[test]
    fn the_words_after_the_options_are_the_expression() {
        let cli = parse(&[
            "-i",
            "e",
            "-w",
            "f",
            "udp",
            "port",
            "53",
            "and",
            "not",
            "host",
            "198.18.0.9",
        ])
        .unwrap();
        assert_eq!(cli.expression(), "udp port 53 and not host 198.18.0.9");
        assert!(cli.validate().is_ok(), "an expression needs no --port");
        let cli = parse(&["-i", "e", "udp"]).unwrap();
        assert!(cli.validate().unwrap_err().contains("-w"));
        let cli = parse(&["-d", "udp", "port", "53"]).unwrap();
        assert!(cli.dump && cli.validate().is_ok(), "-d needs no interface");
        assert!(parse(&["-d"]).unwrap().validate().is_err());
    }

    #[test]
    fn steal_needs_something_to_steal() {
        let cli = parse(&["-i", "e", "-w", "f", "--port", "1", "--steal"]).unwrap();
        assert!(cli.validate().unwrap_err().contains("--steal"));
        let cli = parse(&["-i", "e", "-w", "f", "--steal", "icmp"]).unwrap();
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn direction_defaults_to_both() {
        assert_eq!(parse(&["-i", "e"]).unwrap().direction, DirectionArg::InOut);
        assert_eq!(
            parse(&["-i", "e", "-Q", "out"]).unwrap().direction,
            DirectionArg::Out
        );
    }

    #[test]
    fn interface_is_required() {
        assert!(parse(&["--port", "1"]).is_err());
    }

    #[test]
    fn completions_need_no_interface() {
        let cli = parse(&["completions", "bash"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Completions {
                shell: clap_complete::Shell::Bash
            })
        ));
        assert!(parse(&["completions", "tcsh"]).is_err());
    }

    #[test]
    fn snaplen_has_tcpdumps_short_form() {
        assert_eq!(parse(&["-i", "e"]).unwrap().snaplen, 262_144);
        assert_eq!(parse(&["-i", "e", "-s", "96"]).unwrap().snaplen, 96);
        assert_eq!(parse(&["-i", "e", "-s0"]).unwrap().snaplen, 0);
        assert_eq!(
            parse(&["-i", "e", "--snaplen", "128"]).unwrap().snaplen,
            128
        );
        assert!(parse(&["-i", "e", "-s", "-1"]).is_err());
    }

    #[test]
    fn no_name_resolution_is_accepted_and_ignored() {
        assert_eq!(parse(&["-i", "e"]).unwrap().no_resolve, 0);
        assert_eq!(parse(&["-i", "e", "-n"]).unwrap().no_resolve, 1);
        assert_eq!(parse(&["-i", "e", "-nn"]).unwrap().no_resolve, 2);
        assert_eq!(parse(&["-n", "-i", "e", "-n"]).unwrap().no_resolve, 2);
    }

    #[test]
    fn any_interface_is_refused_with_what_to_do() {
        let cli = parse(&["-i", "any", "--capture", "all"]).unwrap();
        let msg = cli.validate().unwrap_err();
        assert!(
            msg.starts_with("-i any is not possible with AF_XDP"),
            "{msg}"
        );
        assert!(msg.contains("run one xdpstack per interface"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        let cli = parse(&["-i", "anything", "--capture", "all", "-w", "f"]).unwrap();
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn capture_format_follows_the_file_name_unless_told() {
        let format = |args: &[&str]| {
            let mut all = vec!["-i", "e"];
            all.extend(args);
            parse(&all).unwrap().capture_format()
        };
        assert_eq!(format(&["-w", "a.pcap"]), Format::Pcap);
        assert_eq!(format(&["-w", "a.pcapng"]), Format::PcapNg);
        assert_eq!(format(&["-w", "/d/A.PcapNG"]), Format::PcapNg);
        assert_eq!(
            format(&["-w", "cap-%H%M.pcapng", "-G", "60"]),
            Format::PcapNg
        );
        assert_eq!(format(&["-w", "a.pcapng.gz"]), Format::Pcap);
        assert_eq!(
            format(&["-w", "pcapng"]),
            Format::Pcap,
            "a suffix, not a name"
        );
        assert_eq!(format(&["-w", "a.cap"]), Format::Pcap);
        assert_eq!(format(&["-w", "a.pcapng", "--pcap"]), Format::Pcap);
        assert_eq!(format(&["-w", "a.pcap", "--pcapng"]), Format::PcapNg);
        assert_eq!(format(&["-w", "-"]), Format::Pcap);
        assert_eq!(format(&["-w", "-", "--pcapng"]), Format::PcapNg);
        assert!(parse(&["-i", "e", "-w", "a", "--pcap", "--pcapng"]).is_err());
    }

    #[test]
    fn rotation_by_time_takes_whole_seconds() {
        let cli = parse(&["-i", "e", "-w", "c-%s.pcap", "-G", "60", "-W", "3"]).unwrap();
        assert_eq!((cli.rotate_seconds, cli.file_count), (Some(60), Some(3)));
        assert_eq!(parse(&["-i", "e"]).unwrap().rotate_seconds, None);
        assert!(parse(&["-i", "e", "-G", "0"]).is_err());
        assert!(parse(&["-i", "e", "-G", "1.5"]).is_err());
    }

    #[test]
    fn doctor_is_a_subcommand_and_the_expression_still_works() {
        let cli = parse(&["doctor", "-i", "veth0"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Doctor { ref iface, frame_size: 2048, frames: 4096 }) if iface == "veth0"
        ));
        assert!(parse(&["doctor"]).is_err(), "doctor needs -i");
        let cli = parse(&["-i", "e", "-w", "f", "udp", "port", "53"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.expression(), "udp port 53");
    }

    #[test]
    fn requirements_repeat_and_contradictions_are_refused() {
        let cli = parse(&[
            "-i",
            "e",
            "--port",
            "1",
            "--require",
            "zero-copy",
            "--require",
            "drv",
        ])
        .unwrap();
        assert_eq!(cli.require, [RequireArg::ZeroCopy, RequireArg::Drv]);
        assert!(cli.validate().is_ok());
        let cli = parse(&[
            "-i",
            "e",
            "--port",
            "1",
            "--require",
            "drv",
            "--xdp-mode",
            "skb",
        ])
        .unwrap();
        assert!(cli.validate().unwrap_err().contains("--require drv"));
        assert!(parse(&["-i", "e", "--require", "speed"]).is_err());
    }

    #[test]
    fn user_seccomp_and_metrics() {
        let cli = parse(&["-i", "e", "--port", "1", "-Z", "nobody", "--no-seccomp"]).unwrap();
        assert_eq!(cli.user.as_deref(), Some("nobody"));
        assert!(cli.no_seccomp);
        let cli = parse(&["-i", "e", "--metrics", "127.0.0.1:9101"]).unwrap();
        assert_eq!(cli.metrics, Some("127.0.0.1:9101".parse().unwrap()));
        assert!(parse(&["-i", "e", "--metrics", "localhost"]).is_err());
    }

    #[test]
    fn verbosity_counts() {
        assert_eq!(parse(&["-i", "e"]).unwrap().log_filter(), "warn");
        assert_eq!(parse(&["-i", "e", "-v"]).unwrap().log_filter(), "info");
        assert_eq!(parse(&["-i", "e", "-vv"]).unwrap().log_filter(), "debug");
    }
}
