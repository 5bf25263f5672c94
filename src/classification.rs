//! Triton's classification extension: a requested output with the
//! `classification` parameter set to N comes back as the N highest-valued
//! classes of each batch item instead of the raw tensor, a BYTES tensor of
//! `"<value>:<index>[:<label>]"` strings of shape `[batch, N]` (`[N]` for a
//! model that does not batch), with labels from the output's
//! `label_filename`.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::inference::{ParameterValue, RequestedOutput};
use crate::model_config::ModelConfig;
use crate::tensor::{DataType, Tensor, element_count, encode_byte_strings, format_shape, le_chunks};

/// The request parameter of an output that asks for its classes.
pub const CLASSIFICATION_PARAMETER: &str = "classification";

/// Triton's bound on the classes of one batch item, which keeps a request
/// from sorting an arbitrarily large output.
const MAX_CLASSIFICATION_ELEMENTS: usize = 1_000_000;

/// The class labels of a model version's outputs, read from the files their
/// `label_filename` names in the model's directory. Line i labels class i.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    by_output: HashMap<String, Vec<String>>,
}

impl Labels {
    /// Reads the label files of `config`'s outputs from `model_dir`. A file
    /// that cannot be read, or a name that leads outside the model's
    /// directory, fails the load, as in Triton.
    pub fn load(config: &ModelConfig, model_dir: &Path) -> Result<Self> {
        let mut by_output = HashMap::new();
        for output in config.output.iter().filter(|output| !output.label_filename.is_empty()) {
            let escapes = Path::new(&output.label_filename)
                .components()
                .any(|component| !matches!(component, std::path::Component::Normal(_)));
            if escapes {
                return Err(Error::invalid_argument(format!(
                    "output '{}': label_filename '{}' must name a file inside the model's directory",
                    output.name, output.label_filename
                )));
            }
            let path = model_dir.join(&output.label_filename);
            let text = std::fs::read_to_string(&path).map_err(|error| {
                Error::invalid_argument(format!(
                    "output '{}': cannot read its label file '{}': {error}",
                    output.name,
                    path.display()
                ))
            })?;
            by_output.insert(output.name.clone(), text.lines().map(str::to_string).collect());
        }
        Ok(Self { by_output })
    }

    fn label(&self, output: &str, index: usize) -> Option<&str> {
        let label = self.by_output.get(output)?.get(index)?;
        (!label.is_empty()).then_some(label.as_str())
    }
}

/// How many classes `output` asks for: `None` without the parameter or with
/// 0 (Triton's "no classification"); an error for a value that is not a
/// non-negative integer.
pub fn requested_classes(model: &str, output: &RequestedOutput) -> Result<Option<usize>> {
    let Some(value) = output.parameters.get(CLASSIFICATION_PARAMETER) else {
        return Ok(None);
    };
    let count = match value {
        ParameterValue::Int64(count) => u64::try_from(*count).ok(),
        ParameterValue::Uint64(count) => Some(*count),
        _ => None,
    };
    let count = count.ok_or_else(|| {
        Error::invalid_argument(format!(
            "model '{model}': output '{}': the '{CLASSIFICATION_PARAMETER}' parameter must be a non-negative \
             integer, not {value}",
            output.name
        ))
    })?;
    Ok((count > 0).then(|| usize::try_from(count).unwrap_or(usize::MAX)))
}

/// Whether classes can be computed for `datatype`: Triton compares the
/// integer and FP32/FP64 types only, the ones [`ClassValues`] reads.
pub fn check_classifiable(model: &str, output: &str, datatype: DataType) -> Result<()> {
    match ClassValues::decode(datatype, &[]) {
        Some(_) => Ok(()),
        None => Err(not_classifiable(model, output, datatype)),
    }
}

fn not_classifiable(model: &str, output: &str, datatype: DataType) -> Error {
    Error::invalid_argument(format!(
        "model '{model}': output '{output}': class result not available for datatype {datatype}; \
         classification needs an integer, FP32 or FP64 output"
    ))
}

