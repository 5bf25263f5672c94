//! How requests to an Azure Storage repository are authorized, as Triton
//! reads it: a shared key (`AZURE_STORAGE_KEY`, the default), a managed
//! identity's token (`AZURE_STORAGE_AUTH_TYPE=managed_identity`, with
//! `AZURE_STORAGE_CLIENT_ID` for a user-assigned one), Azure's default
//! credential chain (`default`: a service principal's client secret from
//! `AZURE_CLIENT_SECRET`, then AKS Workload Identity's federated token,
//! then the managed identity), else nothing (public containers).
//! `AZURE_STORAGE_CONNECTION_STRING` may give the key and the blob
//! endpoint instead (as the Azure CLI and the Azurite emulator write them).

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blocking_reqwest::blocking::Client;

use super::expiring::Expiring;
use super::oauth_token::token_answer;
use super::sigv4::canonical_query;
use crate::utc_time::unix_seconds;

/// The resource a storage token is for.
const STORAGE_RESOURCE: &str = "https://storage.azure.com/";

/// Microsoft Entra ID, where federated tokens are exchanged.
const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Azure's instance metadata service (VMs, AKS nodes).
const INSTANCE_METADATA_ORIGIN: &str = "http://169.254.169.254";

/// How long the instance metadata service may take to answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// A secret that never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str("Secret(..)")
    }
}

/// How an application proves itself to Microsoft Entra ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientProof {
    /// A service principal's client secret (`AZURE_CLIENT_SECRET`).
    Secret(Secret),
    /// AKS Workload Identity's federated token, read from this file
    /// (`AZURE_FEDERATED_TOKEN_FILE`) at each exchange, since it rotates.
    FederatedTokenFile(std::path::PathBuf),
}

/// Where a token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityEndpoint {
    /// Microsoft Entra ID, for the application `AZURE_CLIENT_ID` of
    /// `AZURE_TENANT_ID` (the client credentials grant).
    Entra {
        /// `AZURE_AUTHORITY_HOST`, else Microsoft Entra ID's.
        authority: String,
        /// `AZURE_TENANT_ID`.
        tenant: String,
        /// `AZURE_CLIENT_ID`.
        client_id: String,
        /// Its secret or federated token.
        proof: ClientProof,
    },
    /// The instance metadata service.
    InstanceMetadata,
    /// App Service's and Container Apps' (`IDENTITY_ENDPOINT`, with
    /// `IDENTITY_HEADER` as its secret).
    Hosted {
        /// `IDENTITY_ENDPOINT`.
        url: String,
        /// `IDENTITY_HEADER`.
        secret: Secret,
    },
}

/// How requests are authorized.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureAuthorization {
    /// Signed with the account's key (decoded from base64).
    SharedKey(Vec<u8>),
    /// A managed identity's bearer token.
    ManagedIdentity {
        /// A user-assigned identity's client id; None for the system one.
        client_id: Option<String>,
        /// Where its tokens come from.
        endpoint: IdentityEndpoint,
    },
    /// Nothing: public containers only.
    Anonymous,
}

// The key never reaches a log.
impl std::fmt::Debug for AzureAuthorization {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SharedKey(_) => out.write_str("SharedKey(..)"),
            Self::ManagedIdentity { client_id, endpoint } => {
                out.debug_struct("ManagedIdentity").field("client_id", client_id).field("endpoint", endpoint).finish()
            }
            Self::Anonymous => out.write_str("Anonymous"),
        }
    }
}

/// The blob endpoint of an account and how requests to it are authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureAccess {
    /// `https://<account>.blob.core.windows.net`, or the connection
    /// string's `BlobEndpoint`.
    pub blob_endpoint: String,
    /// How requests are authorized.
    pub authorization: AzureAuthorization,
}

