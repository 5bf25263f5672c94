//! The serialized layout of BYTES tensors: each element is a 4-byte
//! little-endian length followed by that many bytes, elements back to back.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Why a buffer is not a valid sequence of length-prefixed elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteStringsError {
    /// Fewer than 4 bytes remain where a length prefix should start.
    TruncatedLength {
        /// Index of the element whose prefix is cut off.
        element: usize,
    },
    /// A length prefix claims more bytes than remain.
    TruncatedElement {
        /// Index of the element.
        element: usize,
        /// Bytes the prefix declares.
        declared: usize,
        /// Bytes left in the buffer.
        remaining: usize,
    },
}

impl fmt::Display for ByteStringsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteStringsError::TruncatedLength { element } => {
                write!(f, "element {element} has an incomplete 4-byte length prefix")
            }
            ByteStringsError::TruncatedElement { element, declared, remaining } => {
                write!(f, "element {element} declares {declared} bytes but only {remaining} remain")
            }
        }
    }
}

impl std::error::Error for ByteStringsError {}

/// Splits serialized BYTES data into its elements, borrowing from `data`.
pub fn split_byte_strings(data: &[u8]) -> Result<Vec<&[u8]>, ByteStringsError> {
    let mut elements = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let element = elements.len();
        let Some((prefix, tail)) = rest.split_first_chunk::<4>() else {
            return Err(ByteStringsError::TruncatedLength { element });
        };
        let declared = u32::from_le_bytes(*prefix) as usize;
        if declared > tail.len() {
            return Err(ByteStringsError::TruncatedElement { element, declared, remaining: tail.len() });
        }
        let (value, tail) = tail.split_at(declared);
        elements.push(value);
        rest = tail;
    }
    Ok(elements)
}

/// Serializes elements into the length-prefixed layout.
pub fn encode_byte_strings<I, E>(elements: I) -> Bytes
where
    I: IntoIterator<Item = E>,
    E: AsRef<[u8]>,
{
    let mut buffer = BytesMut::new();
    for element in elements {
        let element = element.as_ref();
        // A single element over 4 GiB cannot be expressed in the protocol;
        // tensors that large are rejected long before by message limits.
        buffer.put_u32_le(element.len() as u32);
        buffer.put_slice(element);
    }
    buffer.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_including_empty_and_binary_elements() {
        let elements: Vec<&[u8]> = vec![b"hello", b"", b"\x00\xff\x00"];
        let encoded = encode_byte_strings(&elements);
        assert_eq!(&encoded[..9], b"\x05\x00\x00\x00hello");
        assert_eq!(split_byte_strings(&encoded).unwrap(), elements);
    }

    #[test]
    fn empty_buffer_has_no_elements() {
        assert_eq!(split_byte_strings(&[]).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn rejects_cut_off_prefix_and_element() {
        assert_eq!(
            split_byte_strings(b"\x01\x00\x00\x00a\x02\x00"),
            Err(ByteStringsError::TruncatedLength { element: 1 })
        );
        assert_eq!(
            split_byte_strings(b"\x05\x00\x00\x00abc"),
            Err(ByteStringsError::TruncatedElement { element: 0, declared: 5, remaining: 3 })
        );
    }
}
