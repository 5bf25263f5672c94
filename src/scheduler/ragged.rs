//! Ragged batching, as Triton documents it and its ONNX Runtime backend
//! runs it. An input with `allow_ragged_batch` may have a different shape
//! in each request of a batch, so requests need no padding to share one:
//! the model takes the input as one flat tensor (shape `[n]`) holding every
//! request's elements one request after the other, and learns where each
//! request's elements lie from the `batch_input` tensors the server
//! computes once the batch is formed. A `batch_output` is cut back into
//! per-request shares after the shape of each request's source input,
//! where other outputs are cut along the batch dimension.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::model_config::ModelConfig;
use crate::proto::inference::batch_input::Kind as BatchInputKind;
use crate::tensor::{DataType, Tensor, element_count, format_shape};
use crate::validation::ValidatedRequest;

/// The ragged inputs, batch inputs and batch outputs of a model version.
/// Most models have none, and batch exactly as before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaggedBatching {
    ragged_inputs: Vec<String>,
    batch_inputs: Vec<BatchInput>,
    batch_outputs: Vec<BatchOutput>,
}

/// One `batch_input`: a tensor the server adds to every execution.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchInput {
    kind: BatchInputKind,
    /// The model inputs that receive it (the same tensor under each name).
    targets: Vec<String>,
    /// INT32 or FP32, as the configuration check requires.
    datatype: DataType,
    /// The request input it describes.
    source: String,
}

/// One target of a `batch_output` (`BATCH_SCATTER_WITH_INPUT_SHAPE`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchOutput {
    target: String,
    source: String,
    /// The shape of one request's share: the batch dimension (when the
    /// model batches) and the configured dims, where each -1 takes the
    /// source input's dimension at the same place.
    shape: Vec<i64>,
}

/// One request's share of a batch output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputShare {
    /// The shape it is reported with.
    pub shape: Vec<i64>,
    /// Where its elements lie in the output's data.
    pub bytes: Range<usize>,
}

impl RaggedBatching {
    /// Reads a configuration that passed the configuration check.
    pub fn from_config(config: &ModelConfig) -> Self {
        let ragged_inputs =
            config.input.iter().filter(|input| input.allow_ragged_batch).map(|input| input.name.clone()).collect();
        let batch_inputs = config
            .batch_input
            .iter()
            .filter_map(|batch_input| {
                Some(BatchInput {
                    kind: batch_input.kind(),
                    targets: batch_input.target_name.clone(),
                    datatype: DataType::from_config(batch_input.data_type)?,
                    source: batch_input.source_input.first()?.clone(),
                })
            })
            .collect();
        let batch_dimension = (config.max_batch_size > 0).then_some(-1);
        let batch_outputs = config
            .batch_output
            .iter()
            .flat_map(|batch_output| {
                let source = batch_output.source_input.first().cloned().unwrap_or_default();
                batch_output.target_name.iter().filter_map(move |target| {
                    let output = config.output.iter().find(|output| &output.name == target)?;
                    let dims = output.reshape.as_ref().map_or(&output.dims, |reshape| &reshape.shape);
                    let shape = batch_dimension.into_iter().chain(dims.iter().copied()).collect();
                    Some(BatchOutput { target: target.clone(), source: source.clone(), shape })
                })
            })
            .collect();
        Self { ragged_inputs, batch_inputs, batch_outputs }
    }

    /// Whether the model uses no ragged batching at all.
    pub fn is_empty(&self) -> bool {
        self.ragged_inputs.is_empty() && self.batch_inputs.is_empty() && self.batch_outputs.is_empty()
    }

    /// Whether requests may differ in the shape of input `name`.
    pub fn is_ragged(&self, name: &str) -> bool {
        self.ragged_inputs.iter().any(|ragged| ragged == name)
    }

    /// Whether some output is cut per request by a `batch_output`.
    pub fn has_batch_outputs(&self) -> bool {
        !self.batch_outputs.is_empty()
    }

