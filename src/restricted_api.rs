//! Triton's restricted API groups (`--http-restricted-api`,
//! `--grpc-restricted-protocol`): the endpoints of a category (model
//! control, shared memory, ...) answer only requests that carry a header
//! with a configured value, a shared secret, so that inference can be open
//! while loading models is not. The frontends map their routes and methods
//! to categories; the rules live here.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

/// What a gRPC restriction's header name starts with, before the key the
/// flag gives, as in Triton.
pub const GRPC_HEADER_PREFIX: &str = "triton-grpc-protocol-";

/// The categories of endpoints a restriction applies to, by Triton's
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiCategory {
    /// Liveness and readiness of the server and of models.
    Health,
    /// Server and model metadata.
    Metadata,
    /// Inference (infer, generate, streams, the cloud predict route).
    Inference,
    /// The system (and CUDA) shared-memory extension.
    SharedMemory,
    /// Model configurations.
    ModelConfig,
    /// The model repository extension: index, load, unload.
    ModelRepository,
    /// Inference statistics.
    Statistics,
    /// Trace settings.
    Trace,
    /// Log settings.
    Logging,
}

impl ApiCategory {
    /// Every category.
    pub const ALL: [Self; 9] = [
        Self::Health,
        Self::Metadata,
        Self::Inference,
        Self::SharedMemory,
        Self::ModelConfig,
        Self::ModelRepository,
        Self::Statistics,
        Self::Trace,
        Self::Logging,
    ];

    /// Triton's name for it on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Metadata => "metadata",
            Self::Inference => "inference",
            Self::SharedMemory => "shared-memory",
            Self::ModelConfig => "model-config",
            Self::ModelRepository => "model-repository",
            Self::Statistics => "statistics",
            Self::Trace => "trace",
            Self::Logging => "logging",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|category| category.name() == name)
    }
}

impl fmt::Display for ApiCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `<categories>:<key>=<value>` flag value: the categories, and the
/// header key and value that open them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictedGroup {
    /// The categories, in the order given.
    pub categories: Vec<ApiCategory>,
    /// The header key (for gRPC, after `triton-grpc-protocol-`).
    pub key: String,
    /// The value the header must have.
    pub value: String,
}

impl RestrictedGroup {
    /// Parses `health,model-repository:admin-key=secret`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let format = "expected <category>,...:<key>=<value>";
        let (categories, assignment) = text.split_once(':').ok_or_else(|| format!("'{text}': {format}"))?;
        let (key, value) = assignment.split_once('=').ok_or_else(|| format!("'{text}': {format}"))?;
        if key.is_empty() {
            return Err(format!("'{text}': the header key is empty; {format}"));
        }
        let categories = categories
            .split(',')
            .map(|name| {
                ApiCategory::from_name(name.trim()).ok_or_else(|| {
                    let known: Vec<&str> = ApiCategory::ALL.iter().map(|category| category.name()).collect();
                    format!("'{text}': unknown category '{name}'; the categories are {}", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { categories, key: key.to_string(), value: value.to_string() })
    }
}

/// What opens a restricted category: a header and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    header: HeaderName,
    value: HeaderValue,
}

impl Restriction {
    /// The header a request must carry.
    pub fn header(&self) -> &str {
        self.header.as_str()
    }

    /// Whether `headers` carry the header with the expected value. The
    /// value is compared in time independent of where it differs, since it
    /// is a secret.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(&self.header) else { return false };
        let (given, expected) = (given.as_bytes(), self.value.as_bytes());
        given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
    }
}

/// The restrictions of one endpoint, by category; categories without one
/// are open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRestrictions {
    by_category: BTreeMap<ApiCategory, Restriction>,
}

impl ApiRestrictions {
    /// The restrictions the `groups` of `flag` declare, each group's header
    /// being `header_prefix` and its key. As in Triton, a category may be
    /// in one group only.
    pub fn new(groups: &[RestrictedGroup], header_prefix: &str, flag: &str) -> Result<Self, String> {
        let mut by_category = BTreeMap::new();
        for group in groups {
            let name = format!("{header_prefix}{}", group.key);
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{flag}: '{name}' cannot be a header name"))?;
            let value = HeaderValue::from_str(&group.value)
                .map_err(|_| format!("{flag}: the value for '{name}' cannot be a header value"))?;
            for &category in &group.categories {
                let restriction = Restriction { header: header.clone(), value: value.clone() };
                if by_category.insert(category, restriction).is_some() {
                    return Err(format!("{flag}: the category '{category}' is in more than one group"));
                }
            }
        }
        Ok(Self { by_category })
    }

    /// Whether nothing is restricted.
    pub fn is_empty(&self) -> bool {
        self.by_category.is_empty()
    }

    /// The restriction of `category`, if it has one.
    pub fn of(&self, category: ApiCategory) -> Option<&Restriction> {
        self.by_category.get(&category)
    }

    /// The restricted categories with their headers, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        self.by_category
            .iter()
            .map(|(category, restriction)| format!("{category} ({})", restriction.header()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(entries: &[(&'static str, &'static str)]) -> HeaderMap {
        entries.iter().map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value))).collect()
    }

    #[test]
    fn groups_parse_like_tritons_flags() {
        let group = RestrictedGroup::parse("model-repository,shared-memory:admin-key=s3cret=x").unwrap();
        assert_eq!(group.categories, [ApiCategory::ModelRepository, ApiCategory::SharedMemory]);
        assert_eq!((group.key.as_str(), group.value.as_str()), ("admin-key", "s3cret=x"));
        for (text, expected) in [
            ("inference", "expected <category>"),
            ("inference:key", "expected <category>"),
            ("inference:=v", "header key is empty"),
            ("inference,models:k=v", "unknown category 'models'; the categories are health, metadata"),
        ] {
            let error = RestrictedGroup::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn a_restricted_category_needs_its_header_and_value() {
        let groups = [
            RestrictedGroup::parse("model-repository,trace:Admin-Key=secret").unwrap(),
            RestrictedGroup::parse("inference:user=open").unwrap(),
        ];
        let restrictions =
            ApiRestrictions::new(&groups, "triton-grpc-protocol-", "--grpc-restricted-protocol").unwrap();
        let repository = restrictions.of(ApiCategory::ModelRepository).unwrap();
        assert_eq!(repository.header(), "triton-grpc-protocol-admin-key");
        assert!(repository.allows(&headers(&[("triton-grpc-protocol-admin-key", "secret")])));
        assert!(!repository.allows(&headers(&[("triton-grpc-protocol-admin-key", "secreT")])));
        assert!(!repository.allows(&headers(&[("triton-grpc-protocol-admin-key", "secret2")])));
        assert!(!repository.allows(&headers(&[("admin-key", "secret")])));
        assert!(restrictions.of(ApiCategory::Health).is_none());
        assert_eq!(restrictions.describe().len(), 3);
        assert!(!restrictions.is_empty() && ApiRestrictions::default().is_empty());

        let twice = [groups[0].clone(), RestrictedGroup::parse("trace:other=x").unwrap()];
        let error = ApiRestrictions::new(&twice, "", "--http-restricted-api").unwrap_err();
        assert_eq!(error, "--http-restricted-api: the category 'trace' is in more than one group");
        let bad = [RestrictedGroup::parse("trace:bad key=x").unwrap()];
        let error = ApiRestrictions::new(&bad, "", "--http-restricted-api").unwrap_err();
        assert!(error.contains("'bad key' cannot be a header name"), "{error}");
    }
}
