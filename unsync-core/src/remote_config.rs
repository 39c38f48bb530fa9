//! Where `#[unsync(remote)]` calls go: the [`Remote`] settings (a Temporal server's address and
//! namespace, TLS, API key, heartbeat timeout, payload limit), from [`Config::remote`] or the
//! `UNSYNC_REMOTE*` variables. Only settings: what uses them is `exec::remote`.
//!
//! [`Config::remote`]: crate::Config::remote

// Without the `remote` feature only the address is used (to say where calls would have gone).
#![cfg_attr(not(feature = "remote"), allow(dead_code))]

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// The heartbeat timeout when neither [`Remote::heartbeat`] nor
/// `UNSYNC_REMOTE_HEARTBEAT_MILLIS` sets one.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The connect timeout when [`Remote::connect_timeout`] does not set one.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Temporal's default limit on one payload (`limit.blobSize.error`): 2 MiB.
pub(crate) const DEFAULT_MAX_PAYLOAD: usize = 2 << 20;

/// A Temporal cluster to send `#[unsync(remote)]` calls to, for [`Config::remote`](crate::Config::remote). Without
/// it, the `UNSYNC_REMOTE` variable names one (plaintext, no API key); with neither, `remote`
/// functions run in the local worker processes.
///
/// ```
/// use std::time::Duration;
///
/// let cluster = unsync::Remote::new("temporal://temporal.internal:7233/analytics")
///     .expect("a valid address")
///     .heartbeat(Duration::from_secs(5));
/// assert_eq!(cluster.namespace(), "analytics");
/// # drop(unsync::Config::new().remote(cluster));
/// ```
///
/// For Temporal Cloud or a cluster with TLS (the files are PEM):
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = unsync::Remote::new("temporal://my-ns.a1b2c.tmprl.cloud:7233/my-ns.a1b2c")?
///     .tls_client_cert(std::fs::read("client.pem")?, std::fs::read("client.key")?);
/// // or, with an API key instead of a client certificate:
/// let cloud = unsync::Remote::new("temporal://eu-west-1.aws.api.temporal.io:7233/my-ns.a1b2c")?
///     .api_key(std::env::var("TEMPORAL_API_KEY")?);
/// unsync::Config::new().remote(cloud).install()?;
/// # drop(cluster);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use = "a Remote does nothing until given to `Config::remote`"]
pub struct Remote {
    host: String,
    port: u16,
    namespace: String,
    tls: Option<Tls>,
    api_key: Option<String>,
    heartbeat: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_payload_bytes: Option<usize>,
}

/// TLS settings: a CA to trust (else the system's roots), a client certificate (mTLS), the
/// name to verify the server's certificate against.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Tls {
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) domain: Option<String>,
}

const ADDRESS_FORMAT: &str = "expected temporal://HOST:PORT or temporal://HOST:PORT/NAMESPACE, e.g. temporal://127.0.0.1:7233/default";

impl Remote {
    /// The cluster at `temporal://HOST:PORT[/NAMESPACE]` (namespace `default` when left out),
    /// plaintext until a `tls_*` method or [`api_key`](Remote::api_key) is called.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the address does not have that form.
    ///
    /// ```
    /// assert!(unsync::Remote::new("temporal://127.0.0.1:7233").is_ok());
    /// assert!(unsync::Remote::new("127.0.0.1:7233").is_err());
    /// ```
    pub fn new(address: &str) -> Result<Remote, ConfigError> {
        parse(address).map_err(|reason| ConfigError::Invalid {
            setting: "remote",
            reason,
        })
    }

    /// Trust this CA certificate (PEM) for the server's certificate, and use TLS.
    pub fn tls_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Remote {
        self.tls.get_or_insert_with(Tls::default).ca_pem = Some(ca_pem.into());
        self
    }

    /// Present this client certificate and key (PEM) to the server (mutual TLS), and use TLS.
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Remote {
        self.tls.get_or_insert_with(Tls::default).client_cert_pem =
            Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Verify the server's certificate against this name instead of the address's host, and use
    /// TLS.
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Remote {
        self.tls.get_or_insert_with(Tls::default).domain = Some(domain.into());
        self
    }

    /// Authenticate with this API key (Temporal Cloud), over TLS with the system's roots unless
    /// a `tls_*` method says otherwise.
    pub fn api_key(mut self, key: impl Into<String>) -> Remote {
        self.api_key = Some(key.into());
        self.tls.get_or_insert_with(Tls::default);
        self
    }

    /// How long a running call may go without a heartbeat from its worker before the server
    /// counts the worker dead (and retries the call when it has `retries` left). Also about how
    /// long a running call takes to stop after [`cancel`](crate::Unfinished::cancel). Default
    /// 10 s, or `UNSYNC_REMOTE_HEARTBEAT_MILLIS`.
    pub fn heartbeat(mut self, timeout: Duration) -> Remote {
        self.heartbeat = Some(timeout);
        self
    }

    /// How long connecting to the server may take before calls fail with
    /// [`Error::Remote`](crate::Error::Remote) (and a worker exits). Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Remote {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The largest encoded arguments (and result) a call may carry: Temporal's payload limit,
    /// 2 MiB unless the cluster's `limit.blobSize.error` was raised. Arguments over it are
    /// refused before anything is sent.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Remote {
        self.max_payload_bytes = Some(bytes);
        self
    }

