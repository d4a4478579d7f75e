//! What every hostile fixture's misbehaviours must come to, whichever store runs them.

use std::time::{Duration, Instant};

use batch_worker::plugins::{ItemSpan, PluginError};

/// Items 1 to 6 of a hostile fixture (`hostile`, `hostile_v2`, `hostile_http`) through `call`,
/// with a CPU deadline of 200 ms: each violation fails only its item, the loop within the
/// deadline, and the next call still serves.
pub fn each_violation_fails_only_its_item(
    name: &str,
    call: impl Fn(u64) -> Result<u64, PluginError>,
) {
    let started = Instant::now();
    let err = call(1).expect_err("infinite loop");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            PluginError::Deadline {
                items: ItemSpan { first: 1, last: 1 },
                limit_ms: 200,
                ..
            }
        ),
        "{name}: {err}"
    );
    assert!(
        err.message()
            .contains("exceeded its CPU deadline of 200 ms on item 1"),
        "{name}: {err}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "{name}: the deadline stopped the loop after {elapsed:?}"
    );

    let err = call(2).expect_err("panic").message();
    assert!(
        err.contains("trapped on item 2") && err.contains("unreachable"),
        "{name}: {err}"
    );

    let err = call(3).expect_err("memory hog").message();
    assert!(
        err.contains("trapped on item 3") && err.contains("memory"),
        "{name}: {err}"
    );

    let err = call(4).expect_err("stack overflow").message();
    assert!(
        err.contains("trapped on item 4") && err.contains("stack"),
        "{name}: {err}"
    );

    let err = call(5).expect_err("refusal");
    assert!(
        matches!(&err, PluginError::Refused { item: 5, message, .. } if message == "item 5 is not welcome here"),
        "{name}: {err}"
    );
    assert!(!batch_worker::routing::is_retryable(&err));

    // Nothing leaks from one call to the next: the same module still serves.
    assert_eq!(call(6).expect("well-behaved item"), 6, "{name}");
}
