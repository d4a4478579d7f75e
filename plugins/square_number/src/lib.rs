//! The default plugin: an item's square, as in the demo.

fn square(item: u64) -> Result<u64, String> {
    item.checked_mul(item)
        .ok_or_else(|| format!("{item} squared overflows u64"))
}

batch_plugin_sdk::export_plugin!(square);
