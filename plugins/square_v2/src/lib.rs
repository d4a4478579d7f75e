//! The default plugin's computation on interface v2: an item's square, handed over in blocks
//! (the benchmark of the per-item host overhead uses it beside the v1 `square_number`).

use batch_plugin_sdk_v2::{Item, Output};

fn square(item: Item) -> Result<Output, String> {
    let n = item.index;
    // Exactly the numbers whose square fits in u64. (Not `checked_mul`: wasm32 has no
    // overflow flag, so that is a 128-bit multiplication in a library call per item.)
    if n <= u64::from(u32::MAX) {
        Ok(Output::Number(n * n))
    } else {
        Err(format!("{n} squared overflows u64"))
    }
}

batch_plugin_sdk_v2::export_plugin!(square, input = numbers);
