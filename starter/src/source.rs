//! What a `--source` is, looked at once when the batch starts: one object (its size, version,
//! compression and CSV header), or many (every object under a prefix or a directory, or
//! matching a glob: their listing, pinned by its sha256, inline in the inputs when small,
//! else stored beside the output).

use std::collections::BTreeSet;

use batch_core::objects::{ListingRef, MAX_INLINE_OBJECTS, Objects};
use batch_core::source::{Compression, MAX_HEADER_BYTES};
use batch_core::{DataSource, Format};
use data_io::parquet::ParquetFile;
use data_io::read::SourceInfo;
use data_io::{Authority, Location};

use crate::Args;

/// `--compression`: a compression, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

impl CompressionArg {
    pub(crate) fn compression(self) -> Option<Compression> {
        match self {
            CompressionArg::Gzip => Some(Compression::Gzip),
            CompressionArg::Zstd => Some(Compression::Zstd),
            CompressionArg::None => None,
        }
    }
}

/// `--columns`, which only a Parquet source takes.
fn columns(args: &Args, format: Format) -> anyhow::Result<Option<Vec<String>>> {
    match (&args.columns, format) {
        (Some(columns), Format::Parquet) => Ok(Some(columns.clone())),
        (Some(_), _) => anyhow::bail!("--columns applies to a Parquet source (--format parquet)"),
        (None, _) => Ok(None),
    }
}

/// One object.
pub(crate) async fn single(args: &Args, location: String) -> anyhow::Result<DataSource> {
    let opened = Location::open(&location, Authority::User)?;
    let info = data_io::read::stat(&opened).await?;
    let first = data_io::read::magic(&opened, info.version.as_deref(), info.size).await?;
    let compression = match args.compression {
        Some(chosen) => chosen.compression(),
        None => Compression::from_name(&location).or_else(|| Compression::from_magic(&first)),
    };
    batch_core::source::check_stored(&location, compression, &first)?;
    if compression.is_none() && args.max_decompression_ratio.is_some() {
        anyhow::bail!("--max-decompression-ratio applies to a compressed source only");
    }
    let format = args.format.unwrap_or_else(|| Format::from_name(&location));
    let header = match format {
        Format::Csv if info.size > 0 => {
            Some(data_io::read::first_line(&opened, &info, compression, MAX_HEADER_BYTES).await?)
        }
        _ => None,
    };
    let columns = columns(args, format)?;
    let max_ratio = args
        .max_decompression_ratio
        .filter(|_| compression.is_some());
    // A stream made of frames (with an index) is split by them; one frame is read whole.
    let gzi_location = || opened.sibling(data_io::frames::GZI_SUFFIX);
    let gzi = match compression {
        Some(Compression::Gzip) => data_io::frames::find_gzi(&gzi_location()?, info.size).await?,
        _ => None,
    };
    let frames = match compression {
        Some(compression) => {
            let framed = data_io::frames::Framed {
                location: &opened,
                version: info.version.as_deref(),
                size: info.size,
                compression,
                max_ratio: max_ratio.unwrap_or(batch_core::source::DEFAULT_MAX_RATIO),
                gzi: gzi.as_ref(),
            };
            data_io::frames::read_index(&framed, gzi_location)
                .await?
                .map(|index| index.frames() as u64)
                .filter(|&frames| frames > 1)
        }
        None => None,
    };
    if format == Format::Parquet {
        // Its footer now: not Parquet, or without a column asked for, is said before it starts.
        let version = info.version.as_deref();
        ParquetFile::open(&opened, version, info.size, columns.as_deref()).await?;
    }
    Ok(DataSource {
        location,
        format,
        size: info.size,
        version: info.version,
        header,
        compression,
        max_ratio,
        objects: None,
        frames,
        gzi,
        columns,
    })
}

/// Many objects, listed now: the batch reads exactly these, pinned to their versions.
pub(crate) async fn many(
    args: &Args,
    location: String,
    output: Option<&str>,
) -> anyhow::Result<DataSource> {
    let listed =
        data_io::list::list(&location, args.compression.map(CompressionArg::compression)).await?;
    let listing = &listed.listing;
    let entries = &listing.entries;
    let format = match args.format {
        Some(format) => format,
        None => {
            let named: BTreeSet<&str> = entries
                .iter()
                .map(|e| Format::from_name(&e.name).as_str())
                .collect();
            match named.iter().next() {
                Some(format) if named.len() == 1 => format.parse().map_err(anyhow::Error::msg)?,
                _ => anyhow::bail!(
                    "the objects of {location} have names of different formats ({}): give \
                     --format",
                    named.into_iter().collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let compressed = entries.iter().any(|e| e.compression.is_some());
    if !compressed && args.max_decompression_ratio.is_some() {
        anyhow::bail!("--max-decompression-ratio applies to compressed objects only");
    }
    let base = Location::open(listed.base.trim_end_matches('/'), Authority::User)?;
    let header = match format {
        Format::Csv => {
            let first = &entries[0];
            let info = SourceInfo {
                size: first.size,
                version: first.version.clone(),
            };
            let object = base.object(&first.name)?;
            Some(
                data_io::read::first_line(&object, &info, first.compression, MAX_HEADER_BYTES)
                    .await?,
            )
        }
        _ => None,
    };
    let columns = columns(args, format)?;
    if format == Format::Parquet {
        let first = &entries[0];
        let object = base.object(&first.name)?;
        ParquetFile::open(
            &object,
            first.version.as_deref(),
            first.size,
            columns.as_deref(),
        )
        .await?;
    }
    let encoded = listing.encode();
    let sha256 = data_io::list::sha256_hex(&encoded);
    let listing_ref = if entries.len() <= MAX_INLINE_OBJECTS {
        ListingRef::Inline(entries.clone())
    } else {
        let Some(output) = output else {
            anyhow::bail!(
                "{location} holds {} objects: their listing is too large to travel with the \
                 batch (over {MAX_INLINE_OBJECTS}), and is stored beside the outputs: give \
                 --output",
                entries.len()
            );
        };
        let at = data_io::list::listing_location(output, &sha256)?;
        // `--plan` writes nothing: it says where the listing would be.
        if !args.plan {
            data_io::list::store(&at, encoded).await?;
        }
        ListingRef::Stored {
            location: at.text().to_owned(),
            sha256: sha256.clone(),
        }
    };
    if listed.skipped > 0 {
        eprintln!(
            "{location}: {} entries that are not regular files (links, devices) left out",
            listed.skipped
        );
    }
    Ok(DataSource {
        location,
        format,
        size: listing.size(),
        version: Some(format!("listing:sha256:{sha256}")),
        header,
        compression: None,
        max_ratio: args.max_decompression_ratio.filter(|_| compressed),
        objects: Some(Objects {
            base: listed.base.clone(),
            count: entries.len() as u64,
            empty: listed.empty,
            compressed,
            listing: listing_ref,
        }),
        frames: None,
        gzi: None,
        columns,
    })
}
