//! Model warmup: the samples a configuration's `model_warmup` describes,
//! which every instance executes before its model version is ready, as in
//! Triton. A session's first runs pay for lazy work (memory arenas, kernel
//! and algorithm selection, CUDA start-up); warming up moves that cost from
//! the first clients to the load.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::ModelInstance;
use crate::error::{Error, Result};
use crate::inference::InferenceRequest;
use crate::model_config::ModelConfig;
use crate::proto::inference::ModelWarmup;
use crate::proto::inference::model_warmup::input::InputDataType;
use crate::scheduler::{RaggedBatching, merge_inputs};
use crate::statistics::{ExecutionTimes, StatisticsRecorder};
use crate::tensor::{DataType, Tensor, element_count, format_shape};
use crate::validation::{ModelIo, ValidatedRequest};

/// Where `input_data_file` names are looked up: `<model>/warmup/<file>`.
pub const WARMUP_DATA_FOLDER: &str = "warmup";

/// One warmup sample, ready to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupSample {
    /// The sample's name from the configuration, for logs and errors.
    pub name: String,
    /// Rows in each execution: `batch_size` requests of one row, merged as
    /// the dynamic batcher would merge them.
    pub batch_size: usize,
    /// The merged inputs, in the order the backend takes them.
    pub inputs: Vec<Tensor>,
    /// Every output of the model.
    pub outputs: Vec<String>,
    /// How many times every instance executes the sample (at least once).
    pub iterations: u32,
}

/// The samples of `config`, their inputs made from zeros, pseudo-random
/// bytes or files under `<model_dir>/warmup/`, and checked against the
/// model's inputs as a request would be. Samples with `batch_size: 0` are
/// skipped, as Triton skips them.
pub fn warmup_samples(config: &ModelConfig, io: &ModelIo, model_dir: &Path) -> Result<Vec<WarmupSample>> {
    let mut random = PseudoRandom::default();
    let (server_inputs, _) = crate::sequence::server_tensors(config);
    let ragged = RaggedBatching::from_config(config);
    config
        .model_warmup
        .iter()
        .filter(|sample| sample.batch_size > 0)
        .map(|sample| {
            build_sample(sample, io, &server_inputs, &ragged, model_dir, &mut random).map_err(|error| {
                Error::invalid_argument(format!("warmup sample '{}': {}", sample.name, error.message()))
            })
        })
        .collect()
}

