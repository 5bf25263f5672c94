//! Tensor element types and their names in the protocol and in model
//! configurations.

use std::fmt;

use crate::proto::inference::DataType as ConfigDataType;

/// A tensor element type of the KServe v2 / Triton protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// One byte per element, 0 or 1.
    Bool,
    /// Unsigned 8-bit integer.
    Uint8,
    /// Unsigned 16-bit integer.
    Uint16,
    /// Unsigned 32-bit integer.
    Uint32,
    /// Unsigned 64-bit integer.
    Uint64,
    /// Signed 8-bit integer.
    Int8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// IEEE half precision float.
    Fp16,
    /// bfloat16 (the upper half of an IEEE single).
    Bf16,
    /// IEEE single precision float.
    Fp32,
    /// IEEE double precision float.
    Fp64,
    /// Variable-length byte strings (`TYPE_STRING` in model configurations).
    Bytes,
}

impl DataType {
    /// Every datatype, in the order of the protocol's documentation.
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol name, such as `"INT32"`.
    pub fn protocol_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name such as `"FP32"`.
    pub fn from_protocol_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|datatype| datatype.protocol_name() == name)
    }

    /// The model configuration enum value, such as `TYPE_INT32`.
    pub fn to_config(self) -> ConfigDataType {
        match self {
            DataType::Bool => ConfigDataType::TypeBool,
            DataType::Uint8 => ConfigDataType::TypeUint8,
            DataType::Uint16 => ConfigDataType::TypeUint16,
            DataType::Uint32 => ConfigDataType::TypeUint32,
            DataType::Uint64 => ConfigDataType::TypeUint64,
            DataType::Int8 => ConfigDataType::TypeInt8,
            DataType::Int16 => ConfigDataType::TypeInt16,
            DataType::Int32 => ConfigDataType::TypeInt32,
            DataType::Int64 => ConfigDataType::TypeInt64,
            DataType::Fp16 => ConfigDataType::TypeFp16,
            DataType::Bf16 => ConfigDataType::TypeBf16,
            DataType::Fp32 => ConfigDataType::TypeFp32,
            DataType::Fp64 => ConfigDataType::TypeFp64,
            DataType::Bytes => ConfigDataType::TypeString,
        }
    }

    /// The datatype of a model configuration enum value; `None` for
    /// `TYPE_INVALID` and unknown values.
    pub fn from_config(value: i32) -> Option<Self> {
        let config = ConfigDataType::try_from(value).ok()?;
        Self::ALL.into_iter().find(|datatype| datatype.to_config() == config)
    }

    /// Bytes per element, or `None` for variable-length BYTES.
    pub fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for datatype in DataType::ALL {
            assert_eq!(DataType::from_protocol_name(datatype.protocol_name()), Some(datatype));
        }
        assert_eq!(DataType::from_protocol_name("FLOAT32"), None);
        assert_eq!(DataType::from_protocol_name("int32"), None);
    }

    #[test]
    fn config_values_round_trip() {
        for datatype in DataType::ALL {
            assert_eq!(DataType::from_config(datatype.to_config() as i32), Some(datatype));
        }
        assert_eq!(DataType::from_config(ConfigDataType::TypeInvalid as i32), None);
        assert_eq!(DataType::from_config(99), None);
    }

    #[test]
    fn bytes_is_config_type_string() {
        assert_eq!(DataType::Bytes.to_config(), ConfigDataType::TypeString);
        assert_eq!(DataType::Bytes.element_size(), None);
        assert_eq!(DataType::Fp16.element_size(), Some(2));
    }
}
