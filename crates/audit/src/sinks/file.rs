//! The file sink: appends events, one per line in the sink's `format`, to a local file.
//!
//! Each batch is one `write` followed by `sync_data`, and only then reported delivered, so
//! the sink's cursor never moves past events that are not on disk. Before each batch the
//! sink compares the open file's device and inode with what `path` names now: when
//! logrotate (or anyone) moved or removed the file, it opens a new one at `path` instead of
//! writing into the rotated copy. A batch that fails halfway is cut off again, so a retry
//! does not leave half a line behind (this assumes the sink is the file's only writer).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use futures::future::BoxFuture;
use gatehouse_config::{EventFormat, SinkConfig};

use super::{Delivered, Shipped, Sink, SinkError};
use crate::format::render;

/// The file sink.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    path: PathBuf,
    format: EventFormat,
    open: Option<Open>,
}

/// The file being appended to, and which file it is (device, inode).
#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
}

impl FileSink {
    /// Builds it from its config (`path` is required; the file is opened on first
    /// delivery, so a directory that appears later is fine).
    pub fn new(config: &SinkConfig) -> Result<FileSink, SinkError> {
        let path = config.path.clone().ok_or_else(|| {
            SinkError::Config(format!(
                "audit.sinks {}: a file sink needs `path`",
                config.name
            ))
        })?;
        Ok(FileSink {
            name: config.name.clone(),
            path,
            format: config.format.unwrap_or_default(),
            open: None,
        })
    }
}

impl Sink for FileSink {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(batch.iter().map(|s| s.raw.len() + 64).sum());
            for s in batch {
                buf.extend_from_slice(render(self.format, &s.event, &s.raw).as_bytes());
                buf.push(b'\n');
            }
            let open = self.open.take();
            let path = self.path.clone();
            // Writing and syncing block; keep them off the runtime's worker threads.
            let (open, result) = tokio::task::spawn_blocking(move || append(open, &path, &buf))
                .await
                .map_err(|e| SinkError::retry(format!("file sink task: {e}")))?;
            self.open = open;
            result.map_err(|e| {
                SinkError::retry(format!(
                    "audit.sinks {}: {}: {e}",
                    self.name,
                    self.path.display()
                ))
            })?;
            Ok(Delivered::default())
        })
    }
}

/// Appends `buf` to `path` (reopening it if it is not the file `open` holds) and syncs it.
/// On failure the file is dropped so the next attempt starts from a fresh open.
fn append(
    open: Option<Open>,
    path: &std::path::Path,
    buf: &[u8],
) -> (Option<Open>, std::io::Result<()>) {
    let run = || -> std::io::Result<Open> {
        let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let mut open = match open {
            Some(o) if Some(o.id) == current => o,
            _ => reopen(path)?,
        };
        let before = open.file.metadata()?.len();
        if let Err(e) = open
            .file
            .write_all(buf)
            .and_then(|()| open.file.sync_data())
        {
            // A batch cut halfway (disk full) would leave half a line, followed on retry by
            // the whole batch again: cut the file back to where this batch started.
            let _ = open.file.set_len(before);
            return Err(e);
        }
        Ok(open)
    };
    match run() {
        Ok(o) => (Some(o), Ok(())),
        Err(e) => (None, Err(e)),
    }
}

fn reopen(path: &std::path::Path) -> std::io::Result<Open> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let m = file.metadata()?;
    Ok(Open {
        file,
        id: (m.dev(), m.ino()),
    })
}
