//! `s3_put FILE URL`: uploads FILE to URL through the store's protocol (a multipart upload for
//! a large file), with the store's settings from the environment (`AWS_ENDPOINT`, ...), as any
//! client would: the data benchmark's upload to the S3-compatible test server.

use bytes::Bytes;
use tokio::io::AsyncReadExt as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, url] = args.as_slice() else {
        return Err("usage: s3_put FILE URL".into());
    };
    let mut part =
        data_io::write::PartWriter::create(data_io::Location::open(url, data_io::Authority::User)?)
            .await?;
    let mut input = tokio::fs::File::open(file).await?;
    loop {
        let mut buffer = vec![0; 8 * 1024 * 1024];
        let read = input.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        buffer.truncate(read);
        part.write(Bytes::from(buffer)).await?;
    }
    let bytes = part.finish().await?;
    println!("uploaded {bytes} bytes to {url}");
    Ok(())
}