    /// The namespace calls go to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `HOST:PORT`.
    pub(crate) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn tls_settings(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    pub(crate) fn api_key_value(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT)
    }

    pub(crate) fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD)
    }

    /// The settings from the environment and the builder's `Remote`, the builder's first:
    /// `UNSYNC_REMOTE` (the address) and `UNSYNC_REMOTE_HEARTBEAT_MILLIS`.
    pub(crate) fn resolve(builder: Option<Remote>) -> Result<Option<Remote>, ConfigError> {
        let heartbeat = match std::env::var("UNSYNC_REMOTE_HEARTBEAT_MILLIS") {
            Err(_) => None,
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                _ => {
                    return Err(ConfigError::InvalidEnv {
                        var: "UNSYNC_REMOTE_HEARTBEAT_MILLIS",
                        value: text,
                        reason: "expected a positive number of milliseconds",
                    });
                }
            },
        };
        let from_env = match std::env::var("UNSYNC_REMOTE") {
            Err(_) => None,
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(
                parse(text.trim()).map_err(|reason| ConfigError::InvalidEnv {
                    var: "UNSYNC_REMOTE",
                    value: text.clone(),
                    reason,
                })?,
            ),
        };
        let Some(mut remote) = builder.or(from_env) else {
            return Ok(None);
        };
        if remote.heartbeat.is_none() {
            remote.heartbeat = heartbeat;
        }
        Ok(Some(remote))
    }
}

impl fmt::Debug for Remote {
    // Certificates' keys and the API key stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("address", &self.authority())
            .field("namespace", &self.namespace)
            .field("tls", &self.tls.is_some())
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("heartbeat", &self.heartbeat_timeout())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "temporal://{}/{}", self.authority(), self.namespace)
    }
}

fn parse(address: &str) -> Result<Remote, &'static str> {
    let rest = address.strip_prefix("temporal://").ok_or(ADDRESS_FORMAT)?;
    let (authority, namespace) = match rest.split_once('/') {
        Some((authority, "")) => (authority, "default"),
        Some((authority, namespace)) => (authority, namespace),
        None => (rest, "default"),
    };
    let (host, port) = authority.rsplit_once(':').ok_or(ADDRESS_FORMAT)?;
    let port = port.parse::<u16>().map_err(|_| ADDRESS_FORMAT)?;
    if host.is_empty() || namespace.contains('/') || port == 0 {
        return Err(ADDRESS_FORMAT);
    }
    Ok(Remote {
        host: host.to_owned(),
        port,
        namespace: namespace.to_owned(),
        tls: None,
        api_key: None,
        heartbeat: None,
        connect_timeout: None,
        max_payload_bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_or_without_a_namespace() {
        let r = parse("temporal://127.0.0.1:7233").unwrap();
        assert_eq!(
            (r.authority().as_str(), r.namespace()),
            ("127.0.0.1:7233", "default")
        );
        let r = parse("temporal://cluster.internal:443/prod").unwrap();
        assert_eq!(
            (r.authority().as_str(), r.namespace()),
            ("cluster.internal:443", "prod")
        );
        let r = parse("temporal://[::1]:7233/").unwrap();
        assert_eq!(
            (r.authority().as_str(), r.namespace()),
            ("[::1]:7233", "default")
        );
        assert_eq!(r.to_string(), "temporal://[::1]:7233/default");
        for bad in [
            "127.0.0.1:7233",
            "http://127.0.0.1:7233",
            "temporal://127.0.0.1",
            "temporal://:7233",
            "temporal://host:port",
            "temporal://host:0",
            "temporal://host:7233/a/b",
        ] {
            assert_eq!(parse(bad).unwrap_err(), ADDRESS_FORMAT, "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let r = Remote::new("temporal://h:1")
            .unwrap()
            .api_key("s3cret")
            .tls_client_cert("cert", "private key");
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("private key"),
            "{shown}"
        );
    }
}
