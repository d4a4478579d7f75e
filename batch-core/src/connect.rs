//! Connecting to Temporal the way every Temporal tool does: Temporal's environment
//! configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS settings,
//! profiles in `temporal.toml` chosen by `TEMPORAL_PROFILE`), with explicit overrides for the
//! address and namespace given on the command line.

use std::time::Duration;

use temporalio_client::{
    Client, ClientOptions, Connection, Url, envconfig::LoadClientConfigProfileOptions,
};

/// How long the first connection may take before we report the server as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Temporal client configuration: {0}")]
    Config(String),
    #[error("invalid Temporal address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error(
        "cannot reach the Temporal server at {address} (namespace {namespace}): {reason}. Is the \
         server running? Start one with `temporal server start-dev`, or set TEMPORAL_ADDRESS."
    )]
    Unreachable {
        address: String,
        namespace: String,
        reason: String,
    },
}

/// Explicit overrides of the environment configuration (from command-line flags).
#[derive(Debug, Clone, Default)]
pub struct ConnectOverrides {
    pub address: Option<String>,
    pub namespace: Option<String>,
    /// Reported to the server as this client's identity (shown in workflow histories).
    pub identity: Option<String>,
    /// Where the client's RPC metrics (`temporal_request*`) go; none without one.
    pub metrics_meter: Option<temporalio_common::telemetry::metrics::TemporalMeter>,
}

/// A connected client, and where it is connected.
pub struct Connected {
    pub client: Client,
    /// `host:port` of the server, after the environment configuration and the overrides.
    pub address: String,
    pub namespace: String,
}

/// Connects a client, failing within [`CONNECT_TIMEOUT`] with the address in the message.
pub async fn connect(overrides: &ConnectOverrides) -> Result<Connected, ConnectError> {
    let (mut conn_opts, mut client_opts) =
        ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())
            .map_err(|e| ConnectError::Config(e.to_string()))?;
    if let Some(address) = &overrides.address {
        conn_opts.target = parse_address(address, conn_opts.tls_options.is_some())?;
    }
    if let Some(namespace) = &overrides.namespace {
        client_opts.namespace = namespace.clone();
    }
    if let Some(identity) = &overrides.identity {
        conn_opts.identity = identity.clone();
    }
    if let Some(meter) = &overrides.metrics_meter {
        conn_opts.metrics_meter = Some(meter.clone());
    }
    conn_opts.connect_timeout = Some(CONNECT_TIMEOUT);
    let address = display_address(&conn_opts.target);
    let namespace = client_opts.namespace.clone();
    let unreachable = |reason: String| ConnectError::Unreachable {
        address: address.clone(),
        namespace: namespace.clone(),
        reason,
    };
    // The connect timeout bounds the TCP/TLS handshake; this bounds everything else too.
    let connection = tokio::time::timeout(CONNECT_TIMEOUT * 2, Connection::connect(conn_opts))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let client =
        Client::new(connection, client_opts).map_err(|e| ConnectError::Config(e.to_string()))?;
    Ok(Connected {
        client,
        address,
        namespace,
    })
}

/// `host:port` as users type it (the SDK wants a URL).
fn parse_address(address: &str, tls: bool) -> Result<Url, ConnectError> {
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| ConnectError::Address {
        address: address.to_owned(),
        reason: e.to_string(),
    })?;
    // Without a scheme, a port is required: "localhost" alone would silently mean port 80.
    // (Read from the text: the URL forgets a port equal to its scheme's default, 443 or 80.)
    let port_missing = if address.contains("://") {
        url.port_or_known_default().is_none()
    } else {
        !address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if url.host().is_none() || port_missing {
        return Err(ConnectError::Address {
            address: address.to_owned(),
            reason: "expected host:port, for example localhost:7233".into(),
        });
    }
    Ok(url)
}

fn display_address(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_as_users_type_them() {
        let url = parse_address("localhost:7233", false).expect("valid");
        assert_eq!(display_address(&url), "localhost:7233");
        assert_eq!(
            parse_address("x.example:7233", true)
                .expect("valid")
                .scheme(),
            "https"
        );
        assert_eq!(
            parse_address("http://127.0.0.1:1", false)
                .expect("valid")
                .as_str(),
            "http://127.0.0.1:1/"
        );
        // A port equal to the scheme's default is still a port the user gave.
        assert_eq!(
            parse_address("temporal.example:443", true)
                .expect("valid")
                .port_or_known_default(),
            Some(443)
        );
        assert!(parse_address("proxy.example:80", false).is_ok());
        assert!(parse_address("[::1]:7233", false).is_ok());
        let err = parse_address("localhost", false)
            .expect_err("no port")
            .to_string();
        assert!(err.contains("expected host:port"), "{err}");
        let err = parse_address("no spaces:x", false)
            .expect_err("invalid")
            .to_string();
        assert!(
            err.starts_with("invalid Temporal address \"no spaces:x\""),
            "{err}"
        );
    }
}
