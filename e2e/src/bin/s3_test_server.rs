//! `s3_test_server ROOT ACCESS_KEY SECRET_KEY`: an S3-compatible server for the end-to-end
//! tests, serving the directory ROOT (one subdirectory per bucket) with `s3s-fs` from
//! crates.io, on a free local port, requests signed with the given keys. Prints
//! `listening on http://127.0.0.1:PORT` once it accepts connections; runs until killed.

use std::io::Write as _;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, access_key, secret_key] = args.as_slice() else {
        return Err("usage: s3_test_server ROOT ACCESS_KEY SECRET_KEY".into());
    };
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("cannot serve {root}: {e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(
        access_key.clone(),
        secret_key.clone(),
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let connection = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("connection: {e}");
            }
        });
    }
}
