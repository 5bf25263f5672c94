//! Moving tensors between the server's byte buffers and ONNX Runtime
//! values: inputs are borrowed in place when their bytes are aligned for
//! the element type, outputs are copied once out of ONNX Runtime's memory.

use std::ptr;

use bytes::Bytes;
use half::{bf16, f16};
use ort::AsPointer;
use ort::memory::Allocator;
use ort::session::SessionInputValue;
use ort::value::{
    DynTensor, DynValue, PrimitiveTensorElementType, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType,
};

use crate::tensor::{DataType, Tensor, encode_byte_strings, split_byte_strings};

// Tensor bytes are little-endian on the wire and handed to ONNX Runtime as
// they are, which is only right on a little-endian host.
#[cfg(target_endian = "big")]
compile_error!("tensor data is passed to ONNX Runtime without byte swapping; big-endian hosts are not supported");

/// The protocol datatype of an ONNX element type, if it has one.
pub fn datatype_of(element: TensorElementType) -> Option<DataType> {
    Some(match element {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// An ONNX Runtime input for a validated tensor, borrowing its bytes when
/// possible.
pub fn input_value(tensor: &Tensor) -> ort::Result<SessionInputValue<'_>> {
    match tensor.datatype {
        DataType::Bool => {
            // Any byte other than 0 and 1 is not a valid `bool`, so booleans
            // are normalized into a fresh buffer rather than borrowed.
            let values: Vec<bool> = tensor.data.iter().map(|&byte| byte != 0).collect();
            Ok(OrtTensor::from_array((tensor.shape.clone(), values))?.into())
        }
        DataType::Uint8 => primitive_input::<u8>(tensor),
        DataType::Uint16 => primitive_input::<u16>(tensor),
        DataType::Uint32 => primitive_input::<u32>(tensor),
        DataType::Uint64 => primitive_input::<u64>(tensor),
        DataType::Int8 => primitive_input::<i8>(tensor),
        DataType::Int16 => primitive_input::<i16>(tensor),
        DataType::Int32 => primitive_input::<i32>(tensor),
        DataType::Int64 => primitive_input::<i64>(tensor),
        DataType::Fp16 => primitive_input::<f16>(tensor),
        DataType::Bf16 => primitive_input::<bf16>(tensor),
        DataType::Fp32 => primitive_input::<f32>(tensor),
        DataType::Fp64 => primitive_input::<f64>(tensor),
        DataType::Bytes => string_input(tensor).map(Into::into),
    }
}

fn primitive_input<T>(tensor: &Tensor) -> ort::Result<SessionInputValue<'_>>
where
    T: PrimitiveTensorElementType + bytemuck::Pod + std::fmt::Debug,
{
    let shape = tensor.shape.clone();
    match bytemuck::try_cast_slice::<u8, T>(&tensor.data) {
        Ok(elements) if !elements.is_empty() => Ok(TensorRef::from_array_view((shape, elements))?.into()),
        // Misaligned (or empty) data: copy into a buffer of the element type.
        _ => {
            let elements: Vec<T> = bytemuck::pod_collect_to_vec(&tensor.data);
            Ok(OrtTensor::from_array((shape, elements))?.into())
        }
    }
}

/// Builds a string tensor byte for byte: ONNX strings may hold any bytes,
/// including NUL and invalid UTF-8, as Triton's BYTES elements may.
fn string_input(tensor: &Tensor) -> ort::Result<DynTensor> {
    let elements = split_byte_strings(&tensor.data).map_err(|error| ort::Error::new(error.to_string()))?;
    let mut value = DynTensor::new(&Allocator::default(), TensorElementType::String, tensor.shape.clone())?;
    for (index, element) in elements.iter().enumerate() {
        let mut buffer: *mut std::ffi::c_char = ptr::null_mut();
        // SAFETY: `value` is a string tensor of `elements.len()` elements and
        // ONNX Runtime returns a buffer of exactly `element.len()` bytes.
        unsafe {
            ort::Error::result_from_status((ort::api().GetResizedStringTensorElementBuffer)(
                value.ptr_mut(),
                index,
                element.len(),
                &mut buffer,
            ))?;
            if !element.is_empty() {
                ptr::copy_nonoverlapping(element.as_ptr(), buffer.cast::<u8>(), element.len());
            }
        }
    }
    Ok(value)
}

/// Copies an ONNX Runtime output into a server tensor.
pub fn output_tensor(name: &str, value: &DynValue) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(format!("output '{name}' is a {}, not a tensor", value.dtype()));
    };
    let datatype = datatype_of(*ty)
        .ok_or_else(|| format!("output '{name}' has element type {ty:?}, which the protocol cannot carry"))?;
    let data = match datatype {
        DataType::Bool => primitive_output::<bool>(value, |values| values.iter().map(|&b| u8::from(b)).collect()),
        DataType::Uint8 => primitive_output::<u8>(value, bytes_of),
        DataType::Uint16 => primitive_output::<u16>(value, bytes_of),
        DataType::Uint32 => primitive_output::<u32>(value, bytes_of),
        DataType::Uint64 => primitive_output::<u64>(value, bytes_of),
        DataType::Int8 => primitive_output::<i8>(value, bytes_of),
        DataType::Int16 => primitive_output::<i16>(value, bytes_of),
        DataType::Int32 => primitive_output::<i32>(value, bytes_of),
        DataType::Int64 => primitive_output::<i64>(value, bytes_of),
        DataType::Fp16 => primitive_output::<f16>(value, bytes_of),
        DataType::Bf16 => primitive_output::<bf16>(value, bytes_of),
        DataType::Fp32 => primitive_output::<f32>(value, bytes_of),
        DataType::Fp64 => primitive_output::<f64>(value, bytes_of),
        DataType::Bytes => string_output(value, shape.num_elements()),
    }
    .map_err(|error| format!("cannot read output '{name}': {error}"))?;
    Ok(Tensor { name: name.to_string(), datatype, shape: shape.to_vec(), data })
}

fn bytes_of<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

fn primitive_output<T: PrimitiveTensorElementType>(
    value: &DynValue,
    to_bytes: impl Fn(&[T]) -> Vec<u8>,
) -> ort::Result<Bytes> {
    let (_, values) = value.try_extract_tensor::<T>()?;
    Ok(Bytes::from(to_bytes(values)))
}

/// Reads a string tensor byte for byte (see [`string_input`]).
fn string_output(value: &DynValue, count: usize) -> ort::Result<Bytes> {
    let api = ort::api();
    let mut total = 0usize;
    // SAFETY: `value` is a string tensor of `count` elements (checked by the
    // caller from its type); the buffers are sized as ONNX Runtime reports.
    unsafe {
        ort::Error::result_from_status((api.GetStringTensorDataLength)(value.ptr(), &mut total))?;
    }
    let mut content = vec![0u8; total];
    let mut offsets = vec![0usize; count];
    if count > 0 {
        unsafe {
            ort::Error::result_from_status((api.GetStringTensorContent)(
                value.ptr(),
                content.as_mut_ptr().cast(),
                total,
                offsets.as_mut_ptr(),
                count,
            ))?;
        }
    }
    let ends = offsets.iter().skip(1).copied().chain(std::iter::once(total));
    let elements = offsets.iter().zip(ends).map(|(&start, end)| &content[start..end]);
    Ok(encode_byte_strings(elements))
}
