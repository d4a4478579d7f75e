//! The 64-bit FNV-1a hash of the item's little-endian bytes: a stand-in for "hash each record".

fn fnv_hash(item: u64) -> Result<u64, String> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    Ok(item.to_le_bytes().iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    }))
}

batch_plugin_sdk::export_plugin!(fnv_hash);
