//! Values of a model configuration's `parameters` map, read as Triton's
//! ONNX Runtime backend reads them: every value is a string, trimmed, and
//! a malformed one is an error that names its key.

use crate::model_config::ModelConfig;

/// The trimmed text of parameter `key`, if the configuration sets it.
pub fn text<'a>(config: &'a ModelConfig, key: &str) -> Option<&'a str> {
    config.parameters.get(key).map(|value| value.string_value.trim())
}

/// Parameter `key` as an integer of type `T`.
pub fn integer<T: std::str::FromStr>(config: &ModelConfig, key: &str) -> Result<Option<T>, String> {
    text(config, key)
        .map(|text| text.parse::<T>().map_err(|_| format!("parameter {key} must be an integer, not '{text}'")))
        .transpose()
}

/// Parameter `key` as a boolean (see [`parse_bool`]).
pub fn boolean(config: &ModelConfig, key: &str) -> Result<Option<bool>, String> {
    text(config, key)
        .map(|text| parse_bool(text).ok_or_else(|| format!("parameter {key} must be true or false, not '{text}'")))
        .transpose()
}

/// A boolean as Triton's backends spell it: true/false, on/off or 1/0, in
/// any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Some(true),
        "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    #[test]
    fn values_are_trimmed_and_typed() {
        let config = parse_text_format(
            r#"parameters { key: "count" value { string_value: " 3 " } }
               parameters { key: "flag" value { string_value: "Off" } }"#,
        )
        .unwrap();
        assert_eq!(text(&config, "count"), Some("3"));
        assert_eq!(integer::<u32>(&config, "count"), Ok(Some(3)));
        assert_eq!(boolean(&config, "flag"), Ok(Some(false)));
        assert_eq!(integer::<u32>(&config, "absent"), Ok(None));
        assert_eq!(boolean(&config, "absent"), Ok(None));
        assert_eq!(integer::<u32>(&config, "flag"), Err("parameter flag must be an integer, not 'Off'".to_string()));
        assert_eq!(boolean(&config, "count"), Err("parameter count must be true or false, not '3'".to_string()));
    }

    #[test]
    fn booleans_are_spelled_as_in_triton() {
        for (text, value) in [("TRUE", true), ("on", true), ("1", true), ("false", false), ("Off", false), ("0", false)]
        {
            assert_eq!(parse_bool(text), Some(value), "{text}");
        }
        assert_eq!(parse_bool("2"), None);
    }
}
