//! A model configuration as Triton's HTTP API returns it: the protobuf JSON
//! mapping with the proto field names, every scalar field printed, enums by
//! name, and 64-bit integers as JSON numbers rather than strings.

use prost::Message;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model_config::{ModelConfig, model_config_descriptor};

/// The JSON form of `config`.
pub fn config_to_json(config: &ModelConfig) -> Result<Value> {
    let message = DynamicMessage::decode(model_config_descriptor().clone(), config.encode_to_vec().as_slice())
        .map_err(|error| Error::internal(format!("cannot convert the configuration of '{}': {error}", config.name)))?;
    let options =
        SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|error| Error::internal(format!("cannot convert the configuration of '{}': {error}", config.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    #[test]
    fn looks_like_tritons_config_json() {
        let config = parse_text_format(
            r#"name: "m" max_batch_size: 8
               input { name: "x" data_type: TYPE_FP32 dims: [ -1, 16 ] }
               output { name: "y" data_type: TYPE_STRING dims: [ 1 ] }
               version_policy { latest { num_versions: 1 } }"#,
        )
        .unwrap();
        let json = config_to_json(&config).unwrap();
        assert_eq!(json["name"], "m");
        assert_eq!(json["max_batch_size"], 8);
        assert_eq!(json["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(json["input"][0]["dims"], serde_json::json!([-1, 16]));
        assert_eq!(json["input"][0]["is_shape_tensor"], false);
        assert_eq!(json["output"][0]["data_type"], "TYPE_STRING");
        assert_eq!(json["version_policy"]["latest"]["num_versions"], 1);
        assert_eq!(json["platform"], "");
    }
}
