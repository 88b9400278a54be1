//! Reading the files a user names (config, manifest, model, images) without trusting them:
//! only regular files, only up to a size cap. `/dev/zero` is not read until memory runs
//! out, and a FIFO does not hang the reader waiting for a writer.
//!
//! A leaf: it imports nothing from the rest of linesight.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// Largest config file read (`--config`): far beyond any real one.
pub const CONFIG_MAX_BYTES: u64 = MIB;
/// Largest model manifest (`model.toml`) read.
pub const MANIFEST_MAX_BYTES: u64 = MIB;
/// Largest ONNX model read: protobuf's own limit for one file is 2 GiB.
pub const ONNX_MAX_BYTES: u64 = 2048 * MIB;
/// Largest small text file read (tokens, credentials, certificates, image lists).
pub const TEXT_MAX_BYTES: u64 = 16 * MIB;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (it is {0}); linesight reads only regular files here")]
    NotRegular(&'static str),
    #[error("{found} bytes, more than the {cap} bytes read at most here")]
    TooLarge { found: u64, cap: u64 },
}

/// The bytes of the regular file `path`, at most `cap` of them. The file is opened without
/// blocking (a FIFO would otherwise wait for a writer) and checked on its open handle, so
/// what is read is what was checked.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta.file_type())));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge { found: meta.len(), cap });
    }
    // A file that grows while it is read is cut off past the cap, and refused.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            found: bytes.len() as u64,
            cap,
        });
    }
    Ok(bytes)
}

/// As `read_capped`, as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: u64) -> Result<String, ReadError> {
    let bytes = read_capped(path, cap)?;
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused_without_blocking() {
        let e = read_capped(Path::new("/dev/zero"), MIB).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a regular file (it is a character device); linesight reads only regular files here"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_capped(&fifo, MIB).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        assert!(read_capped(dir.path(), MIB)
            .unwrap_err()
            .to_string()
            .contains("a directory"));
    }

    #[test]
    fn a_file_over_the_cap_is_refused_and_one_under_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, [7u8; 100]).unwrap();
        assert_eq!(read_capped(&f, 100).unwrap().len(), 100);
        let e = read_capped(&f, 99).unwrap_err();
        assert_eq!(e.to_string(), "100 bytes, more than the 99 bytes read at most here");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text_capped(&f, 100).unwrap_err().to_string().contains("not UTF-8"));
    }
}
