//! MNIST digits: an IDX reader (gzip or raw) and the pattern-completion setup shared by
//! `examples/mnist_completion.rs` and the tests.
//!
//! The repository ships 2,004 test digits and 7,996 training digits in `data/mnist`
//! (MIT licence, see `data/mnist/README.md`).

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::{Error, Result};

/// Side of an MNIST image in pixels.
pub const SIDE: usize = 28;

/// The folder of the digits shipped with the repository.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// An IDX array: its dimensions and its u8 values (row-major).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type 0x08), gzip-compressed when the name ends in
/// `.gz`.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let name = path.display().to_string();
    let io = |source| Error::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    }
    .map_err(io)?;
    parse_idx(&bytes).map_err(|reason| Error::Format {
        path: name,
        format: "IDX (u8)",
        reason,
    })
}

fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is shorter than the 4-byte magic",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "magic starts {:02x}{:02x}, expected 0000",
            bytes[0], bytes[1]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x}, only 0x08 (u8) is supported",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if ndims == 0 || bytes.len() < header {
        return Err(format!(
            "{ndims} dimensions do not fit in {} bytes",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("dimensions overflow")?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(format!(
            "dimensions {dims:?} need {count} values, the file holds {}",
            data.len()
        ));
    }
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}

/// Reads up to `limit` images as rows of 784 values scaled to [−1, 1] (0 → −1, 255 → 1).
pub fn load_images(path: &Path, limit: usize) -> Result<Array2<f32>> {
    let idx = read_idx(path)?;
    if idx.dims.len() != 3 || idx.dims[1] != SIDE || idx.dims[2] != SIDE {
        return Err(Error::Format {
            path: path.display().to_string(),
            format: "MNIST images",
            reason: format!("dimensions {:?}, expected [count, 28, 28]", idx.dims),
        });
    }
    let count = idx.dims[0].min(limit);
    let pixels = SIDE * SIDE;
    let values = idx.data[..count * pixels]
        .iter()
        .map(|&v| v as f32 / 127.5 - 1.0)
        .collect();
    Array2::from_shape_vec((count, pixels), values).map_err(|e| Error::Format {
        path: path.display().to_string(),
        format: "MNIST images",
        reason: e.to_string(),
    })
}

/// Hides the bottom `fraction` of the rows of each image (pixels set to 0, the middle of
/// the [−1, 1] range, so that a hidden pixel is equally far from ink and from background).
pub fn mask_bottom(images: &Array2<f32>, fraction: f64) -> Result<Array2<f32>> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::InvalidParameter {
            argument: "mask_fraction",
            value: fraction.to_string(),
            reason: "must be in [0, 1]".into(),
        });
    }
    if images.ncols() != SIDE * SIDE {
        return Err(Error::DimensionMismatch {
            argument: "images (pixels per image)",
            expected: SIDE * SIDE,
            actual: images.ncols(),
        });
    }
    let hidden_rows = (fraction * SIDE as f64).round() as usize;
    let first_hidden = (SIDE - hidden_rows) * SIDE;
    let mut masked = images.clone();
    masked.slice_mut(ndarray::s![.., first_hidden..]).fill(0.0);
    Ok(masked)
}
