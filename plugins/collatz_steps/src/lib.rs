//! The number of Collatz steps (n -> n/2 if even, 3n+1 if odd) an item takes to reach 1.
//! Refuses 0 (which never reaches 1) and any item whose trajectory leaves u64.

fn collatz_steps(item: u64) -> Result<u64, String> {
    if item == 0 {
        return Err("0 never reaches 1".into());
    }
    let mut n = item;
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            n.checked_mul(3)
                .and_then(|m| m.checked_add(1))
                .ok_or_else(|| format!("the trajectory of {item} overflows u64"))?
        };
        steps += 1;
    }
    Ok(steps)
}

batch_plugin_sdk::export_plugin!(collatz_steps);
