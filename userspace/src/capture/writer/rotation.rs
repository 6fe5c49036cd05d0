//! The checked capture options, and the names of the files of a rotation
//! (`-C`, `-G`, `-W`) as tcpdump makes them (`MakeFilename`, `getWflagChars`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use super::{CaptureConfig, CaptureError, Format, MAX_SNAPLEN, Output};

/// `-C` / `-G` / `-W`, checked. Present when `-C` or `-G` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rotation {
    /// `-C`: rotate before a record when the file is larger than this.
    pub(super) size_limit: Option<u64>,
    /// `-G`: rotate before a record once this many seconds (of the wall clock,
    /// in whole seconds as `time(2)` counts them) have passed since the file was
    /// opened.
    pub(super) seconds: Option<u32>,
    /// `-W`.
    pub(super) count: Option<u32>,
    /// Zero-padding of the `-C` file number (tcpdump's `WflagChars`): the
    /// digits of `-W` - 1, with `-C` only.
    pub(super) digits: usize,
}

impl Rotation {
    /// `-G` with `-W N` and without `-C`: the capture ends when file N+1 would
    /// start (tcpdump: "exiting with status 0 when reaching the limit").
    pub(super) fn file_limit(&self) -> Option<u32> {
        match (self.size_limit, self.seconds) {
            (None, Some(_)) => self.count,
            _ => None,
        }
    }
}

/// The checked configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Settings {
    pub(super) format: Format,
    pub(super) snaplen: u32,
    pub(super) packet_buffered: bool,
    pub(super) rotation: Option<Rotation>,
}

impl Settings {
    pub(super) fn from_config(c: &CaptureConfig) -> Result<Self, CaptureError> {
        let snaplen = match c.snaplen {
            0 => MAX_SNAPLEN,
            n if n > MAX_SNAPLEN => {
                return Err(CaptureError::Config(format!(
                    "--snaplen {n} is larger than {MAX_SNAPLEN}, the most tcpdump and \
                     Wireshark accept (0 means {MAX_SNAPLEN})"
                )));
            }
            n => n,
        };
        Ok(Self {
            format: c.format,
            snaplen,
            packet_buffered: c.packet_buffered,
            rotation: rotation(c)?,
        })
    }

    /// The name of file `n` of the rotation for a file opened at `opened_s`
    /// (seconds since the epoch), as tcpdump's `MakeFilename(buffer,
    /// orig_name, cnt, max_chars)`: with `-G`, the name formatted by strftime(3)
    /// in local time; then, for file 0 when unpadded, that name itself, else
    /// the name and the number padded to `digits` ("%s%0*d"). Without `-C`,
    /// always the name itself.
    pub(super) fn file_name(&self, base: &Path, n: u32, opened_s: i64) -> PathBuf {
        let Some(r) = self.rotation else {
            return base.to_path_buf();
        };
        let mut name = match (r.seconds, base.to_str()) {
            // Checked to be UTF-8 with -G (see `rotation`).
            (Some(_), Some(pattern)) => strftime(pattern, opened_s).into(),
            _ => base.as_os_str().to_owned(),
        };
        if n != 0 || r.digits != 0 {
            let digits = r.digits;
            name.push(format!("{n:0digits$}"));
        }
        PathBuf::from(name)
    }
}

/// `-C`, `-G` and `-W`, checked against each other as tcpdump does, and
/// against the output.
fn rotation(c: &CaptureConfig) -> Result<Option<Rotation>, CaptureError> {
    let bad = |msg: String| Err(CaptureError::Config(msg));
    if c.file_size_mb.is_none() && c.rotate_seconds.is_none() {
        if c.file_count.is_some() {
            return bad("-W needs -C or -G (the file size or the seconds to rotate at)".into());
        }
        return Ok(None);
    }
    let base = match &c.output {
        Output::Stdout => {
            return bad("-C, -G and -W need a file (-w FILE), not standard output".into());
        }
        Output::File(base) => base,
    };
    let size_limit = match c.file_size_mb {
        None => None,
        Some(0) => return bad("-C must be at least 1 (MB)".into()),
        Some(mb) => match mb.checked_mul(1_000_000) {
            Some(limit) => Some(limit),
            None => return bad(format!("-C {mb} is too large")),
        },
    };
    if c.rotate_seconds == Some(0) {
        return bad("-G must be at least 1 (second)".into());
    }
    if c.file_count == Some(0) {
        return bad("-W must be at least 1 (files)".into());
    }
    if c.rotate_seconds.is_some() {
        check_pattern(base)?;
    }
    Ok(Some(Rotation {
        size_limit,
        seconds: c.rotate_seconds,
        count: c.file_count,
        digits: match size_limit {
            Some(_) => c.file_count.map_or(0, wflag_chars),
            None => 0,
        },
    }))
}

/// With `-G` the `-w` name is a strftime(3) pattern: it must be text, and
/// every `%` conversion one that strftime knows.
fn check_pattern(base: &Path) -> Result<(), CaptureError> {
    let Some(pattern) = base.to_str() else {
        return Err(CaptureError::Config(format!(
            "-G: the -w name {} is not UTF-8, so it cannot be a strftime(3) pattern",
            base.display()
        )));
    };
    let invalid = chrono::format::StrftimeItems::new(pattern)
        .any(|item| matches!(item, chrono::format::Item::Error));
    if invalid {
        return Err(CaptureError::Config(format!(
            "-G: the -w name `{pattern}` is not a strftime(3) pattern (a % must start \
             a conversion such as %Y%m%d-%H%M%S; write %% for a % itself)"
        )));
    }
    Ok(())
}

/// `pattern` formatted as strftime(3) does, in local time (tcpdump formats
/// `localtime(&Gflag_time)`), for `secs` since the epoch.
fn strftime(pattern: &str, secs: i64) -> String {
    let Some(utc) = chrono::DateTime::from_timestamp(secs, 0) else {
        return pattern.to_owned();
    };
    let local = utc.with_timezone(&chrono::Local);
    let mut name = String::with_capacity(pattern.len() + 16);
    // Cannot fail: the pattern was checked (`check_pattern`).
    if write!(name, "{}", local.format(pattern)).is_err() {
        return pattern.to_owned();
    }
    name
}

/// tcpdump's `getWflagChars`: the number of decimal digits of `count - 1`
/// (0 for a ring of one file).
pub(super) fn wflag_chars(count: u32) -> usize {
    let mut x = count.saturating_sub(1);
    let mut digits = 0;
    while x > 0 {
        digits += 1;
        x /= 10;
    }
    digits
}