/// The `count` highest-valued classes of each batch item of `tensor`, an
/// output of `model` (the first dimension is the batch when `batched`), as
/// a BYTES tensor of the same name; ties keep the lower index first.
pub fn classify(model: &str, tensor: &Tensor, count: usize, batched: bool, labels: &Labels) -> Result<Tensor> {
    let invalid =
        |message: String| Error::invalid_argument(format!("model '{model}': output '{}': {message}", tensor.name));
    let unavailable = || not_classifiable(model, &tensor.name, tensor.datatype);
    let element_size = tensor.datatype.element_size().ok_or_else(unavailable)?;
    let (batch, item_shape) = match tensor.shape.split_first() {
        Some((&rows, item)) if batched => (usize::try_from(rows).unwrap_or(0), item),
        _ => (1, tensor.shape.as_slice()),
    };
    let classes = element_count(item_shape).unwrap_or(0);
    if classes > MAX_CLASSIFICATION_ELEMENTS {
        return Err(invalid(format!(
            "{classes} classes per item; classification allows at most {MAX_CLASSIFICATION_ELEMENTS}"
        )));
    }
    let item_bytes = classes * element_size;
    if item_bytes.checked_mul(batch) != Some(tensor.data.len()) {
        return Err(invalid(format!("has {} bytes for shape {}", tensor.data.len(), format_shape(&tensor.shape))));
    }
    let returned = count.min(classes);
    let mut strings = Vec::with_capacity(batch * returned);
    for item in 0..batch {
        let values = ClassValues::decode(tensor.datatype, &tensor.data[item * item_bytes..(item + 1) * item_bytes])
            .ok_or_else(unavailable)?;
        for index in values.highest(returned) {
            let mut text = format!("{}:{index}", values.text(index));
            if let Some(label) = labels.label(&tensor.name, index) {
                text.push(':');
                text.push_str(label);
            }
            strings.push(text);
        }
    }
    let shape = if batched { vec![batch as i64, returned as i64] } else { vec![returned as i64] };
    let data: Bytes = encode_byte_strings(strings.iter().map(String::as_bytes));
    Ok(Tensor { name: tensor.name.clone(), datatype: DataType::Bytes, shape, data })
}

/// The values of one batch item, in a type that holds every value of the
/// output's datatype exactly.
enum ClassValues {
    Integers(Vec<i128>),
    Floats(Vec<f64>),
}

impl ClassValues {
    /// The little-endian elements of `bytes`; `None` for the types Triton
    /// does not classify.
    fn decode(datatype: DataType, bytes: &[u8]) -> Option<Self> {
        fn each<const N: usize, T>(bytes: &[u8], value: impl Fn([u8; N]) -> T) -> Vec<T> {
            le_chunks(bytes).map(value).collect()
        }
        Some(match datatype {
            DataType::Uint8 => Self::Integers(each(bytes, |b: [u8; 1]| u8::from_le_bytes(b).into())),
            DataType::Uint16 => Self::Integers(each(bytes, |b| u16::from_le_bytes(b).into())),
            DataType::Uint32 => Self::Integers(each(bytes, |b| u32::from_le_bytes(b).into())),
            DataType::Uint64 => Self::Integers(each(bytes, |b| u64::from_le_bytes(b).into())),
            DataType::Int8 => Self::Integers(each(bytes, |b: [u8; 1]| i8::from_le_bytes(b).into())),
            DataType::Int16 => Self::Integers(each(bytes, |b| i16::from_le_bytes(b).into())),
            DataType::Int32 => Self::Integers(each(bytes, |b| i32::from_le_bytes(b).into())),
            DataType::Int64 => Self::Integers(each(bytes, |b| i64::from_le_bytes(b).into())),
            DataType::Fp32 => Self::Floats(each(bytes, |b| f32::from_le_bytes(b).into())),
            DataType::Fp64 => Self::Floats(each(bytes, f64::from_le_bytes)),
            DataType::Bool | DataType::Fp16 | DataType::Bf16 | DataType::Bytes => return None,
        })
    }

    /// The indices of the `count` highest values, highest first; equal
    /// values keep the lower index first (a stable sort).
    fn highest(&self, count: usize) -> Vec<usize> {
        let mut order: Vec<usize> = match self {
            Self::Integers(values) => (0..values.len()).collect(),
            Self::Floats(values) => (0..values.len()).collect(),
        };
        match self {
            Self::Integers(values) => order.sort_by(|&a, &b| values[b].cmp(&values[a])),
            Self::Floats(values) => order.sort_by(|&a, &b| values[b].total_cmp(&values[a])),
        }
        order.truncate(count);
        order
    }

