//! Tensor data as JSON values: the `data` of KServe v2 requests and
//! responses (flat or nested, row-major) and the rows of `instances`.
//!
//! Strict JSON has no NaN or infinities, but Triton reads and writes them as
//! the bare tokens `NaN`, `Infinity` and `-Infinity`, and Python's `json`
//! (which tritonclient uses) does the same; so does this server.

use std::borrow::Cow;
use std::fmt::Write;

use bytes::{BufMut, Bytes, BytesMut};
use half::{bf16, f16};
use serde_json::{Number, Value};

use crate::tensor::{DataType, Tensor, encode_byte_strings, le_chunks, split_byte_strings};

/// Collects the leaves of nested JSON arrays in row-major order.
pub fn flatten<'a>(value: &'a Value, leaves: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, leaves)),
        leaf => leaves.push(leaf),
    }
}

/// The shape of a nested JSON array (`[]` for a single value); ragged
/// nesting is an error.
pub fn shape_of(value: &Value) -> Result<Vec<i64>, String> {
    let Value::Array(items) = value else {
        return Ok(Vec::new());
    };
    let Some(first) = items.first() else {
        return Ok(vec![0]);
    };
    let inner = shape_of(first)?;
    for item in &items[1..] {
        if shape_of(item)? != inner {
            return Err("nested arrays have different lengths".to_string());
        }
    }
    let mut shape = vec![items.len() as i64];
    shape.extend(inner);
    Ok(shape)
}

