//! Reading a model configuration written in Triton's JSON form (the
//! protobuf JSON mapping of `ModelConfig`), as a load request's `config`
//! parameter carries it.

use prost_reflect::{DeserializeOptions, DynamicMessage};

use super::{ModelConfig, model_config_descriptor};

/// Parses a configuration in JSON. Field names may be the proto's
/// (`max_batch_size`) or their camel-case JSON names, 64-bit integers
/// numbers or strings, and enums names or numbers, as in protobuf's JSON
/// mapping; an unknown field is an error, so a misspelt setting is not
/// silently dropped.
pub fn parse_json_config(text: &str) -> Result<ModelConfig, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let message = DynamicMessage::deserialize_with_options(
        model_config_descriptor().clone(),
        &mut deserializer,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|error| format!("the configuration is not a valid ModelConfig in JSON: {error}"))?;
    deserializer.end().map_err(|error| format!("the configuration has text after its JSON: {error}"))?;
    message.transcode_to::<ModelConfig>().map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::model_config::SchedulingChoice;

    #[test]
    fn reads_tritons_json_form() {
        let config = parse_json_config(
            r#"{"name": "m", "max_batch_size": 8, "dynamicBatching": {"max_queue_delay_microseconds": "100"},
                "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, "16"]}]}"#,
        )
        .unwrap();
        assert_eq!(config.name, "m");
        assert_eq!(config.max_batch_size, 8);
        let Some(SchedulingChoice::DynamicBatching(batching)) = config.scheduling_choice else {
            panic!("dynamicBatching was not read: {:?}", config.scheduling_choice);
        };
        assert_eq!(batching.max_queue_delay_microseconds, 100);
        assert_eq!(config.input[0].dims, [-1, 16]);
    }

    #[test]
    fn names_what_is_wrong() {
        let error = parse_json_config(r#"{"max_batch_sise": 8}"#).unwrap_err();
        assert!(error.contains("max_batch_sise"), "{error}");
        assert!(parse_json_config("{} {}").unwrap_err().contains("text after its JSON"));
        assert!(parse_json_config("not json").is_err());
    }
}
