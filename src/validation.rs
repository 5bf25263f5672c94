//! Checking an inference request against its model's configuration before
//! it is queued, so every mistake is reported with the model, the tensor,
//! what was expected and what arrived, and nothing bad reaches a backend.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::inference::InferenceRequest;
use crate::model_config::ModelConfig;
use crate::tensor::{DataType, Tensor, element_count, format_shape, split_byte_strings};

/// What the configuration promises about one input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorContract {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions without the batch dimension; -1 is variable.
    pub dims: Vec<i64>,
    /// The shape the model itself uses, when the configuration reshapes.
    pub reshape: Option<Vec<i64>>,
    /// Whether a request may leave the input out.
    pub optional: bool,
}

/// The input and output contract of a model, derived once from its
/// configuration when it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIo {
    /// Model name, for messages.
    pub model_name: String,
    /// Largest batch; 0 when the model has no batch dimension.
    pub max_batch_size: usize,
    /// Inputs in configuration order.
    pub inputs: Vec<TensorContract>,
    /// Outputs in configuration order.
    pub outputs: Vec<TensorContract>,
}

/// A request that passed validation, ready for a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRequest {
    /// Rows in the request's batch; 1 for a model that does not batch.
    pub batch_size: usize,
    /// Inputs with the shapes the model expects (after any reshape), in
    /// configuration order.
    pub inputs: Vec<Tensor>,
    /// Outputs to produce, in response order.
    pub outputs: Vec<String>,
}

impl ModelIo {
    /// Derives the contract from a checked configuration. Tensors whose
    /// data_type is invalid were rejected by the configuration check, so
    /// they cannot occur here; should one slip through it is left out.
    pub fn from_config(config: &ModelConfig) -> Self {
        let inputs = config
            .input
            .iter()
            .filter_map(|input| {
                Some(TensorContract {
                    name: input.name.clone(),
                    datatype: DataType::from_config(input.data_type)?,
                    dims: input.dims.clone(),
                    reshape: input.reshape.as_ref().map(|reshape| reshape.shape.clone()),
                    optional: input.optional,
                })
            })
            .collect();
        let outputs = config
            .output
            .iter()
            .filter_map(|output| {
                Some(TensorContract {
                    name: output.name.clone(),
                    datatype: DataType::from_config(output.data_type)?,
                    dims: output.dims.clone(),
                    reshape: output.reshape.as_ref().map(|reshape| reshape.shape.clone()),
                    optional: false,
                })
            })
            .collect();
        Self {
            model_name: config.name.clone(),
            max_batch_size: usize::try_from(config.max_batch_size).unwrap_or(0),
            inputs,
            outputs,
        }
    }

    fn invalid(&self, message: impl std::fmt::Display) -> Error {
        Error::invalid_argument(format!("model '{}': {message}", self.model_name))
    }

