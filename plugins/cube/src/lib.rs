//! An item's cube: the sum over 1..=n is (n(n+1)/2)^2.

fn cube(item: u64) -> Result<u64, String> {
    item.checked_mul(item)
        .and_then(|sq| sq.checked_mul(item))
        .ok_or_else(|| format!("{item} cubed overflows u64"))
}

batch_plugin_sdk::export_plugin!(cube);