/// One sample. Inputs named in `server_inputs` (a sequence model's control
/// and state inputs) are not client inputs: as in Triton, a sample gives
/// them like the others, and they join the validated ones.
fn build_sample(
    sample: &ModelWarmup,
    io: &ModelIo,
    server_inputs: &[String],
    ragged: &RaggedBatching,
    model_dir: &Path,
    random: &mut PseudoRandom,
) -> Result<WarmupSample> {
    let batch_size = sample.batch_size as usize;
    let largest = io.max_batch_size.max(1);
    if batch_size > largest {
        return Err(Error::invalid_argument(if io.max_batch_size == 0 {
            format!("batch_size is {batch_size}, but model '{}' does not batch, so it must be 1", io.model_name)
        } else {
            format!("batch_size is {batch_size}, more than the max_batch_size {} of model '{}'", largest, io.model_name)
        }));
    }
    // Inputs in a fixed order, so errors and data do not depend on the
    // map's iteration order.
    let mut names: Vec<&String> = sample.inputs.keys().collect();
    names.sort();
    let (mut inputs, mut given_by_server) = (Vec::with_capacity(names.len()), Vec::new());
    for name in names {
        let input = &sample.inputs[name];
        let datatype = DataType::from_config(input.data_type)
            .ok_or_else(|| Error::invalid_argument(format!("input '{name}' has no valid data_type")))?;
        let count = element_count(&input.dims).ok_or_else(|| {
            Error::invalid_argument(format!(
                "input '{name}' has dims {}; every dimension must be given (no -1)",
                format_shape(&input.dims)
            ))
        })?;
        let data = input_data(name, datatype, count, input.input_data_type.as_ref(), model_dir, random)?;
        let batch = (io.max_batch_size > 0).then_some(1);
        let shape = batch.into_iter().chain(input.dims.iter().copied()).collect();
        let tensor = Tensor { name: name.clone(), datatype, shape, data };
        if server_inputs.contains(name) { given_by_server.push(tensor) } else { inputs.push(tensor) }
    }
    let request = InferenceRequest {
        model_name: io.model_name.clone(),
        model_version: None,
        id: String::new(),
        parameters: Default::default(),
        inputs,
        shared_memory_inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let mut row: ValidatedRequest = io.validate(request)?;
    row.inputs.extend(given_by_server);
    let rows: Vec<&ValidatedRequest> = vec![&row; batch_size];
    Ok(WarmupSample {
        name: sample.name.clone(),
        batch_size,
        inputs: merge_inputs(&rows, ragged)?,
        outputs: row.outputs.clone(),
        iterations: sample.count.max(1),
    })
}

/// The bytes of one row of an input, as Triton makes them: zeros; random
/// bytes (BYTES elements stay empty strings, BOOL elements 0 or 1); or a
/// file's first bytes (for BYTES, the whole file as length-prefixed
/// elements).
fn input_data(
    name: &str,
    datatype: DataType,
    count: usize,
    source: Option<&InputDataType>,
    model_dir: &Path,
    random: &mut PseudoRandom,
) -> Result<Bytes> {
    // A BYTES element of zero length is four zero bytes.
    let size = count.saturating_mul(datatype.element_size().unwrap_or(4));
    match source {
        None => Err(Error::invalid_argument(format!(
            "input '{name}' sets none of zero_data, random_data and input_data_file"
        ))),
        Some(InputDataType::ZeroData(_)) => Ok(Bytes::from(vec![0; size])),
        Some(InputDataType::RandomData(_)) => Ok(match datatype {
            DataType::Bytes => Bytes::from(vec![0; size]),
            DataType::Bool => Bytes::from((0..size).map(|_| random.next_byte() & 1).collect::<Vec<u8>>()),
            _ => Bytes::from((0..size).map(|_| random.next_byte()).collect::<Vec<u8>>()),
        }),
        Some(InputDataType::InputDataFile(file)) => {
            let path = model_dir.join(WARMUP_DATA_FOLDER).join(file);
            let contents = std::fs::read(&path).map_err(|error| {
                Error::invalid_argument(format!("input '{name}': cannot read '{}': {error}", path.display()))
            })?;
            if datatype == DataType::Bytes {
                return Ok(Bytes::from(contents));
            }
            if contents.len() < size {
                return Err(Error::invalid_argument(format!(
                    "input '{name}' needs {size} bytes, but '{}' has only {}",
                    path.display(),
                    contents.len()
                )));
            }
            Ok(Bytes::from(contents).slice(..size))
        }
    }
}

/// Runs every sample on `instance`, each as many times as it asks, and
/// records the executions in `statistics` as Triton does (each row counts
/// as a request that did not queue). The first failure ends the warmup
/// with the sample's name.
pub fn warm_up(
    instance: &mut dyn ModelInstance,
    model_name: &str,
    instance_name: &str,
    samples: &[WarmupSample],
    statistics: &StatisticsRecorder,
) -> Result<()> {
    for sample in samples {
        for iteration in 1..=sample.iterations {
            tracing::debug!(model = model_name, instance = instance_name, sample = %sample.name, iteration, "running warmup sample");
            let started = Instant::now();
            let mut times = ExecutionTimes::default();
            instance.execute(&sample.inputs, &sample.outputs, &mut times).map_err(|error| {
                Error::invalid_argument(format!(
                    "instance '{instance_name}': failed to run warmup sample '{}': {}",
                    sample.name,
                    error.message()
                ))
            })?;
            let elapsed = started.elapsed();
            let rows = sample.batch_size;
            statistics.record_execution(rows as u64, times, &vec![Duration::ZERO; rows], &vec![elapsed; rows]);
        }
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*) for `random_data`: warmup
/// needs arbitrary bytes, not good randomness, and the same bytes on every
/// start make a failing sample reproducible.
struct PseudoRandom(u64);

impl Default for PseudoRandom {
    fn default() -> Self {
        Self(0x9E37_79B9_7F4A_7C15)
    }
}

impl PseudoRandom {
    fn next_byte(&mut self) -> u8 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    const SIMPLE: &str = r#"name: "simple" max_batch_size: 8
        input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
                { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
        output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
                 { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]"#;

    fn sample_input(name: &str, data: &str) -> String {
        format!(r#"inputs {{ key: "{name}" value: {{ data_type: TYPE_INT32 dims: [ 16 ] {data} }} }}"#)
    }

    /// The samples of the simple model with `warmup` appended, its files in
    /// `model_dir`.
    fn samples_of(config: &str, warmup: &str, model_dir: &Path) -> Result<Vec<WarmupSample>> {
        let config = parse_text_format(&format!("{config}\nmodel_warmup [ {warmup} ]")).unwrap();
        warmup_samples(&config, &ModelIo::from_config(&config), model_dir)
    }

    fn two_inputs(first: &str, second: &str) -> String {
        format!("{} {}", sample_input("INPUT0", first), sample_input("INPUT1", second))
    }

    #[test]
    fn a_sample_is_batch_size_rows_of_every_input() {
        let inputs = two_inputs("zero_data: true", "random_data: true");
        let warmup = format!(r#"{{ name: "zeros" batch_size: 3 count: 2 {inputs} }}"#);
        let samples = samples_of(SIMPLE, &warmup, Path::new("/nonexistent")).unwrap();
        let [sample] = samples.as_slice() else { panic!("{samples:?}") };
        assert_eq!((sample.name.as_str(), sample.batch_size, sample.iterations), ("zeros", 3, 2));
        assert_eq!(sample.outputs, ["OUTPUT0", "OUTPUT1"]);
        let [zeros, random] = sample.inputs.as_slice() else { panic!("{:?}", sample.inputs) };
        assert_eq!((zeros.name.as_str(), zeros.shape.as_slice()), ("INPUT0", &[3, 16][..]));
        assert_eq!(zeros.data.len(), 3 * 16 * 4);
        assert!(zeros.data.iter().all(|&byte| byte == 0));
        assert_eq!((random.name.as_str(), random.shape.as_slice()), ("INPUT1", &[3, 16][..]));
        // The rows are copies of one request, as Triton sends batch_size
        // identical requests.
        assert_eq!(random.data.slice(0..64), random.data.slice(64..128));
        assert!(random.data.iter().filter(|&&byte| byte == 0).count() < 16, "random data is mostly zeros");
    }

    #[test]
    fn samples_of_batch_size_zero_are_skipped_and_count_zero_runs_once() {
        let inputs = two_inputs("zero_data: true", "zero_data: true");
        let warmup = format!(r#"{{ name: "none" batch_size: 0 {inputs} }}, {{ name: "once" batch_size: 1 {inputs} }}"#);
        let samples = samples_of(SIMPLE, &warmup, Path::new("/nonexistent")).unwrap();
        let names: Vec<_> = samples.iter().map(|sample| (sample.name.as_str(), sample.iterations)).collect();
        assert_eq!(names, [("once", 1)]);
    }

    #[test]
    fn a_sequence_models_sample_gives_its_control_and_state_inputs_too() {
        let config = r#"name: "acc" max_batch_size: 4
            input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
            output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
            sequence_batching {
              control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]
              state [ { input_name: "IN_STATE" output_name: "OUT_STATE" data_type: TYPE_INT32 dims: [ 1 ] } ]
            }"#;
        let one = |name: &str| {
            format!(r#"inputs {{ key: "{name}" value: {{ data_type: TYPE_INT32 dims: [ 1 ] zero_data: true }} }}"#)
        };
        let warmup = format!(r#"{{ name: "s" batch_size: 2 {} {} {} }}"#, one("INPUT"), one("START"), one("IN_STATE"));
        let samples = samples_of(config, &warmup, Path::new("/nonexistent")).unwrap();
        let inputs: Vec<_> = samples[0].inputs.iter().map(|input| (input.name.as_str(), input.shape.clone())).collect();
        assert_eq!(inputs, [("INPUT", vec![2, 1]), ("IN_STATE", vec![2, 1]), ("START", vec![2, 1])]);
        // Only a sequence model's own control and state inputs get past
        // validation this way.
        let warmup = format!(r#"{{ name: "s" batch_size: 1 {} {} }}"#, one("INPUT"), one("OTHER"));
        assert!(samples_of(config, &warmup, Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn a_model_without_batching_gets_unbatched_inputs() {
        let config = SIMPLE.replace("max_batch_size: 8", "max_batch_size: 0");
        let warmup = format!(r#"{{ name: "one" batch_size: 1 {} }}"#, two_inputs("zero_data: true", "zero_data: true"));
        let samples = samples_of(&config, &warmup, Path::new("/nonexistent")).unwrap();
        assert_eq!(samples[0].inputs[0].shape, [16]);
    }

    #[test]
    fn input_data_files_are_read_from_the_warmup_folder() {
        let model_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(model_dir.path().join(WARMUP_DATA_FOLDER)).unwrap();
        let values: Vec<u8> = (1..=16i32).chain([99]).flat_map(i32::to_le_bytes).collect();
        std::fs::write(model_dir.path().join("warmup/values"), &values).unwrap();
        std::fs::write(model_dir.path().join("warmup/short"), [0u8; 63]).unwrap();
        let inputs = two_inputs(r#"input_data_file: "values""#, "zero_data: true");
        let warmup = format!(r#"{{ name: "file" batch_size: 2 {inputs} }}"#);
        let samples = samples_of(SIMPLE, &warmup, model_dir.path()).unwrap();
        // The file's first 64 bytes, once per row; the rest is ignored.
        let row = &values[..64];
        assert_eq!(samples[0].inputs[0].data, [row, row].concat());

        let inputs = two_inputs(r#"input_data_file: "short""#, "zero_data: true");
        let warmup = format!(r#"{{ name: "short" batch_size: 1 {inputs} }}"#);
        let error = samples_of(SIMPLE, &warmup, model_dir.path()).unwrap_err();
        assert!(error.message().starts_with("warmup sample 'short': input 'INPUT0' needs 64 bytes, but '"));
        assert!(error.message().ends_with("warmup/short' has only 63"), "{}", error.message());

        let inputs = two_inputs(r#"input_data_file: "absent""#, "zero_data: true");
        let warmup = format!(r#"{{ name: "absent" batch_size: 1 {inputs} }}"#);
        let error = samples_of(SIMPLE, &warmup, model_dir.path()).unwrap_err();
        assert!(error.message().contains("input 'INPUT0': cannot read '"), "{}", error.message());
    }

    #[test]
    fn bytes_inputs_get_empty_strings_or_the_file_as_elements() {
        let config = r#"name: "text" max_batch_size: 4
            input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 2 ] },
                    { name: "FLAGS" data_type: TYPE_BOOL dims: [ 64 ] } ]
            output [ { name: "OUT" data_type: TYPE_STRING dims: [ 2 ] } ]"#;
        let model_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(model_dir.path().join(WARMUP_DATA_FOLDER)).unwrap();
        let elements = crate::tensor::encode_byte_strings([&b"hi"[..], &b"there"[..]]);
        std::fs::write(model_dir.path().join("warmup/text"), &elements).unwrap();
        let flags = r#"inputs { key: "FLAGS" value: { data_type: TYPE_BOOL dims: [ 64 ] random_data: true } }"#;
        let text =
            |data: &str| format!(r#"inputs {{ key: "TEXT" value: {{ data_type: TYPE_STRING dims: [ 2 ] {data} }} }}"#);
        let warmup = format!(
            r#"{{ name: "random" batch_size: 1 {} {flags} }}, {{ name: "file" batch_size: 1 {} {flags} }}"#,
            text("random_data: true"),
            text(r#"input_data_file: "text""#)
        );
        let samples = samples_of(config, &warmup, model_dir.path()).unwrap();
        let by_name = |sample: &WarmupSample, name: &str| {
            sample.inputs.iter().find(|tensor| tensor.name == name).unwrap().data.clone()
        };
        assert_eq!(by_name(&samples[0], "TEXT"), Bytes::from(vec![0u8; 8]), "two empty strings");
        assert_eq!(by_name(&samples[1], "TEXT"), elements);
        let flags = by_name(&samples[0], "FLAGS");
        assert!(flags.iter().all(|&flag| flag <= 1), "{flags:?}");
        assert!(flags.contains(&0) && flags.contains(&1), "{flags:?}");
    }

    #[test]
    fn samples_that_cannot_run_fail_the_load_with_the_reason() {
        let both = two_inputs("zero_data: true", "zero_data: true");
        let cases = [
            (
                format!(r#"{{ name: "big" batch_size: 9 {both} }}"#),
                "warmup sample 'big': batch_size is 9, more than the max_batch_size 8 of model 'simple'",
            ),
            (
                format!(r#"{{ name: "unset" batch_size: 1 {} }}"#, two_inputs("", "zero_data: true")),
                "warmup sample 'unset': input 'INPUT0' sets none of zero_data, random_data and input_data_file",
            ),
            (
                format!(r#"{{ name: "missing" batch_size: 1 {} }}"#, sample_input("INPUT0", "zero_data: true")),
                "warmup sample 'missing': model 'simple': missing input 'INPUT1'",
            ),
            (
                format!(r#"{{ name: "extra" batch_size: 1 {both} {} }}"#, sample_input("INPUT9", "zero_data: true")),
                "warmup sample 'extra': model 'simple': unexpected input 'INPUT9'",
            ),
            (
                format!(r#"{{ name: "wide" batch_size: 1 {} }}"#, both.replacen("dims: [ 16 ]", "dims: [ 17 ]", 1)),
                "warmup sample 'wide': model 'simple': input 'INPUT0' has shape [1,17], expected [-1,16]",
            ),
            (
                format!(r#"{{ name: "float" batch_size: 1 {} }}"#, both.replacen("TYPE_INT32", "TYPE_FP32", 1)),
                "warmup sample 'float': model 'simple': input 'INPUT0' has datatype FP32, expected INT32",
            ),
            (
                format!(r#"{{ name: "open" batch_size: 1 {} }}"#, both.replacen("dims: [ 16 ]", "dims: [ -1 ]", 1)),
                "warmup sample 'open': input 'INPUT0' has dims [-1]; every dimension must be given (no -1)",
            ),
        ];
        for (warmup, expected) in cases {
            let error = samples_of(SIMPLE, &warmup, Path::new("/nonexistent")).unwrap_err();
            assert!(error.message().starts_with(expected), "{warmup}: {}", error.message());
        }
        let unbatched = SIMPLE.replace("max_batch_size: 8", "max_batch_size: 0");
        let error =
            samples_of(&unbatched, &format!(r#"{{ name: "two" batch_size: 2 {both} }}"#), Path::new("/x")).unwrap_err();
        assert_eq!(
            error.message(),
            "warmup sample 'two': batch_size is 2, but model 'simple' does not batch, so it must be 1"
        );
    }

    /// An instance that counts its executions and fails the `fail_at`-th.
    struct CountingInstance {
        executions: Vec<usize>,
        fail_at: Option<usize>,
    }

    impl ModelInstance for CountingInstance {
        fn execute(&mut self, inputs: &[Tensor], _: &[String], _: &mut ExecutionTimes) -> Result<Vec<Tensor>> {
            self.executions.push(inputs[0].shape[0] as usize);
            if Some(self.executions.len()) == self.fail_at {
                return Err(Error::internal("out of memory"));
            }
            Ok(Vec::new())
        }
    }

    #[test]
    fn every_sample_runs_count_times_and_counts_in_the_statistics() {
        let inputs = two_inputs("zero_data: true", "zero_data: true");
        let warmup = format!(
            r#"{{ name: "a" batch_size: 4 count: 2 {inputs} }}, {{ name: "b" batch_size: 1 count: 3 {inputs} }}"#
        );
        let samples = samples_of(SIMPLE, &warmup, Path::new("/nonexistent")).unwrap();
        let statistics = StatisticsRecorder::new("simple", 1);
        let mut instance = CountingInstance { executions: Vec::new(), fail_at: None };
        warm_up(&mut instance, "simple", "simple_0", &samples, &statistics).unwrap();
        assert_eq!(instance.executions, [4, 4, 1, 1, 1]);
        let snapshot = statistics.snapshot();
        assert_eq!((snapshot.execution_count, snapshot.inference_count), (5, 11));
        assert_eq!(snapshot.inference_stats.success.count, 11);
        assert_eq!(snapshot.batch_stats.keys().copied().collect::<Vec<_>>(), [1, 4]);

        let mut failing = CountingInstance { executions: Vec::new(), fail_at: Some(4) };
        let error = warm_up(&mut failing, "simple", "simple_1", &samples, &statistics).unwrap_err();
        assert_eq!(error.message(), "instance 'simple_1': failed to run warmup sample 'b': out of memory");
        assert_eq!(failing.executions.len(), 4, "warmup stops at the first failure");
    }
}