    /// The names of `contracts`, for messages: `a, b, c`.
    pub fn names(contracts: &[TensorContract]) -> String {
        contracts.iter().map(|contract| contract.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The shape a configuration allows, with the batch dimension as -1.
    fn expected_shape(&self, contract: &TensorContract) -> Vec<i64> {
        let batch = (self.max_batch_size > 0).then_some(-1);
        batch.into_iter().chain(contract.dims.iter().copied()).collect()
    }

    /// Validates `request` and prepares its inputs for the backend.
    pub fn validate(&self, request: InferenceRequest) -> Result<ValidatedRequest> {
        // The request's inputs by their position in the configuration:
        // which ones it sent, and the order the backend takes them in.
        let mut sent: Vec<Option<Tensor>> = self.inputs.iter().map(|_| None).collect();
        let mut batch_size: Option<(usize, String)> = None;
        for mut tensor in request.inputs {
            let Some(position) = self.inputs.iter().position(|contract| contract.name == tensor.name) else {
                return Err(self.invalid(format_args!(
                    "unexpected input '{}'; the model's inputs are: {}",
                    tensor.name,
                    Self::names(&self.inputs)
                )));
            };
            if sent[position].is_some() {
                return Err(self.invalid(format_args!("input '{}' appears more than once", tensor.name)));
            }
            let contract = &self.inputs[position];
            let rows = self.check_input(contract, &tensor)?;
            if let Some(rows) = rows {
                match &batch_size {
                    Some((batch, first)) if *batch != rows => {
                        return Err(self.invalid(format_args!(
                            "input '{}' has batch size {rows} but input '{first}' has batch size {batch}; every input must have the same batch size",
                            tensor.name
                        )));
                    }
                    Some(_) => {}
                    None => batch_size = Some((rows, tensor.name.clone())),
                }
            }
            if let Some(reshape) = &contract.reshape {
                tensor.shape = self.reshaped(&tensor, reshape);
            }
            sent[position] = Some(tensor);
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .zip(&sent)
            .find(|&(contract, tensor)| !contract.optional && tensor.is_none())
            .map(|(contract, _)| contract)
        {
            return Err(self.invalid(format_args!(
                "missing input '{}'; expected {} {} of shape {}",
                missing.name,
                missing.datatype,
                if self.inputs.iter().filter(|contract| !contract.optional).count() > 1 {
                    "among its inputs"
                } else {
                    "input"
                },
                format_shape(&self.expected_shape(missing))
            )));
        }
        let outputs = self.requested_outputs(&request.outputs)?;
        // Inputs in configuration order, so requests that can share a batch
        // line up input by input.
        let inputs = sent.into_iter().flatten().collect();
        Ok(ValidatedRequest { batch_size: batch_size.map_or(1, |(rows, _)| rows), inputs, outputs })
    }

    /// Checks one input's datatype, shape and data size; returns its batch
    /// size when the model batches.
    fn check_input(&self, contract: &TensorContract, tensor: &Tensor) -> Result<Option<usize>> {
        let name = &tensor.name;
        if tensor.datatype != contract.datatype {
            return Err(self.invalid(format_args!(
                "input '{name}' has datatype {}, expected {}",
                tensor.datatype, contract.datatype
            )));
        }
        let expected = self.expected_shape(contract);
        let shape_fits = tensor.shape.len() == expected.len()
            && tensor.shape.iter().zip(&expected).all(|(&got, &want)| got >= 0 && (want == -1 || got == want));
        if !shape_fits {
            return Err(self.invalid(format_args!(
                "input '{name}' has shape {}, expected {}{}",
                format_shape(&tensor.shape),
                format_shape(&expected),
                if self.max_batch_size > 0 { " (the first dimension is the batch size)" } else { "" }
            )));
        }
        let rows = if self.max_batch_size > 0 {
            // The shape fit, so the first dimension exists and is not negative.
            let rows = tensor.shape[0] as usize;
            if rows == 0 || rows > self.max_batch_size {
                return Err(self.invalid(format_args!(
                    "input '{name}' has batch size {rows}, expected 1 to max_batch_size {}",
                    self.max_batch_size
                )));
            }
            Some(rows)
        } else {
            None
        };
        let count = element_count(&tensor.shape).ok_or_else(|| {
            self.invalid(format_args!("input '{name}' has shape {} whose size overflows", format_shape(&tensor.shape)))
        })?;
        match contract.datatype.element_size() {
            Some(size) => {
                let want = count.checked_mul(size);
                if want != Some(tensor.data.len()) {
                    return Err(self.invalid(format_args!(
                        "input '{name}' has {} bytes of data, expected {} ({count} {} elements of shape {})",
                        tensor.data.len(),
                        want.map_or_else(|| "more than addressable".to_string(), |want| want.to_string()),
                        contract.datatype,
                        format_shape(&tensor.shape)
                    )));
                }
            }
            None => {
                let elements = split_byte_strings(&tensor.data)
                    .map_err(|error| self.invalid(format_args!("input '{name}' has malformed BYTES data: {error}")))?;
                if elements.len() != count {
                    return Err(self.invalid(format_args!(
                        "input '{name}' has {} BYTES elements, expected {count} for shape {}",
                        elements.len(),
                        format_shape(&tensor.shape)
                    )));
                }
            }
        }
        Ok(rows)
    }

    /// The model-side shape of a reshaped input: the batch dimension, then
    /// the reshape with any -1 resolved from the element count.
    fn reshaped(&self, tensor: &Tensor, reshape: &[i64]) -> Vec<i64> {
        let batching = self.max_batch_size > 0;
        let item = if batching { &tensor.shape[1..] } else { &tensor.shape[..] };
        let mut shape: Vec<i64> = if batching { vec![tensor.shape[0]] } else { Vec::new() };
        // The shape passed validation, so its element count fits in memory:
        // the product can only overflow on the way to a zero dimension, and
        // then the count is 0.
        let elements = item.iter().try_fold(1i64, |count, &dim| count.checked_mul(dim)).unwrap_or(0);
        shape.extend(resolve_variable_dim(reshape, elements));
        shape
    }

    fn requested_outputs(&self, requested: &[crate::inference::RequestedOutput]) -> Result<Vec<String>> {
        if requested.is_empty() {
            return Ok(self.outputs.iter().map(|contract| contract.name.clone()).collect());
        }
        let mut seen = HashSet::new();
        requested
            .iter()
            .map(|output| {
                if !self.outputs.iter().any(|contract| contract.name == output.name) {
                    return Err(self.invalid(format_args!(
                        "unexpected requested output '{}'; the model's outputs are: {}",
                        output.name,
                        Self::names(&self.outputs)
                    )));
                }
                if !seen.insert(&output.name) {
                    return Err(self.invalid(format_args!("output '{}' is requested more than once", output.name)));
                }
                Ok(output.name.clone())
            })
            .collect()
    }

    /// The shape to report for an output the backend produced: reshaped
    /// outputs are reported with their configured dims.
    pub fn response_shape(&self, output: &str, backend_shape: Vec<i64>) -> Vec<i64> {
        let Some(contract) = self.outputs.iter().find(|contract| contract.name == output) else {
            return backend_shape;
        };
        if contract.reshape.is_none() {
            return backend_shape;
        }
        let batching = self.max_batch_size > 0 && !backend_shape.is_empty();
        let item: i64 = backend_shape.iter().skip(usize::from(batching)).product();
        let mut shape: Vec<i64> = if batching { vec![backend_shape[0]] } else { Vec::new() };
        shape.extend(resolve_variable_dim(&contract.dims, item));
        shape
    }
}

/// Replaces a -1 in `shape` with whatever makes it hold `elements`.
fn resolve_variable_dim(shape: &[i64], elements: i64) -> Vec<i64> {
    let known: i64 = shape.iter().filter(|&&dim| dim != -1).product();
    shape.iter().map(|&dim| if dim == -1 && known > 0 { elements / known } else { dim }).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::error::ErrorKind;
    use crate::inference::RequestedOutput;
    use crate::model_config::parse_text_format;
    use crate::tensor::encode_byte_strings;

    fn simple_io() -> ModelIo {
        ModelIo::from_config(
            &parse_text_format(
                r#"name: "simple" max_batch_size: 8
                input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
                        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
                output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
                         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]"#,
            )
            .unwrap(),
        )
    }

    fn int32_input(name: &str, shape: &[i64]) -> Tensor {
        let count = element_count(shape).unwrap();
        Tensor {
            name: name.into(),
            datatype: DataType::Int32,
            shape: shape.to_vec(),
            data: Bytes::from(vec![0u8; count * 4]),
        }
    }

    fn request(inputs: Vec<Tensor>) -> InferenceRequest {
        InferenceRequest {
            model_name: "simple".into(),
            model_version: None,
            id: String::new(),
            parameters: Default::default(),
            inputs,
            shared_memory_inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn error_of(request: InferenceRequest) -> String {
        let error = simple_io().validate(request).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.message().starts_with("model 'simple': "), "{}", error.message());
        error.message().to_string()
    }

    #[test]
    fn accepts_a_good_request_and_selects_all_outputs() {
        let validated = simple_io()
            .validate(request(vec![int32_input("INPUT0", &[3, 16]), int32_input("INPUT1", &[3, 16])]))
            .unwrap();
        assert_eq!(validated.batch_size, 3);
        assert_eq!(validated.outputs, ["OUTPUT0", "OUTPUT1"]);
    }

    #[test]
    fn every_invalid_request_class_names_the_input() {
        let good = || int32_input("INPUT1", &[1, 16]);
        let cases: Vec<(InferenceRequest, &str)> = vec![
            (
                request(vec![int32_input("INPUT0", &[1, 16]), good(), int32_input("EXTRA", &[1, 16])]),
                "unexpected input 'EXTRA'; the model's inputs are: INPUT0, INPUT1",
            ),
            (request(vec![good()]), "missing input 'INPUT0'"),
            (
                request(vec![Tensor { datatype: DataType::Fp32, ..int32_input("INPUT0", &[1, 16]) }, good()]),
                "input 'INPUT0' has datatype FP32, expected INT32",
            ),
            (
                request(vec![int32_input("INPUT0", &[1, 15]), good()]),
                "input 'INPUT0' has shape [1,15], expected [-1,16]",
            ),
            (request(vec![int32_input("INPUT0", &[16]), good()]), "input 'INPUT0' has shape [16], expected [-1,16]"),
            (
                request(vec![int32_input("INPUT0", &[9, 16]), int32_input("INPUT1", &[9, 16])]),
                "input 'INPUT0' has batch size 9, expected 1 to max_batch_size 8",
            ),
            (
                request(vec![int32_input("INPUT0", &[2, 16]), good()]),
                "input 'INPUT1' has batch size 1 but input 'INPUT0' has batch size 2",
            ),
            (
                request(vec![Tensor { data: Bytes::from(vec![0u8; 60]), ..int32_input("INPUT0", &[1, 16]) }, good()]),
                "input 'INPUT0' has 60 bytes of data, expected 64 (16 INT32 elements of shape [1,16])",
            ),
            (
                request(vec![int32_input("INPUT0", &[1, 16]), int32_input("INPUT0", &[1, 16])]),
                "input 'INPUT0' appears more than once",
            ),
        ];
        for (request, expected) in cases {
            let message = error_of(request);
            assert!(message.contains(expected), "expected '{expected}' in '{message}'");
        }
    }

    #[test]
    fn unknown_requested_output_is_rejected() {
        let mut bad = request(vec![int32_input("INPUT0", &[1, 16]), int32_input("INPUT1", &[1, 16])]);
        bad.outputs = vec![RequestedOutput { name: "OUTPUT9".into(), parameters: Default::default() }];
        assert!(error_of(bad).contains("unexpected requested output 'OUTPUT9'"));
    }

    #[test]
    fn bytes_inputs_are_counted_by_element() {
        let io = ModelIo::from_config(
            &parse_text_format(
                r#"name: "s" input { name: "T" data_type: TYPE_STRING dims: [ 2 ] }
                   output { name: "O" data_type: TYPE_STRING dims: [ 2 ] }"#,
            )
            .unwrap(),
        );
        let tensor = |data: Bytes| Tensor { name: "T".into(), datatype: DataType::Bytes, shape: vec![2], data };
        let good =
            InferenceRequest { model_name: "s".into(), ..request(vec![tensor(encode_byte_strings(["a", "bc"]))]) };
        assert_eq!(io.validate(good).unwrap().batch_size, 1);

        let short = InferenceRequest { model_name: "s".into(), ..request(vec![tensor(encode_byte_strings(["a"]))]) };
        let message = io.validate(short).unwrap_err().message().to_string();
        assert!(message.contains("input 'T' has 1 BYTES elements, expected 2"), "{message}");

        let cut = InferenceRequest {
            model_name: "s".into(),
            ..request(vec![tensor(Bytes::from_static(b"\x09\x00\x00\x00ab"))])
        };
        let message = io.validate(cut).unwrap_err().message().to_string();
        assert!(message.contains("input 'T' has malformed BYTES data: element 0 declares 9 bytes"), "{message}");
    }

    #[test]
    fn reshape_is_applied_both_ways() {
        let io = ModelIo::from_config(
            &parse_text_format(
                r#"name: "r" max_batch_size: 4
                   input { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 6 ] } }
                   output { name: "y" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } }"#,
            )
            .unwrap(),
        );
        let x = Tensor {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![2, 2, 3],
            data: Bytes::from(vec![0u8; 48]),
        };
        let validated = io.validate(InferenceRequest { model_name: "r".into(), ..request(vec![x]) }).unwrap();
        assert_eq!(validated.inputs[0].shape, vec![2, 6]);
        assert_eq!(io.response_shape("y", vec![2]), vec![2, 1]);
    }
}
