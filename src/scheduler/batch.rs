//! Turning several requests into one model execution and back: inputs are
//! concatenated along the batch dimension (a lone request passes through
//! untouched) and each output is cut back into per-request slices of the
//! same buffer, without copying. A model with ragged batching gets its
//! ragged inputs flat and its batch inputs added ([`super::ragged`]).

use bytes::BytesMut;

use super::ragged::RaggedBatching;
use crate::error::{Error, Result};
use crate::tensor::{DataType, Tensor, split_byte_strings};
use crate::validation::ValidatedRequest;

/// The inputs of one execution of `requests`, which [`super::batcher`] made
/// sure are compatible.
pub fn merge_inputs(requests: &[&ValidatedRequest], ragged: &RaggedBatching) -> Result<Vec<Tensor>> {
    let mut inputs = match requests {
        [only] => only.inputs.clone(),
        _ => concatenate_inputs(requests),
    };
    if !ragged.is_empty() {
        ragged.complete_inputs(&mut inputs, requests)?;
    }
    Ok(inputs)
}

fn concatenate_inputs(requests: &[&ValidatedRequest]) -> Vec<Tensor> {
    let first = requests[0];
    (0..first.inputs.len())
        .map(|index| {
            let template = &first.inputs[index];
            let total: usize = requests.iter().map(|request| request.inputs[index].data.len()).sum();
            let mut data = BytesMut::with_capacity(total);
            requests.iter().for_each(|request| data.extend_from_slice(&request.inputs[index].data));
            let mut shape = template.shape.clone();
            shape[0] = requests.iter().map(|request| request.inputs[index].shape[0]).sum();
            Tensor { name: template.name.clone(), datatype: template.datatype, shape, data: data.freeze() }
        })
        .collect()
}

