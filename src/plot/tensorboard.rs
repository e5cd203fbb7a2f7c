//! TensorBoard event files: a training run writes its scalars and image grids into
//! its folder as `events.out.tfevents.*`, so `tensorboard --logdir runs` shows and
//! compares runs.
//!
//! The format is TensorFlow's record file: each record is its length (u64, little
//! endian), the masked CRC-32C of those 8 bytes, the record (a serialized `Event`
//! protocol buffer) and its masked CRC-32C. The messages below are the fields of
//! TensorFlow's event.proto and summary.proto that elbo writes, encoded by `prost`
//! (the crates that carry the whole .proto files need `protoc` installed to build).

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// event.proto's `Event`: one record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since 1970.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The first record of a file: "brain.Event:2".
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// summary.proto's `Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// summary.proto's `Summary.Value`: a tag and a scalar or an image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Kind", tags = "2, 4")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

/// summary.proto's `Summary.Image`: an encoded PNG with its size.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// The record format's checksum: CRC-32C, rotated right by 15 bits plus a constant.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let c = CRC32C.checksum(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The bytes of one record holding `event`.
pub fn record(event: &Event) -> Vec<u8> {
    let data = prost::Message::encode_to_vec(event);
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&masked_crc(&data).to_le_bytes());
    out
}

/// The events of a record file, in order; a damaged or cut record is an error.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut events = Vec::new();
    let mut at = 0;
    let word = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    while at < bytes.len() {
        let bad = || anyhow::anyhow!("{}: a damaged record at byte {at}", path.display());
        let head = bytes.get(at..at + 12).ok_or_else(bad)?;
        if masked_crc(&head[..8]) != word(&head[8..]) {
            return Err(bad());
        }
        let len = u64::from_le_bytes(head[..8].try_into().unwrap()) as usize;
        let data = bytes.get(at + 12..at + 12 + len).ok_or_else(bad)?;
        let crc = bytes.get(at + 12 + len..at + 16 + len).ok_or_else(bad)?;
        if masked_crc(data) != word(crc) {
            return Err(bad());
        }
        events.push(prost::Message::decode(data).with_context(bad)?);
        at += 16 + len;
    }
    Ok(events)
}

/// An event file being written: every event is written and flushed at once, so a run
/// that stops keeps what it logged.
pub struct EventFile {
    file: std::fs::File,
    path: PathBuf,
}

impl EventFile {
    /// A new file in `dir`, named as TensorFlow names them
    /// (`events.out.tfevents.<seconds>.<host>.<pid>.<n>`, n counting this process's
    /// files); a resumed run adds one, and TensorBoard reads a folder's files as one run.
    pub fn create(dir: &Path) -> Result<EventFile> {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        static FILES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("events.out.tfevents.{secs:010}.{host}.{}.{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut f = EventFile { file, path };
        f.write(0, What::FileVersion("brain.Event:2".into()))?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, step: u64, what: What) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let event = Event { wall_time: now.as_secs_f64(), step: step as i64, what: Some(what) };
        self.file
            .write_all(&record(&event))
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Scalars, each under its tag, at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| Value { tag: tag.to_string(), kind: Some(Kind::SimpleValue(*v as f32)) })
            .collect();
        self.write(step, What::Summary(Summary { value }))
    }

    /// A PNG picture under `tag` at `step`.
    pub fn image(&mut self, step: u64, tag: &str, png: &crate::plot::grid::Png) -> Result<()> {
        let image = Image {
            height: png.height as i32,
            width: png.width as i32,
            colorspace: png.channels as i32,
            encoded_image_string: png.bytes.clone(),
        };
        let value = vec![Value { tag: tag.to_string(), kind: Some(Kind::Image(image)) }];
        self.write(step, What::Summary(Summary { value }))
    }
}
