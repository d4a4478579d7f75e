//! Object stores (S3, GCS, Azure, HTTP) opened through `object_store`, with an HTTP client of
//! our own: `object_store` lets its client follow redirects anywhere, and a redirect must not
//! take a worker where its grants do not reach. A redirect is followed only to a place the
//! authority holds (the user's: anywhere, as their own tools would; a worker's: within its
//! grants for that access), at most [`MAX_REDIRECTS`] times.

use std::sync::Arc;
use std::time::Duration;

use object_store::client::{ClientConfigKey, ClientOptions, HttpClient, HttpConnector};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::authority::Authority;
use crate::place::{self, Place, Spelled};

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// Why a redirect was not followed: a failure that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("the server redirected to {target}, which is not followed: {reason}")]
pub struct RedirectRefused {
    pub target: String,
    pub reason: String,
}

/// The store of `url` and the path in it.
pub(crate) fn open<K: AsRef<str>, V: Into<String>>(
    url: &Url,
    authority: &Authority,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<(Arc<dyn ObjectStore>, Path), object_store::Error> {
    // HTTPS to the stores goes through rustls with ring, the crypto the Temporal client
    // already links; reqwest needs it installed as the process's default once.
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let (scheme, path) = ObjectStoreScheme::parse(url)?;
    let connector = Connector {
        authority: authority.clone(),
    };
    // Every option that names a setting of this store (`aws_endpoint`, `allow_http`, ...):
    // the environment holds many others.
    macro_rules! build {
        ($builder:expr) => {{
            let builder = options.into_iter().fold($builder, |builder, (key, value)| {
                match key.as_ref().to_ascii_lowercase().parse() {
                    Ok(key) => builder.with_config(key, value),
                    Err(_) => builder,
                }
            });
            Arc::new(builder.with_http_connector(connector).build()?) as Arc<dyn ObjectStore>
        }};
    }
    let store = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            build!(object_store::aws::AmazonS3Builder::new().with_url(url.as_str()))
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            build!(object_store::gcp::GoogleCloudStorageBuilder::new().with_url(url.as_str()))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            build!(object_store::azure::MicrosoftAzureBuilder::new().with_url(url.as_str()))
        }
        ObjectStoreScheme::Http => {
            build!(
                object_store::http::HttpBuilder::new().with_url(&url[..url::Position::BeforePath])
            )
        }
        other => {
            return Err(object_store::Error::NotSupported {
                source: format!("{other:?} locations are not data locations").into(),
            });
        }
    };
    Ok((store, path))
}

/// Builds the stores' HTTP client: the store's own settings, and redirects checked.
#[derive(Debug)]
struct Connector {
    authority: Authority,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let authority = self.authority.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let target = attempt.url().to_string();
            if attempt.previous().len() >= MAX_REDIRECTS {
                let reason = format!("more than {MAX_REDIRECTS} redirects");
                return attempt.error(RedirectRefused { target, reason });
            }
            match may_follow(&authority, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(reason) => attempt.error(RedirectRefused { target, reason }),
            }
        });
        let value = |key: ClientConfigKey| options.get_config_value(&key);
        let flag = |key: ClientConfigKey| value(key).as_deref() == Some("true");
        let duration = |key: ClientConfigKey| -> Option<Duration> {
            humantime::parse_duration(&value(key)?).ok()
        };
        let mut builder = reqwest::Client::builder()
            .redirect(policy)
            .https_only(!flag(ClientConfigKey::AllowHttp))
            .user_agent(
                value(ClientConfigKey::UserAgent)
                    .unwrap_or_else(|| concat!("batch-data-io/", env!("CARGO_PKG_VERSION")).into()),
            );
        if let Some(timeout) = duration(ClientConfigKey::Timeout) {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = duration(ClientConfigKey::ConnectTimeout) {
            builder = builder.connect_timeout(timeout);
        }
        if flag(ClientConfigKey::Http1Only) {
            builder = builder.http1_only();
        }
        if flag(ClientConfigKey::Http2Only) {
            builder = builder.http2_prior_knowledge();
        }
        if let Some(proxy) = value(ClientConfigKey::ProxyUrl) {
            builder = builder.proxy(reqwest::Proxy::all(&proxy).map_err(generic)?);
        }
        Ok(HttpClient::new(builder.build().map_err(generic)?))
    }
}

fn generic(e: reqwest::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "HTTP client",
        source: Box::new(e),
    }
}

/// Whether a redirect to `target` may be followed on `authority`.
fn may_follow(authority: &Authority, target: &Url) -> Result<(), String> {
    let place = match place::spell(target.as_str())? {
        Spelled::Remote(url) => Place::Remote(place::remote(&url)?),
        Spelled::Local(_) => return Err("a redirect to a local file".into()),
    };
    authority
        .check(&place, target.as_str())
        .map_err(|e| e.to_string())
}