/// Packs JSON values into the tensor byte layout of `datatype`.
pub fn encode_values(datatype: DataType, values: &[&Value]) -> Result<Bytes, String> {
    let mismatch = |index: usize, value: &Value, expected: &str| {
        format!("element {index} is {value}, expected {expected} for {datatype}")
    };
    if datatype == DataType::Bytes {
        let strings = values
            .iter()
            .enumerate()
            .map(|(index, value)| value.as_str().ok_or_else(|| mismatch(index, value, "a string")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(encode_byte_strings(strings));
    }
    let mut buffer = BytesMut::with_capacity(values.len() * datatype.element_size().unwrap_or(1));
    for (index, &value) in values.iter().enumerate() {
        let integer = || -> Result<i128, String> {
            value
                .as_i64()
                .map(i128::from)
                .or_else(|| value.as_u64().map(i128::from))
                .ok_or_else(|| mismatch(index, value, "an integer"))
        };
        let out_of_range = || format!("element {index} is {value}, which does not fit {datatype}");
        let float = || match value {
            Value::String(token) => non_finite(token).ok_or_else(|| mismatch(index, value, "a number")),
            _ => value.as_f64().ok_or_else(|| mismatch(index, value, "a number")),
        };
        match datatype {
            DataType::Bool => {
                buffer.put_u8(u8::from(value.as_bool().ok_or_else(|| mismatch(index, value, "true or false"))?))
            }
            DataType::Uint8 => buffer.put_u8(u8::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Uint16 => buffer.put_u16_le(u16::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Uint32 => buffer.put_u32_le(u32::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Uint64 => buffer.put_u64_le(u64::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Int8 => buffer.put_i8(i8::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Int16 => buffer.put_i16_le(i16::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Int32 => buffer.put_i32_le(i32::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Int64 => buffer.put_i64_le(i64::try_from(integer()?).map_err(|_| out_of_range())?),
            DataType::Fp16 => buffer.put_u16_le(f16::from_f64(float()?).to_bits()),
            DataType::Bf16 => buffer.put_u16_le(bf16::from_f64(float()?).to_bits()),
            DataType::Fp32 => buffer.put_f32_le(float()? as f32),
            DataType::Fp64 => buffer.put_f64_le(float()?),
            DataType::Bytes => unreachable!("handled above"),
        }
    }
    Ok(buffer.freeze())
}

fn non_finite(token: &str) -> Option<f64> {
    match token {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Puts the bare tokens `NaN`, `Infinity` and `-Infinity` of a request body
/// in quotes so a strict JSON parser accepts them; [`encode_values`] reads
/// the quoted forms back as floats. Strings are left alone.
pub fn quote_non_finite_tokens(json: &[u8]) -> Cow<'_, [u8]> {
    let mentions = |token: &[u8]| json.windows(token.len()).any(|window| window == token);
    if !mentions(b"NaN") && !mentions(b"Infinity") {
        return Cow::Borrowed(json);
    }
    let mut quoted = Vec::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut index = 0;
    while index < json.len() {
        let byte = json[index];
        if in_string {
            quoted.push(byte);
            if byte == b'\\' && index + 1 < json.len() {
                quoted.push(json[index + 1]);
                index += 1;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
            quoted.push(byte);
        } else if let Some(token) =
            [&b"-Infinity"[..], b"Infinity", b"NaN"].into_iter().find(|token| json[index..].starts_with(token))
        {
            quoted.push(b'"');
            quoted.extend_from_slice(token);
            quoted.push(b'"');
            index += token.len();
            continue;
        } else {
            quoted.push(byte);
        }
        index += 1;
    }
    Cow::Owned(quoted)
}

/// The elements of a tensor as the text of a flat JSON array, with NaN and
/// infinities as Triton writes them; BYTES elements must be UTF-8.
pub fn data_array_text(tensor: &Tensor) -> Result<String, String> {
    let floats: Vec<f64> = match tensor.datatype {
        DataType::Fp16 => le_chunks::<2>(&tensor.data).map(|b| shortest(f16::from_le_bytes(b).to_f32())).collect(),
        DataType::Bf16 => le_chunks::<2>(&tensor.data).map(|b| shortest(bf16::from_le_bytes(b).to_f32())).collect(),
        DataType::Fp32 => le_chunks::<4>(&tensor.data).map(|b| shortest(f32::from_le_bytes(b))).collect(),
        DataType::Fp64 => le_chunks::<8>(&tensor.data).map(f64::from_le_bytes).collect(),
        _ => return serde_json::to_string(&decode_values(tensor)?).map_err(|error| error.to_string()),
    };
    let mut text = String::with_capacity(floats.len() * 8 + 2);
    text.push('[');
    for (index, value) in floats.into_iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        match value {
            value if value.is_nan() => text.push_str("NaN"),
            f64::INFINITY => text.push_str("Infinity"),
            f64::NEG_INFINITY => text.push_str("-Infinity"),
            value => {
                let number = Number::from_f64(value).expect("finite");
                write!(text, "{number}").expect("writing to a String cannot fail");
            }
        }
    }
    text.push(']');
    Ok(text)
}

/// A single-precision value as the double nearest its shortest decimal
/// form, so 0.1f32 reads 0.1 in JSON rather than 0.10000000149011612.
fn shortest(value: f32) -> f64 {
    if value.is_finite() { value.to_string().parse().unwrap_or(f64::NAN) } else { f64::from(value) }
}

/// The elements of a tensor as flat JSON values. Floats that strict JSON
/// cannot express (NaN, infinities) become `null`; BYTES elements must be
/// UTF-8.
pub fn decode_values(tensor: &Tensor) -> Result<Vec<Value>, String> {
    let float = |value: f64| Number::from_f64(value).map_or(Value::Null, Value::Number);
    let single = |value: f32| float(shortest(value));
    let data = &tensor.data;
    Ok(match tensor.datatype {
        DataType::Bool => data.iter().map(|&byte| Value::Bool(byte != 0)).collect(),
        DataType::Uint8 => data.iter().map(|&byte| Value::from(byte)).collect(),
        DataType::Int8 => data.iter().map(|&byte| Value::from(byte as i8)).collect(),
        DataType::Uint16 => le_chunks::<2>(data).map(|b| Value::from(u16::from_le_bytes(b))).collect(),
        DataType::Int16 => le_chunks::<2>(data).map(|b| Value::from(i16::from_le_bytes(b))).collect(),
        DataType::Uint32 => le_chunks::<4>(data).map(|b| Value::from(u32::from_le_bytes(b))).collect(),
        DataType::Int32 => le_chunks::<4>(data).map(|b| Value::from(i32::from_le_bytes(b))).collect(),
        DataType::Uint64 => le_chunks::<8>(data).map(|b| Value::from(u64::from_le_bytes(b))).collect(),
        DataType::Int64 => le_chunks::<8>(data).map(|b| Value::from(i64::from_le_bytes(b))).collect(),
        DataType::Fp16 => le_chunks::<2>(data).map(|b| single(f16::from_le_bytes(b).to_f32())).collect(),
        DataType::Bf16 => le_chunks::<2>(data).map(|b| single(bf16::from_le_bytes(b).to_f32())).collect(),
        DataType::Fp32 => le_chunks::<4>(data).map(|b| single(f32::from_le_bytes(b))).collect(),
        DataType::Fp64 => le_chunks::<8>(data).map(|b| float(f64::from_le_bytes(b))).collect(),
        DataType::Bytes => split_byte_strings(data)
            .map_err(|error| error.to_string())?
            .into_iter()
            .enumerate()
            .map(|(index, element)| {
                std::str::from_utf8(element).map(|text| Value::String(text.to_string())).map_err(|_| {
                    format!("element {index} is not UTF-8 text, which JSON cannot carry; ask for binary data instead")
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

/// Nests flat row-major values by `dims` (a scalar when `dims` is empty).
pub fn nest(values: Vec<Value>, dims: &[i64]) -> Value {
    let Some((&outer, inner)) = dims.split_first() else {
        return values.into_iter().next().unwrap_or(Value::Null);
    };
    if inner.is_empty() {
        return Value::Array(values);
    }
    let outer = usize::try_from(outer).unwrap_or(0);
    let stride = values.len().checked_div(outer).unwrap_or(0);
    let mut rest = values.into_iter();
    Value::Array((0..outer).map(|_| nest(rest.by_ref().take(stride).collect(), inner)).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn leaves(value: &Value) -> Vec<&Value> {
        let mut leaves = Vec::new();
        flatten(value, &mut leaves);
        leaves
    }

    fn tensor(datatype: DataType, data: Bytes) -> Tensor {
        Tensor { name: "t".into(), datatype, shape: vec![], data }
    }

    #[test]
    fn nested_and_flat_data_encode_alike() {
        let nested = json!([[1, 2], [3, 4]]);
        let flat = json!([1, 2, 3, 4]);
        let a = encode_values(DataType::Int16, &leaves(&nested)).unwrap();
        assert_eq!(a, encode_values(DataType::Int16, &leaves(&flat)).unwrap());
        assert_eq!(a[..], [1, 0, 2, 0, 3, 0, 4, 0]);
        assert_eq!(shape_of(&nested).unwrap(), vec![2, 2]);
        assert_eq!(shape_of(&json!(5)).unwrap(), Vec::<i64>::new());
        assert!(shape_of(&json!([[1, 2], [3]])).is_err());
    }

    #[test]
    fn every_datatype_round_trips() {
        let cases = [
            (DataType::Bool, json!([true, false])),
            (DataType::Uint8, json!([0, 255])),
            (DataType::Uint16, json!([0, 65535])),
            (DataType::Uint32, json!([0, 4294967295u32])),
            (DataType::Uint64, json!([0, u64::MAX])),
            (DataType::Int8, json!([-128, 127])),
            (DataType::Int16, json!([-32768, 32767])),
            (DataType::Int32, json!([i32::MIN, i32::MAX])),
            (DataType::Int64, json!([i64::MIN, i64::MAX])),
            (DataType::Fp16, json!([1.5, -2.0])),
            (DataType::Bf16, json!([1.5, -256.0])),
            (DataType::Fp32, json!([0.25, -1e30, 0.1])),
            (DataType::Fp64, json!([0.1, -1e300])),
            (DataType::Bytes, json!(["", "héllo"])),
        ];
        for (datatype, values) in cases {
            let data = encode_values(datatype, &leaves(&values)).unwrap();
            assert_eq!(Value::Array(decode_values(&tensor(datatype, data)).unwrap()), values, "{datatype}");
        }
    }

    #[test]
    fn wrong_values_are_named() {
        let error = encode_values(DataType::Int8, &leaves(&json!([1, 300]))).unwrap_err();
        assert_eq!(error, "element 1 is 300, which does not fit INT8");
        let error = encode_values(DataType::Fp32, &leaves(&json!([1, "x"]))).unwrap_err();
        assert_eq!(error, "element 1 is \"x\", expected a number for FP32");
        let error = encode_values(DataType::Int32, &leaves(&json!([1.5]))).unwrap_err();
        assert_eq!(error, "element 0 is 1.5, expected an integer for INT32");
    }

    #[test]
    fn nan_becomes_null_and_binary_strings_are_refused() {
        let nan = tensor(DataType::Fp32, Bytes::copy_from_slice(&f32::NAN.to_le_bytes()));
        assert_eq!(decode_values(&nan).unwrap(), vec![Value::Null]);
        let binary = tensor(DataType::Bytes, encode_byte_strings([b"\xff".as_slice()]));
        assert!(decode_values(&binary).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn non_finite_floats_use_tritons_tokens() {
        let body = br#"{"data":[NaN,-Infinity,Infinity,1.5],"note":"NaN stays a string"}"#;
        let quoted = quote_non_finite_tokens(body);
        let parsed: Value = serde_json::from_slice(&quoted).unwrap();
        assert_eq!(parsed["note"], "NaN stays a string");
        let data = encode_values(DataType::Fp32, &leaves(&parsed["data"])).unwrap();
        let tensor = tensor(DataType::Fp32, data);
        assert_eq!(data_array_text(&tensor).unwrap(), "[NaN,-Infinity,Infinity,1.5]");
        assert!(matches!(quote_non_finite_tokens(b"[1, 2]"), Cow::Borrowed(_)));
    }

    #[test]
    fn doubles_keep_every_digit() {
        let value = json!([950.8318268926117f64, 0.1]);
        let data = encode_values(DataType::Fp64, &leaves(&value)).unwrap();
        assert_eq!(data_array_text(&tensor(DataType::Fp64, data)).unwrap(), "[950.8318268926117,0.1]");
        let parsed: Value = serde_json::from_str("[950.8318268926117]").unwrap();
        assert_eq!(parsed[0].as_f64(), Some(950.8318268926117));
    }

    #[test]
    fn nest_restores_shapes() {
        let values: Vec<Value> = (1..=6).map(Value::from).collect();
        assert_eq!(nest(values.clone(), &[2, 3]), json!([[1, 2, 3], [4, 5, 6]]));
        assert_eq!(nest(values, &[6]), json!([1, 2, 3, 4, 5, 6]));
        assert_eq!(nest(vec![json!(7)], &[]), json!(7));
    }
}