impl AzureAccess {
    /// The access to `account` with `var` reading the environment.
    pub fn from_environment(account: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| var(name).map(|value| value.trim().to_string()).filter(|value| !value.is_empty());
        let connection: Vec<(String, String)> = var("AZURE_STORAGE_CONNECTION_STRING")
            .map(|text| {
                text.split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let in_connection = |key: &str| connection.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
        // A connection string for another account says nothing of this one.
        let connection_applies = in_connection("AccountName").is_none_or(|name| name == account);
        let from_connection = |key: &str| in_connection(key).filter(|_| connection_applies);
        let blob_endpoint = from_connection("BlobEndpoint")
            .map(|endpoint| endpoint.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
        let auth_type = var("AZURE_STORAGE_AUTH_TYPE").map(|kind| kind.to_ascii_lowercase());
        let authorization = match auth_type.as_deref() {
            Some(kind @ ("managed_identity" | "default")) => {
                // Azure's default chain asks Entra ID first: with a client
                // secret, else with a federated token; managed_identity
                // means the identity endpoints only, as in Triton.
                let proof =
                    var("AZURE_CLIENT_SECRET").map(|secret| ClientProof::Secret(Secret(secret))).or_else(|| {
                        var("AZURE_FEDERATED_TOKEN_FILE").map(|file| ClientProof::FederatedTokenFile(file.into()))
                    });
                let entra = match (proof, var("AZURE_CLIENT_ID"), var("AZURE_TENANT_ID")) {
                    (Some(proof), Some(client_id), Some(tenant)) if kind == "default" => {
                        Some(IdentityEndpoint::Entra {
                            authority: var("AZURE_AUTHORITY_HOST")
                                .unwrap_or_else(|| ENTRA_AUTHORITY.to_string())
                                .trim_end_matches('/')
                                .to_string(),
                            tenant,
                            client_id,
                            proof,
                        })
                    }
                    _ => None,
                };
                AzureAuthorization::ManagedIdentity {
                    client_id: var("AZURE_STORAGE_CLIENT_ID"),
                    endpoint: entra.unwrap_or_else(|| match (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
                        (Some(url), Some(secret)) => IdentityEndpoint::Hosted { url, secret: Secret(secret) },
                        _ => IdentityEndpoint::InstanceMetadata,
                    }),
                }
            }
            Some("shared_key") | None => match var("AZURE_STORAGE_KEY").or_else(|| from_connection("AccountKey")) {
                Some(key) => AzureAuthorization::SharedKey(
                    STANDARD.decode(&key).map_err(|error| format!("the Azure Storage key is not base64: {error}"))?,
                ),
                None => AzureAuthorization::Anonymous,
            },
            Some(other) => {
                return Err(format!(
                    "AZURE_STORAGE_AUTH_TYPE={other}: expected shared_key, managed_identity or default"
                ));
            }
        };
        Ok(Self { blob_endpoint, authorization })
    }

    /// How requests are authorized, for the log.
    pub fn describe(&self) -> String {
        let how = match &self.authorization {
            AzureAuthorization::SharedKey(_) => "the account's shared key".to_string(),
            AzureAuthorization::ManagedIdentity {
                endpoint: IdentityEndpoint::Entra { client_id, proof: ClientProof::FederatedTokenFile(_), .. },
                ..
            } => format!("the workload identity of application {client_id}"),
            AzureAuthorization::ManagedIdentity {
                endpoint: IdentityEndpoint::Entra { client_id, proof: ClientProof::Secret(_), .. },
                ..
            } => format!("the client secret of application {client_id}"),
            AzureAuthorization::ManagedIdentity { client_id: Some(id), .. } => format!("managed identity {id}"),
            AzureAuthorization::ManagedIdentity { client_id: None, .. } => "the system managed identity".to_string(),
            AzureAuthorization::Anonymous => "none (a public container)".to_string(),
        };
        format!("{how}; at {}", self.blob_endpoint)
    }
}

/// The managed identity tokens of one repository.
#[derive(Debug)]
pub struct AzureTokenCache {
    token: Mutex<Option<Expiring<String>>>,
}

impl AzureTokenCache {
    /// A cache that fetches nothing until asked.
    pub fn new() -> Self {
        Self { token: Mutex::new(None) }
    }

    /// A storage token of the identity, fresh enough to send now.
    pub fn token(&self, http: &Client, client_id: Option<&str>, endpoint: &IdentityEndpoint) -> Result<String, String> {
        let now = unix_seconds();
        let mut token = self.token.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = token.as_ref().filter(|token| token.fresh_at(now)) {
            return Ok(token.value.clone());
        }
        let mut query = vec![("resource", STORAGE_RESOURCE)];
        if let Some(client_id) = client_id {
            query.push(("client_id", client_id));
        }
        let request = match endpoint {
            IdentityEndpoint::InstanceMetadata => {
                query.push(("api-version", "2018-02-01"));
                http.get(format!(
                    "{INSTANCE_METADATA_ORIGIN}/metadata/identity/oauth2/token?{}",
                    canonical_query(&query)
                ))
                .header("metadata", "true")
                .timeout(METADATA_TIMEOUT)
            }
            IdentityEndpoint::Entra { authority, tenant, client_id, proof } => {
                let assertion;
                let mut form = vec![
                    ("client_id", client_id.as_str()),
                    ("grant_type", "client_credentials"),
                    ("scope", "https://storage.azure.com/.default"),
                ];
                match proof {
                    ClientProof::Secret(secret) => form.push(("client_secret", &secret.0)),
                    ClientProof::FederatedTokenFile(file) => {
                        assertion = std::fs::read_to_string(file)
                            .map_err(|error| format!("cannot read the federated token {}: {error}", file.display()))?;
                        form.push(("client_assertion", assertion.trim()));
                        form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
                    }
                }
                http.post(format!("{authority}/{tenant}/oauth2/v2.0/token"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(canonical_query(&form))
            }
            IdentityEndpoint::Hosted { url, secret } => {
                query.push(("api-version", "2019-08-01"));
                http.get(format!("{url}?{}", canonical_query(&query))).header("x-identity-header", &secret.0)
            }
        };
        let fetched =
            token_answer(request, now).map_err(|why| format!("cannot get the managed identity's token: {why}"))?;
        *token = Some(fetched.clone());
        Ok(fetched.value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn access(account: &str, vars: &[(&str, &str)]) -> Result<AzureAccess, String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AzureAccess::from_environment(account, |name| vars.get(name).cloned())
    }

    #[test]
    fn shared_keys_connection_strings_and_identities() {
        let keyed = access("mlstore", &[("AZURE_STORAGE_KEY", "a2V5")]).unwrap();
        assert_eq!(keyed.blob_endpoint, "https://mlstore.blob.core.windows.net");
        assert_eq!(keyed.authorization, AzureAuthorization::SharedKey(b"key".to_vec()));
        assert!(!format!("{keyed:?}").contains("107"));

        let azurite = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;\
                       BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";
        let emulated = access("devstoreaccount1", &[("AZURE_STORAGE_CONNECTION_STRING", azurite)]).unwrap();
        assert_eq!(emulated.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(emulated.authorization, AzureAuthorization::SharedKey(b"key".to_vec()));
        let other = access("mlstore", &[("AZURE_STORAGE_CONNECTION_STRING", azurite)]).unwrap();
        assert_eq!(other.authorization, AzureAuthorization::Anonymous);

        let hosted = access(
            "mlstore",
            &[
                ("AZURE_STORAGE_AUTH_TYPE", "managed_identity"),
                ("AZURE_STORAGE_CLIENT_ID", "1234"),
                ("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"),
                ("IDENTITY_HEADER", "secret"),
            ],
        )
        .unwrap();
        assert!(matches!(
            hosted.authorization,
            AzureAuthorization::ManagedIdentity { endpoint: IdentityEndpoint::Hosted { .. }, .. }
        ));
        assert!(hosted.describe().starts_with("managed identity 1234"));
        let workload = [
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_TENANT_ID", "tenant"),
        ];
        let default = access("mlstore", &[&workload[..], &[("AZURE_STORAGE_AUTH_TYPE", "default")]].concat()).unwrap();
        assert!(matches!(
            &default.authorization,
            AzureAuthorization::ManagedIdentity {
                endpoint: IdentityEndpoint::Entra { authority, proof: ClientProof::FederatedTokenFile(_), .. },
                ..
            } if authority == "https://login.microsoftonline.com"
        ));
        // A client secret comes first in Azure's default chain, and stays
        // out of the log.
        let principal = access(
            "mlstore",
            &[&workload[..], &[("AZURE_STORAGE_AUTH_TYPE", "default"), ("AZURE_CLIENT_SECRET", "s3cr3t")]].concat(),
        )
        .unwrap();
        assert!(matches!(
            &principal.authorization,
            AzureAuthorization::ManagedIdentity {
                endpoint: IdentityEndpoint::Entra { proof: ClientProof::Secret(Secret(secret)), .. }, ..
            } if secret == "s3cr3t"
        ));
        assert_eq!(
            principal.describe(),
            "the client secret of application app; at https://mlstore.blob.core.windows.net"
        );
        assert!(!format!("{principal:?}").contains("s3cr3t") && !format!("{hosted:?}").contains("\"secret\""));
        // managed_identity means the identity endpoints only, as in Triton.
        let managed =
            access("mlstore", &[&workload[..], &[("AZURE_STORAGE_AUTH_TYPE", "managed_identity")]].concat()).unwrap();
        assert!(matches!(
            managed.authorization,
            AzureAuthorization::ManagedIdentity { endpoint: IdentityEndpoint::InstanceMetadata, .. }
        ));
        assert!(access("a", &[("AZURE_STORAGE_AUTH_TYPE", "sas")]).unwrap_err().contains("sas"));
        assert!(access("a", &[("AZURE_STORAGE_KEY", "not base64!")]).unwrap_err().contains("not base64"));
    }
}
