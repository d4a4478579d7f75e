//! The default plugin's computation on interface v2: an item's square, handed over in blocks
//! (the benchmark of the per-item host overhead uses it beside the v1 `square_number`).

use batch_plugin_sdk_v2::{Item, Output};

fn square(item: Item) -> Result<Output, String> {
    let n = item.index;
    n.checked_mul(n)
        .map(Output::Number)
        .ok_or_else(|| format!("{n} squared overflows u64"))
}

batch_plugin_sdk_v2::export_plugin!(square);