    /// Finishes the merged `inputs` of `requests` for the model: each
    /// ragged input becomes one flat tensor of all the batch's elements,
    /// and the batch inputs are appended.
    pub fn complete_inputs(&self, inputs: &mut Vec<Tensor>, requests: &[&ValidatedRequest]) -> Result<()> {
        for input in inputs.iter_mut().filter(|input| self.is_ragged(&input.name)) {
            let elements: usize = requests
                .iter()
                .map(|request| source_shape(request, &input.name).map(|shape| element_count(shape).unwrap_or(0)))
                .sum::<Result<usize>>()?;
            input.shape = vec![elements as i64];
        }
        for batch_input in &self.batch_inputs {
            let (shape, values) = batch_input.values(requests)?;
            let data = encode(batch_input.datatype, &values, &batch_input.targets)?;
            for target in &batch_input.targets {
                inputs.push(Tensor {
                    name: target.clone(),
                    datatype: batch_input.datatype,
                    shape: shape.clone(),
                    data: data.clone(),
                });
            }
        }
        Ok(())
    }

    /// Each request's share of `output` when `output` is a batch output;
    /// `None` otherwise.
    pub fn scatter(&self, output: &Tensor, requests: &[&ValidatedRequest]) -> Option<Result<Vec<OutputShare>>> {
        let batch_output = self.batch_outputs.iter().find(|batch_output| batch_output.target == output.name)?;
        Some(batch_output.scatter(output, requests))
    }
}

impl BatchInput {
    /// The shape and values of this batch input for `requests`.
    fn values(&self, requests: &[&ValidatedRequest]) -> Result<(Vec<i64>, Vec<i64>)> {
        let shapes =
            requests.iter().map(|request| source_shape(request, &self.source)).collect::<Result<Vec<&[i64]>>>()?;
        let counts = shapes.iter().map(|shape| element_count(shape).unwrap_or(0) as i64);
        let running_totals = counts.clone().scan(0, |total, count| {
            *total += count;
            Some(*total)
        });
        Ok(match self.kind {
            BatchInputKind::BatchElementCount => (vec![requests.len() as i64], counts.collect()),
            BatchInputKind::BatchAccumulatedElementCount => (vec![requests.len() as i64], running_totals.collect()),
            BatchInputKind::BatchAccumulatedElementCountWithZero => {
                (vec![requests.len() as i64 + 1], std::iter::once(0).chain(running_totals).collect())
            }
            // The model reads the count from the shape; the values carry
            // nothing (Triton leaves them unset).
            BatchInputKind::BatchMaxElementCountAsShape => {
                let longest = counts.max().unwrap_or(0);
                (vec![longest], vec![0; longest as usize])
            }
            BatchInputKind::BatchItemShape | BatchInputKind::BatchItemShapeFlatten => {
                // One row per batch item: the first dimension of a source
                // input is its request's batch size.
                let mut values = Vec::new();
                let (mut rows, mut rank) = (0, 0);
                for shape in &shapes {
                    let (&items, item_shape) = shape.split_first().unwrap_or((&1, &[]));
                    for _ in 0..items {
                        values.extend_from_slice(item_shape);
                    }
                    rows += items;
                    rank = item_shape.len() as i64;
                }
                let shape =
                    if self.kind == BatchInputKind::BatchItemShape { vec![rows, rank] } else { vec![rows * rank] };
                (shape, values)
            }
        })
    }
}

