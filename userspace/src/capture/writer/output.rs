//! Where encoded capture bytes go: a file or standard output, behind a small trait
//! so the writer's error handling runs in tests against sinks that fail on cue.

use std::{
    fs::{File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    os::fd::AsFd,
    path::Path,
};

/// A byte sink the writer can also cut back after a failed write.
pub(super) trait Sink: Write {
    /// Cuts the output back to its first `len` bytes so it ends on a complete
    /// record. `Ok(false)` when this sink cannot be cut (a pipe, a terminal).
    fn truncate(&mut self, len: u64) -> io::Result<bool>;

    /// Opens the next file of a rotation.
    fn create(path: &Path) -> io::Result<Self>
    where
        Self: Sized;
}

/// A capture file, or standard output.
#[derive(Debug)]
pub(super) struct FileSink {
    file: File,
    /// Only regular files can be cut; ftruncate(2) fails on pipes and devices.
    regular: bool,
}

impl FileSink {
    /// Standard output, written through its own descriptor: `io::Stdout` is
    /// line-buffered and would scan our binary data for newlines.
    pub(super) fn stdout() -> io::Result<Self> {
        let mut out = io::stdout();
        // Anything printed before must come out before the capture header.
        out.flush()?;
        let file = File::from(out.as_fd().try_clone_to_owned()?);
        // `-w - > file` is a regular file, but tcpdump semantics (and the
        // caller's shell) own it: a failed write just stops.
        Ok(Self {
            file,
            regular: false,
        })
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.file.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Sink for FileSink {
    fn truncate(&mut self, len: u64) -> io::Result<bool> {
        if !self.regular {
            return Ok(false);
        }
        self.file.set_len(len)?;
        // set_len leaves the offset where it was; later writes (none today, after
        // an error) must continue at the cut, not leave a hole.
        self.file.seek(SeekFrom::Start(len))?;
        Ok(true)
    }

    fn create(path: &Path) -> io::Result<Self> {
        // Like tcpdump (and libpcap's fopen(name, "wb")): create or overwrite.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let regular = file.metadata()?.file_type().is_file();
        Ok(Self { file, regular })
    }
}