    /// The value at `index` as Triton prints it (`std::to_string`: integers
    /// as they are, floating point with six decimals).
    fn text(&self, index: usize) -> String {
        match self {
            Self::Integers(values) => values[index].to_string(),
            Self::Floats(values) => format!("{:.6}", values[index]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::Parameters;
    use crate::model_config::parse_text_format;

    fn tensor(datatype: DataType, shape: &[i64], data: Vec<u8>) -> Tensor {
        Tensor { name: "OUT".into(), datatype, shape: shape.to_vec(), data: Bytes::from(data) }
    }

    fn fp32(shape: &[i64], values: &[f32]) -> Tensor {
        tensor(DataType::Fp32, shape, values.iter().flat_map(|value| value.to_le_bytes()).collect())
    }

    fn strings(tensor: &Tensor) -> Vec<String> {
        crate::tensor::split_byte_strings(&tensor.data)
            .unwrap()
            .into_iter()
            .map(|element| String::from_utf8(element.to_vec()).unwrap())
            .collect()
    }

    fn labels(names: &[&str]) -> Labels {
        let names = names.iter().map(|name| name.to_string()).collect();
        Labels { by_output: HashMap::from([("OUT".to_string(), names)]) }
    }

    #[test]
    fn each_batch_item_gets_its_highest_classes_with_their_labels() {
        // Index 3 has no label: the file has three lines.
        let output = fp32(&[2, 4], &[1.1, 3.3, 0.5, 2.4, 0.0, 0.0, 7.0, 0.0]);
        let classes = classify("m", &output, 2, true, &labels(&["apple", "pear", "plum"])).unwrap();
        assert_eq!(
            (classes.name.as_str(), classes.datatype, classes.shape.as_slice()),
            ("OUT", DataType::Bytes, &[2, 2][..])
        );
        // Equal values keep the lower index first.
        assert_eq!(strings(&classes), ["3.300000:1:pear", "2.400000:3", "7.000000:2:plum", "0.000000:0:apple"]);
    }

    #[test]
    fn a_count_above_the_classes_returns_them_all_and_unbatched_models_get_one_row() {
        let output = fp32(&[3], &[0.25, -1.0, 0.5]);
        let classes = classify("m", &output, 10, false, &Labels::default()).unwrap();
        assert_eq!(classes.shape, [3]);
        assert_eq!(strings(&classes), ["0.500000:2", "0.250000:0", "-1.000000:1"]);
    }

    #[test]
    fn integers_compare_and_print_in_their_own_type() {
        let values: Vec<u8> = [5u64, u64::MAX, 7].iter().flat_map(|value| value.to_le_bytes()).collect();
        let classes = classify("m", &tensor(DataType::Uint64, &[1, 3], values), 2, true, &Labels::default()).unwrap();
        assert_eq!(strings(&classes), ["18446744073709551615:1", "7:2"]);
        let values: Vec<u8> = [-3i8, -1, -2].iter().flat_map(|value| value.to_le_bytes()).collect();
        let classes = classify("m", &tensor(DataType::Int8, &[3], values), 1, false, &Labels::default()).unwrap();
        assert_eq!(strings(&classes), ["-1:1"]);
    }

    #[test]
    fn types_triton_does_not_classify_are_refused() {
        for datatype in [DataType::Fp16, DataType::Bf16, DataType::Bool, DataType::Bytes] {
            let error = check_classifiable("m", "OUT", datatype).unwrap_err();
            assert!(error.message().starts_with("model 'm': output 'OUT': class result not available"), "{error:?}");
        }
        check_classifiable("m", "OUT", DataType::Int16).unwrap();
        let error = classify("m", &tensor(DataType::Fp16, &[1, 2], vec![0; 4]), 1, true, &Labels::default());
        assert!(error.is_err());
    }

    #[test]
    fn the_parameter_must_be_a_non_negative_integer() {
        let output = |value: Option<ParameterValue>| RequestedOutput {
            name: "OUT".into(),
            parameters: value
                .into_iter()
                .map(|value| (CLASSIFICATION_PARAMETER.to_string(), value))
                .collect::<Parameters>(),
        };
        assert_eq!(requested_classes("m", &output(None)).unwrap(), None);
        assert_eq!(requested_classes("m", &output(Some(ParameterValue::Int64(3)))).unwrap(), Some(3));
        assert_eq!(requested_classes("m", &output(Some(ParameterValue::Uint64(2)))).unwrap(), Some(2));
        assert_eq!(requested_classes("m", &output(Some(ParameterValue::Int64(0)))).unwrap(), None);
        for bad in [ParameterValue::Int64(-1), ParameterValue::Double(2.0), ParameterValue::String("2".into())] {
            let error = requested_classes("m", &output(Some(bad))).unwrap_err();
            assert!(
                error.message().starts_with("model 'm': output 'OUT': the 'classification' parameter must be"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn labels_come_from_files_inside_the_model_directory() {
        let model_dir = tempfile::tempdir().unwrap();
        std::fs::write(model_dir.path().join("labels.txt"), "cat\ndog\n\nbird\n").unwrap();
        let config = |file: &str| {
            parse_text_format(&format!(
                r#"name: "m" output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "{file}" }},
                                   {{ name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] }} ]"#
            ))
            .unwrap()
        };
        let labels = Labels::load(&config("labels.txt"), model_dir.path()).unwrap();
        let found: Vec<_> = (0..5).map(|index| labels.label("OUT", index)).collect();
        // An empty line is no label, as in Triton.
        assert_eq!(found, [Some("cat"), Some("dog"), None, Some("bird"), None]);
        assert_eq!(labels.label("RAW", 0), None);

        let error = Labels::load(&config("../labels.txt"), model_dir.path()).unwrap_err();
        assert!(error.message().contains("must name a file inside the model's directory"), "{error:?}");
        let error = Labels::load(&config("missing.txt"), model_dir.path()).unwrap_err();
        assert!(error.message().starts_with("output 'OUT': cannot read its label file '"), "{error:?}");
    }
}