impl BatchOutput {
    fn scatter(&self, output: &Tensor, requests: &[&ValidatedRequest]) -> Result<Vec<OutputShare>> {
        let element_size = output.datatype.element_size().ok_or_else(|| {
            Error::internal(format!("batch output '{}' is {}, which cannot be scattered", self.target, output.datatype))
        })?;
        let mut offset = 0;
        let mut shares = Vec::with_capacity(requests.len());
        for request in requests {
            let source = source_shape(request, &self.source)?;
            let shape = self
                .shape
                .iter()
                .enumerate()
                .map(|(place, &dim)| if dim == -1 { source.get(place).copied() } else { Some(dim) })
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| {
                    Error::internal(format!(
                        "batch output '{}' has shape {} but its source input '{}' has only {} dimensions",
                        self.target,
                        format_shape(&self.shape),
                        self.source,
                        source.len()
                    ))
                })?;
            let size = element_count(&shape).unwrap_or(0) * element_size;
            shares.push(OutputShare { shape, bytes: offset..offset + size });
            offset += size;
        }
        if offset > output.data.len() {
            return Err(Error::internal(format!(
                "batch output '{}' has {} bytes, fewer than the {offset} that the shapes of input '{}' call for",
                self.target,
                output.data.len(),
                self.source
            )));
        }
        Ok(shares)
    }
}

/// The shape that `request` sent input `name` with.
fn source_shape<'a>(request: &'a ValidatedRequest, name: &str) -> Result<&'a [i64]> {
    request.inputs.iter().find(|input| input.name == name).map(|input| input.shape.as_slice()).ok_or_else(|| {
        Error::invalid_argument(format!("input '{name}' is needed to form the batch for the model, but was not sent"))
    })
}

