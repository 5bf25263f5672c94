//! Tensors as they travel through the server: bytes with a datatype and a
//! shape, never converted element by element unless a protocol demands it.

mod byte_strings;
mod datatype;

pub use byte_strings::{ByteStringsError, encode_byte_strings, split_byte_strings};
pub use datatype::DataType;

use bytes::Bytes;

/// A named tensor: the element bytes in row-major order, little-endian, with
/// BYTES elements each stored as a 4-byte little-endian length followed by
/// the bytes (the layout of Triton's raw tensor contents).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Input or output name as the model configuration spells it.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions, including the batch dimension when the model batches.
    pub shape: Vec<i64>,
    /// Element bytes (see the type documentation for the layout).
    pub data: Bytes,
}

/// Number of elements of a shape, or `None` when a dimension is negative or
/// the product overflows.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |count, &dim| {
        let dim = usize::try_from(dim).ok()?;
        count.checked_mul(dim)
    })
}

/// The fixed-size elements of `data`, `N` bytes each, for reading them
/// with `from_le_bytes`; a trailing partial element is left out.
pub fn le_chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|chunk| chunk.try_into().expect("chunks_exact yields N bytes"))
}

/// Formats a shape the way error messages print it: `[1,16]`.
pub fn format_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_multiplies_dimensions() {
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[5, 0]), Some(0));
    }

    #[test]
    fn element_count_rejects_negative_and_overflowing_shapes() {
        assert_eq!(element_count(&[-1, 16]), None);
        assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
    }

    #[test]
    fn shapes_format_compactly() {
        assert_eq!(format_shape(&[1, 16]), "[1,16]");
        assert_eq!(format_shape(&[]), "[]");
    }
}