/// The outputs to compute for a batch: every output any request asked for,
/// in order of first mention.
pub fn union_of_outputs(requests: &[&ValidatedRequest]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for request in requests {
        for name in &request.outputs {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// Cuts the outputs of one execution into each request's share, keeping
/// only the outputs each request asked for, in its order.
pub fn split_outputs(
    outputs: Vec<Tensor>,
    requests: &[&ValidatedRequest],
    ragged: &RaggedBatching,
) -> Result<Vec<Vec<Tensor>>> {
    if let [only] = requests {
        let mut outputs = outputs;
        let mut own: Vec<Tensor> = only
            .outputs
            .iter()
            .filter_map(|name| {
                outputs.iter().position(|tensor| &tensor.name == name).map(|index| outputs.swap_remove(index))
            })
            .collect();
        if ragged.has_batch_outputs() {
            for tensor in &mut own {
                if let Some(shares) = ragged.scatter(tensor, requests) {
                    let share = shares?.remove(0);
                    tensor.shape = share.shape;
                    tensor.data = tensor.data.slice(share.bytes);
                }
            }
        }
        return Ok(vec![own]);
    }
    let total: usize = requests.iter().map(|request| request.batch_size).sum();
    let mut shares: Vec<Vec<Tensor>> =
        requests.iter().map(|request| Vec::with_capacity(request.outputs.len())).collect();
    for tensor in &outputs {
        let asked: Vec<usize> =
            (0..requests.len()).filter(|&index| requests[index].outputs.contains(&tensor.name)).collect();
        if asked.is_empty() {
            continue;
        }
        if let Some(output_shares) = ragged.scatter(tensor, requests) {
            for (index, share) in output_shares?.into_iter().enumerate() {
                if asked.contains(&index) {
                    let data = tensor.data.slice(share.bytes);
                    let (name, datatype, shape) = (tensor.name.clone(), tensor.datatype, share.shape);
                    shares[index].push(Tensor { name, datatype, shape, data });
                }
            }
            continue;
        }
        if tensor.shape.first().copied() != Some(total as i64) {
            return Err(Error::internal(format!(
                "output '{}' has shape {:?}, whose first dimension is not the batch size {total}",
                tensor.name, tensor.shape
            )));
        }
        let boundaries = row_boundaries(tensor, total)?;
        let mut row = 0;
        for (index, request) in requests.iter().enumerate() {
            let (start, end) = (boundaries[row], boundaries[row + request.batch_size]);
            row += request.batch_size;
            if asked.contains(&index) {
                let mut shape = tensor.shape.clone();
                shape[0] = request.batch_size as i64;
                shares[index].push(Tensor {
                    name: tensor.name.clone(),
                    datatype: tensor.datatype,
                    shape,
                    data: tensor.data.slice(start..end),
                });
            }
        }
    }
    // Put each request's outputs in the order it asked for them.
    for (share, request) in shares.iter_mut().zip(requests) {
        share.sort_by_key(|tensor| request.outputs.iter().position(|name| name == &tensor.name));
    }
    Ok(shares)
}

/// Byte offsets where each of the `rows` rows of `tensor` starts, plus the
/// end.
fn row_boundaries(tensor: &Tensor, rows: usize) -> Result<Vec<usize>> {
    if rows == 0 {
        return Ok(vec![0]);
    }
    if tensor.datatype != DataType::Bytes {
        let row_bytes = tensor.data.len() / rows;
        return Ok((0..=rows).map(|row| row * row_bytes).collect());
    }
    let elements = split_byte_strings(&tensor.data)
        .map_err(|error| Error::internal(format!("output '{}' is malformed: {error}", tensor.name)))?;
    let per_row = elements.len() / rows;
    if per_row == 0 {
        return Ok(vec![0; rows + 1]);
    }
    let mut boundaries = Vec::with_capacity(rows + 1);
    boundaries.push(0);
    let mut offset = 0;
    for (index, element) in elements.iter().enumerate() {
        offset += 4 + element.len();
        if (index + 1) % per_row == 0 {
            boundaries.push(offset);
        }
    }
    Ok(boundaries)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::tensor::encode_byte_strings;

    fn request(batch: usize, values: &[u8], outputs: &[&str]) -> ValidatedRequest {
        let input = Tensor {
            name: "x".into(),
            datatype: DataType::Uint8,
            shape: vec![batch as i64, 2],
            data: Bytes::copy_from_slice(values),
        };
        ValidatedRequest {
            batch_size: batch,
            inputs: vec![input],
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn inputs_concatenate_along_the_batch_dimension() {
        let a = request(1, &[1, 2], &["y"]);
        let b = request(2, &[3, 4, 5, 6], &["y"]);
        let merged = merge_inputs(&[&a, &b], &RaggedBatching::default()).unwrap();
        assert_eq!(merged[0].shape, vec![3, 2]);
        assert_eq!(merged[0].data[..], [1, 2, 3, 4, 5, 6]);
        // A lone request is passed through, sharing its buffer.
        let alone = merge_inputs(&[&b], &RaggedBatching::default()).unwrap();
        assert_eq!(alone[0].data.as_ptr(), b.inputs[0].data.as_ptr());
    }

    #[test]
    fn outputs_split_per_request_without_copies() {
        let a = request(1, &[0, 0], &["y", "z"]);
        let b = request(2, &[0; 4], &["z"]);
        let y = Tensor {
            name: "y".into(),
            datatype: DataType::Uint8,
            shape: vec![3, 1],
            data: Bytes::from_static(&[7, 8, 9]),
        };
        let z = Tensor {
            name: "z".into(),
            datatype: DataType::Bytes,
            shape: vec![3],
            data: encode_byte_strings(["a", "bb", ""]),
        };
        let z_start = z.data.as_ptr();
        assert_eq!(union_of_outputs(&[&a, &b]), vec!["y", "z"]);
        let shares = split_outputs(vec![y, z], &[&a, &b], &RaggedBatching::default()).unwrap();
        assert_eq!(shares[0].iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["y", "z"]);
        assert_eq!(shares[0][0].data[..], [7]);
        assert_eq!(shares[0][1].data, encode_byte_strings(["a"]));
        assert_eq!(shares[0][1].data.as_ptr(), z_start);
        assert_eq!(shares[1].len(), 1);
        assert_eq!(shares[1][0].shape, vec![2]);
        assert_eq!(shares[1][0].data, encode_byte_strings(["bb", ""]));
    }

    #[test]
    fn an_output_without_the_batch_dimension_is_an_error() {
        let a = request(1, &[0, 0], &["y"]);
        let b = request(1, &[0, 0], &["y"]);
        let y = Tensor { name: "y".into(), datatype: DataType::Uint8, shape: vec![1], data: Bytes::from_static(&[1]) };
        assert!(
            split_outputs(vec![y], &[&a, &b], &RaggedBatching::default())
                .unwrap_err()
                .message()
                .contains("batch size 2")
        );
    }
}