/// The bytes of a batch input's values as INT32 or FP32.
fn encode(datatype: DataType, values: &[i64], targets: &[String]) -> Result<Bytes> {
    let mut data = BytesMut::with_capacity(values.len() * 4);
    for &value in values {
        if datatype == DataType::Fp32 {
            data.put_f32_le(value as f32);
        } else {
            let value = i32::try_from(value).map_err(|_| {
                Error::invalid_argument(format!(
                    "batch input '{}' would hold {value}, more than INT32 can; give it data_type TYPE_FP32",
                    targets.join("', '")
                ))
            })?;
            data.put_i32_le(value);
        }
    }
    Ok(data.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;
    use crate::tensor::le_chunks;

    const CONFIG: &str = r#"
        name: "m" max_batch_size: 8
        input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true },
                { name: "w" data_type: TYPE_FP32 dims: [ 2 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "s" data_type: TYPE_FP32 dims: [ 1 ] } ]
        batch_input [
          { kind: BATCH_ELEMENT_COUNT target_name: "count" data_type: TYPE_FP32 source_input: "x" },
          { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: [ "ends", "ends_again" ] data_type: TYPE_INT32 source_input: "x" },
          { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "bounds" data_type: TYPE_INT32 source_input: "x" },
          { kind: BATCH_MAX_ELEMENT_COUNT_AS_SHAPE target_name: "longest" data_type: TYPE_INT32 source_input: "x" },
          { kind: BATCH_ITEM_SHAPE target_name: "shapes" data_type: TYPE_INT32 source_input: "x" },
          { kind: BATCH_ITEM_SHAPE_FLATTEN target_name: "flat_shapes" data_type: TYPE_INT32 source_input: "x" } ]
        batch_output [ { target_name: "y" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "x" } ]
    "#;

    fn request(rows: usize, width: usize) -> ValidatedRequest {
        let tensor = |name: &str, shape: Vec<i64>| {
            let count = element_count(&shape).unwrap();
            let values: Vec<u8> = (0..count).flat_map(|value| (value as f32).to_le_bytes()).collect();
            Tensor { name: name.into(), datatype: DataType::Fp32, shape, data: Bytes::from(values) }
        };
        ValidatedRequest {
            batch_size: rows,
            inputs: vec![tensor("x", vec![rows as i64, width as i64]), tensor("w", vec![rows as i64, 2])],
            outputs: vec!["y".into(), "s".into()],
        }
    }

    fn values(tensor: &Tensor) -> Vec<f64> {
        match tensor.datatype {
            DataType::Fp32 => le_chunks::<4>(&tensor.data).map(|bytes| f64::from(f32::from_le_bytes(bytes))).collect(),
            _ => le_chunks::<4>(&tensor.data).map(|bytes| f64::from(i32::from_le_bytes(bytes))).collect(),
        }
    }

    #[test]
    fn ragged_inputs_flatten_and_batch_inputs_describe_the_batch() {
        let ragged = RaggedBatching::from_config(&parse_text_format(CONFIG).unwrap());
        assert!(ragged.is_ragged("x") && !ragged.is_ragged("w"));
        // Three requests: one row of 3, two rows of 1, one row of 4.
        let (a, b, c) = (request(1, 3), request(2, 1), request(1, 4));
        let requests = [&a, &b, &c];
        let mut inputs = vec![
            Tensor { name: "x".into(), datatype: DataType::Fp32, shape: vec![4, 4], data: Bytes::new() },
            Tensor { name: "w".into(), datatype: DataType::Fp32, shape: vec![4, 2], data: Bytes::new() },
        ];
        ragged.complete_inputs(&mut inputs, &requests).unwrap();
        let by_name = |name: &str| inputs.iter().find(|tensor| tensor.name == name).unwrap();
        assert_eq!(by_name("x").shape, vec![9]);
        assert_eq!(by_name("w").shape, vec![4, 2], "other inputs keep their batch shape");
        let expected: [(&str, Vec<i64>, Vec<f64>); 7] = [
            ("count", vec![3], vec![3.0, 2.0, 4.0]),
            ("ends", vec![3], vec![3.0, 5.0, 9.0]),
            ("ends_again", vec![3], vec![3.0, 5.0, 9.0]),
            ("bounds", vec![4], vec![0.0, 3.0, 5.0, 9.0]),
            ("longest", vec![4], vec![0.0; 4]),
            ("shapes", vec![4, 1], vec![3.0, 1.0, 1.0, 4.0]),
            ("flat_shapes", vec![4], vec![3.0, 1.0, 1.0, 4.0]),
        ];
        for (name, shape, data) in expected {
            assert_eq!((by_name(name).shape.clone(), values(by_name(name))), (shape, data), "{name}");
        }
        assert_eq!(by_name("count").datatype, DataType::Fp32);
        assert_eq!(by_name("ends").datatype, DataType::Int32);
    }

    #[test]
    fn batch_outputs_follow_the_shape_of_their_source_input() {
        let ragged = RaggedBatching::from_config(&parse_text_format(CONFIG).unwrap());
        let (a, b) = (request(1, 3), request(2, 1));
        let output =
            Tensor { name: "y".into(), datatype: DataType::Fp32, shape: vec![5], data: Bytes::from(vec![0; 20]) };
        let shares = ragged.scatter(&output, &[&a, &b]).unwrap().unwrap();
        let shares: Vec<_> = shares.into_iter().map(|share| (share.shape, share.bytes)).collect();
        assert_eq!(shares, vec![(vec![1, 3], 0..12), (vec![2, 1], 12..20)]);
        let short = Tensor { data: Bytes::from(vec![0; 16]), ..output.clone() };
        let error = ragged.scatter(&short, &[&a, &b]).unwrap().unwrap_err();
        assert!(error.message().contains("batch output 'y' has 16 bytes, fewer than the 20"), "{}", error.message());
        let other = Tensor { name: "s".into(), ..output };
        assert!(ragged.scatter(&other, &[&a, &b]).is_none());
    }

    #[test]
    fn counts_beyond_int32_ask_for_fp32() {
        let error = encode(DataType::Int32, &[1 << 40], &["n".into()]).unwrap_err();
        assert!(error.message().contains("batch input 'n' would hold 1099511627776"), "{}", error.message());
        assert_eq!(encode(DataType::Fp32, &[3], &[]).unwrap()[..], 3f32.to_le_bytes());
    }

    #[test]
    fn a_model_without_ragged_batching_has_nothing_to_do() {
        let config =
            parse_text_format(r#"name: "m" input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]"#).unwrap();
        assert!(RaggedBatching::from_config(&config).is_empty());
    }
}
